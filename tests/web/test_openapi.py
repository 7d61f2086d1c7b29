"""docs/openapi.yaml stays in step with the app: every route and every error code is described.

(No YAML parser is a dependency; the checks read the file's path keys and the code enum as text.)
"""

from __future__ import annotations

import re

import node1.tryon.errors as api
from mirror.config import ROOT
from node1.web.errors import HTTP_STATUS

SPEC = (ROOT / "docs" / "openapi.yaml").read_text()


def test_every_route_is_described(app_factory):
    app = app_factory()
    described = set(re.findall(r"^  (/[^:\s]*):\s*$", SPEC, re.M))
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "pages.static", "pages.index"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", "{id}", rule.rule)
        assert path in described, f"{rule.rule} ({rule.endpoint}) is missing from docs/openapi.yaml"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            block = "\n" + SPEC.split(f"\n  {path}:\n", 1)[1].split("\n  /", 1)[0]
            assert f"\n    {method.lower()}:" in block, f"{method} {path} is missing from docs/openapi.yaml"


def test_every_error_code_is_listed():
    enum = SPEC.split("code:\n          type: string\n          enum:", 1)[1].split("message:", 1)[0]
    for cls in HTTP_STATUS:
        assert cls.code in enum or cls.code in ("internal", "bad_upload", "service_error") and \
            cls in (api.TryOnError, api.UploadError, api.ServiceError), cls.code
