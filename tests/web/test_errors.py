"""node1.tryon.errors + node1.web.errors: every error type has an HTTP status, a stable code and a readable
message."""

from __future__ import annotations

import node1.tryon.errors as api
from node1.web.errors import HTTP_STATUS, error_body, http_status


def _all_error_types() -> list[type[api.TryOnError]]:
    seen, todo = [], [api.TryOnError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in seen if c.__module__ == "node1.tryon.errors"]


def test_status_mapping_is_complete_and_in_range():
    for cls in _all_error_types():
        assert cls in HTTP_STATUS, f"{cls.__name__} has no HTTP status in HTTP_STATUS"
        status = HTTP_STATUS[cls]
        if issubclass(cls, api.BadRequest):
            assert 400 <= status < 500, cls
        elif issubclass(cls, api.ServiceError):
            assert 500 <= status < 600, cls


def test_codes_are_unique_and_messages_readable():
    codes = [cls.code for cls in _all_error_types()]
    assert len(codes) == len(set(codes))
    for cls in _all_error_types():
        exc = cls() if cls is not api.RateLimited else cls(retry_after_s=3)
        assert len(exc.message) > 15, cls


def test_key_statuses():
    assert http_status(api.NoPersonInPhoto()) == 422
    assert http_status(api.Node2Unavailable()) == 503
    assert http_status(api.TryOnTimeout()) == 504
    assert http_status(api.RateLimited()) == 429
    assert error_body(api.UnknownGarment("no garment 'x'")) == {
        "error": {"code": "unknown_garment", "message": "no garment 'x'"}}


def test_a_pipeline_subclass_inherits_its_parents_status():
    class GatewayRefused(api.Node2Unavailable):
        pass

    assert http_status(GatewayRefused("gateway refused")) == 503
    assert GatewayRefused().code == "node2_unavailable"
