"""schemathesis against docs/openapi.yaml and the REAL server (`python -m node1.web`: gunicorn over TLS,
the web-layer test-double runner, the real demo catalog): every operation, with generated valid and
invalid inputs (positive and negative generation). Each response must not be a 5xx and must conform
to the spec (status code, content type, headers, body schema).

Bounded budget in the default run: MAX_EXAMPLES cases per operation and mode, no shrinking database.
$VM_SCHEMATHESIS_EXAMPLES raises it for a longer run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from mirror.config import ROOT
from tests.web.conftest import OPERATOR_TOKEN
from tests.web.server import Server, start_server

MAX_EXAMPLES = int(os.environ.get("VM_SCHEMATHESIS_EXAMPLES", "12"))
SPEC = ROOT / "docs" / "openapi.yaml"
REQUEST_TIMEOUT_S = 30.0
# schemathesis's built-in checks we hold the service to. Not positive_data_acceptance: the spec's
# types cannot say "a JPEG of a person", so schema-valid bytes are rightly refused with a 4xx.
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance", "negative_data_rejection")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_catalog_dir: Path) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("schemathesis"), env_extra={"VM_TEST_CATALOG": "demo"},
                       paths={"catalog_dir": str(demo_catalog_dir)}, limits={"rate_limit_per_min": 100000})
    yield srv
    srv.stop()


def _operations() -> list[Any]:
    import schemathesis

    schema = schemathesis.openapi.from_path(str(SPEC))
    return [result.ok() for result in schema.get_all_operations()]


def _checks() -> list[Any]:
    from schemathesis import checks

    return [getattr(checks, name) for name in CHECKS]


OPERATIONS = _operations()
# Negative generation needs something the spec constrains (a body, an enum); the GETs take any
# string id, so every input to them is valid and only positive cases exist.
CASES = [(op, "positive") for op in OPERATIONS] + [(op, "negative") for op in OPERATIONS if op.method.upper() == "POST"]


@pytest.mark.parametrize(("operation", "mode"), CASES, ids=[f"{op.label} {mode}" for op, mode in CASES])
def test_operation_conforms_to_the_spec(server: Server, operation: Any, mode: str) -> None:
    from schemathesis import GenerationMode

    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"} if operation.method.upper() == "POST" else {}
    strategy = operation.as_strategy(GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE)
    checks = _checks()

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        resp = case.call(base_url=server.base, headers=headers, verify=cafile, timeout=REQUEST_TIMEOUT_S)
        seen.append(resp.status_code)
        case.validate_response(resp, checks=checks, headers=headers)

    seen: list[int] = []
    cafile = str(server.var_dir / "tls" / "node1.crt")
    run()
    assert seen, "no request was made"


def test_a_shoppers_and_an_operators_real_requests_conform(server: Server, astronaut_jpeg: bytes,
                                                            demo_catalog_dir: Path) -> None:
    """Explicit cases with real data (generated ones cannot guess a garment id or a job id): the
    success answers of every operation conform to the spec too."""
    ops = {op.label: op for op in OPERATIONS}
    cafile = str(server.var_dir / "tls" / "node1.crt")
    checks = _checks()

    def call(label: str, expect: int, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        case = ops[label].Case(**kw)
        resp = case.call(base_url=server.base, headers=headers or {}, verify=cafile, timeout=REQUEST_TIMEOUT_S)
        case.validate_response(resp, checks=checks, headers=headers or {})
        assert resp.status_code == expect, (label, resp.status_code, resp.text[:300])
        return resp

    garments = call("GET /api/garments", 200).json()["garments"]
    gid = garments[0]["id"]
    call("GET /api/garments/{id}/thumbnail", 200, path_parameters={"id": gid})
    body = {"photo": astronaut_jpeg, "garment": gid}
    done = call("POST /api/tryon", 200, body=body, media_type="multipart/form-data").json()
    call("GET /api/jobs/{id}", 200, path_parameters={"id": done["id"]})
    call("GET /api/result/{id}", 200, path_parameters={"id": done["id"]})
    accepted = call("POST /api/tryon", 202, body=body, media_type="multipart/form-data", query={"mode": "async"})
    call("GET /api/jobs/{id}/events", 200, path_parameters={"id": accepted.json()["id"]})
    product = next(p for p in sorted(demo_catalog_dir.rglob("*.png")) if not p.stem.endswith("_mask"))
    call("POST /api/garments", 201, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
         body={"image": product.read_bytes(), "name": "A demo tee"}, media_type="multipart/form-data")
