"""The gateway in-process, with real sockets: try-on flow, garment cache, errors, health, metrics."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
import zmq

from node1.tryon.node2_client import TryOnClient
from tests.node2.conftest import TinyViton, make_garment, person_tensors
from transport import Frame, InvalidRequest, TcpClient, encode
from transport.endpoints import gateway_endpoint


def _client(cfg) -> TryOnClient:  # type: ignore[no-untyped-def]
    return TryOnClient(TcpClient(gateway_endpoint(cfg)))


def _metrics(running) -> str:  # type: ignore[no-untyped-def]
    with urllib.request.urlopen(f"http://{running.health.address}/metrics", timeout=5) as r:
        return r.read().decode()


def test_tryon_fetches_garment_once_then_uses_cache(gateway_config: Any, gateway: Any, viton: TinyViton) -> None:
    garment = make_garment()
    person = person_tensors()
    with _client(gateway_config) as client:
        first = client.tryon(person, garment, timeout_s=10)
        second = client.tryon(person, garment, timeout_s=10, request_id="mine")
    for r in (first, second):
        assert r.kind == "result", r.meta
        expected = ((person["person"].astype(np.float32) + np.array([200, 30, 30], np.float32)) / 2).astype(np.uint8)
        np.testing.assert_array_equal(r.tensors["image"], expected)
        assert r.meta["engine"] == "tiny" and r.meta["timings_ms"]["engine_ms"] == 1.0
        assert r.meta["timings_ms"]["gateway_ms"] > 0
    assert second.request_id == "mine"
    # VITON got the person tensors plus the cached garment, with its kind
    fwd = viton.received[-1]
    assert fwd.meta["garment_kind"] == "tshirt" and fwd.meta["garment_id"] == garment.id
    np.testing.assert_array_equal(fwd.tensors["garment_landmarks"], garment.landmarks)
    assert sorted(fwd.tensors) == sorted([*person, "garment_image", "garment_mask", "garment_landmarks"])
    text = _metrics(gateway)
    assert 'gateway_requests_total{kind="tryon",outcome="need_garment"} 1.0' in text
    assert 'gateway_requests_total{kind="garment",outcome="garment_stored"} 1.0' in text
    assert 'gateway_requests_total{kind="tryon",outcome="result"} 2.0' in text
    assert 'transport_bytes_total{direction="in"}' in text


def test_viton_error_is_relayed(gateway_config: Any, gateway: Any, viton: TinyViton) -> None:
    viton.fail_code = "engine_failed"
    with _client(gateway_config) as client:
        r = client.tryon(person_tensors(), make_garment(), timeout_s=10)
    assert (r.kind, r.meta["code"], r.meta["message"]) == ("error", "engine_failed", "told to fail")


def test_viton_down_gives_typed_error(gateway_config: Any, gateway: Any, viton: TinyViton) -> None:
    viton.close()
    with _client(gateway_config) as client:
        client.put_garment(make_garment(), timeout_s=5)
        r = client.tryon(person_tensors(), make_garment(), timeout_s=15)
    assert (r.kind, r.meta["code"]) == ("error", "viton_unavailable")
    # Which of the two liveness signals fires first is a race, and both are right: the gateway's
    # request may leave before zmq reports the closed socket (-> "dropped ... in flight") or after
    # (-> no peer; the heartbeat deadline ends it). Either way the shopper hears it was VITON.
    assert r.meta["message"].startswith("VITON service: "), r.meta["message"]
    assert re.search(r"heartbeats missed|dropped with request '[0-9a-f]+' in flight", r.meta["message"]), \
        r.meta["message"]
    with pytest.raises(urllib.error.HTTPError) as e:
        # the first /health also probes the (absent) gvirtus backend and nvidia-smi: seconds on a busy host
        urllib.request.urlopen(f"http://{gateway.health.address}/health", timeout=20)
    assert e.value.code == 503
    body = json.loads(e.value.read())
    assert body["status"] == "degraded" and body["viton"]["reachable"] is False


def test_bad_requests_get_clear_errors(gateway_config: Any, gateway: Any) -> None:
    garment = make_garment()
    with _client(gateway_config) as client:
        with pytest.raises(InvalidRequest, match="'parse' must be uint8"):
            bad = dict(person_tensors())
            bad["parse"] = bad["parse"].astype(np.int32)
            client.tryon(bad, garment, timeout_s=5)
        channel = client.channel
        r = channel.request(Frame("tryon", "x1", {"garment_id": "nothex"}, person_tensors()), 5)
        assert r.meta["code"] == "bad_request" and "sha256" in r.meta["message"]
        forged = Frame("garment", "g1", {"garment_id": "0" * 64, "kind": "tshirt"},
                       {"image": garment.image, "mask": garment.mask, "landmarks": garment.landmarks})
        r = channel.request(forged, 5)
        assert r.meta["code"] == "bad_garment" and "does not match its content" in r.meta["message"]
        r = channel.request(Frame("dance", "k1"), 5)
        assert r.meta["code"] == "unknown_kind"
        # still serving
        assert client.tryon(person_tensors(), garment, timeout_s=10).kind == "result"


def test_malformed_frames_counted_and_gateway_keeps_serving(gateway_config: Any, gateway: Any) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger, sock.rcvtimeo = 0, 5000
    sock.connect(gateway_endpoint(gateway_config))
    try:
        sock.send_multipart([b"\xff\xfe garbage"])
        assert json.loads(sock.recv_multipart()[0])["meta"]["code"] == "malformed_frame"
        header = json.loads(encode(Frame("tryon", "m2", tensors={"a": np.zeros(2, np.uint8)}))[0])
        header["tensors"][0]["dtype"] = "float128"
        sock.send_multipart([json.dumps(header).encode(), b"\0" * 32])
        reply = json.loads(sock.recv_multipart()[0])
        assert reply["id"] == "m2" and reply["meta"]["code"] == "dtype_not_allowed"
    finally:
        sock.close()
    text = _metrics(gateway)
    assert 'transport_malformed_frames_total{code="malformed_frame"} 1.0' in text
    assert 'transport_malformed_frames_total{code="dtype_not_allowed"} 1.0' in text
    with _client(gateway_config) as client:
        assert client.tryon(person_tensors(), make_garment(), timeout_s=10).kind == "result"


def test_health_endpoint(gateway_config: Any, gateway: Any) -> None:
    with urllib.request.urlopen(f"http://{gateway.health.address}/health", timeout=20) as r:
        body = json.loads(r.read())
    assert body["status"] == "ok" and body["viton"]["reachable"] is True
    assert body["channels"][0]["backend"] == "tcp" and "RDMA" in body["channels"][0]["reason"]
    with _client(gateway_config) as client:
        h = client.health(5)
    assert h.kind == "health" and h.meta["viton"]["answer"] == "health" and h.meta["viton"]["ok"] is True
    assert h.meta["viton"]["meta"]["status"] == "ok"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{gateway.health.address}/nope", timeout=5)
    assert e.value.code == 404


def test_health_frame_does_not_block_the_channel(gateway_config: Any, gateway: Any, viton: TinyViton) -> None:
    """With VITON gone, a `health` frame waits for its ping timeout, but other requests do not wait behind it."""
    import time

    viton.close()
    with _client(gateway_config) as client:
        health = client.channel.submit(Frame("health", "h1"), 5)
        t0 = time.monotonic()
        assert client.put_garment(make_garment(), 5).kind == "garment_stored"
        assert time.monotonic() - t0 < 0.4
        h = health.result(timeout=5)
    assert h.meta["status"] == "degraded" and h.meta["viton"]["reachable"] is False


def _get(url: str) -> tuple[int, dict[str, str], dict]:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_liveness_and_readiness_follow_viton(gateway, viton: TinyViton) -> None:  # type: ignore[no-untyped-def]
    base = f"http://{gateway.health.address}"
    assert _get(base + "/livez")[::2] == (200, {"status": "alive"})
    assert _get(base + "/readyz")[::2] == (200, {"status": "ready"})
    viton.close()                                   # VITON down: alive, not ready, /health says why
    status, headers, body = _get(base + "/readyz")
    assert status == 503 and body["status"] == "not_ready" and body["health_status"] == "degraded"
    assert headers["Retry-After"] == "5"
    status, headers, body = _get(base + "/health")
    assert status == 503 and body["status"] == "degraded" and headers["Retry-After"] == "5"
    assert _get(base + "/livez")[0] == 200


def test_result_format_is_forwarded_and_checked(gateway_config: Any, gateway: Any, viton: TinyViton) -> None:
    from viton import contract

    garment, person = make_garment(), person_tensors()
    with _client(gateway_config) as client:
        r = client.tryon(person, garment, timeout_s=10, result=contract.result_request("jpeg", 80))
        assert r.kind == "result"
        fwd = viton.received[-1]
        assert (fwd.meta["result_format"], fwd.meta["result_jpeg_quality"]) == ("jpeg", 80)
        assert "result_format" not in client.tryon(person, garment, timeout_s=10).meta  # raw: nothing added
        assert "result_format" not in viton.received[-1].meta
        for meta, names in (({"result_format": "png"}, "result_format"),
                            ({"result_format": "jpeg", "result_jpeg_quality": 101}, "result_jpeg_quality"),
                            ({"result_format": "jpeg"}, "result_jpeg_quality"),
                            ({"result_jpeg_quality": 80}, "result_jpeg_quality")):
            bad = client.channel.request(Frame("tryon", "b1", {"garment_id": garment.id, **meta}, person), 5)
            assert (bad.kind, bad.meta["code"]) == ("error", "bad_request"), bad.meta
            assert names in bad.meta["message"], bad.meta["message"]
        with pytest.raises(InvalidRequest, match="result_format"):
            client.tryon(person, garment, timeout_s=5, result={"result_format": "gif"})


def test_the_photo_as_the_shoppers_jpeg_passes_the_gateway(gateway_config: Any, gateway: Any, viton: TinyViton) -> None:
    garment, person = make_garment(), dict(person_tensors())
    jpeg = np.frombuffer(b"\xff\xd8\xff\xe0" + bytes(100), np.uint8)      # the gateway does not decode it
    del person["person"]
    person["person_jpeg"] = jpeg
    with _client(gateway_config) as client:
        client.tryon(person, garment, timeout_s=10)
        fwd = viton.received[-1]
        assert "person" not in fwd.tensors and bytes(fwd.tensors["person_jpeg"]) == bytes(jpeg)
        both = {**person_tensors(), "person_jpeg": jpeg}
        with pytest.raises(InvalidRequest, match="both 'person' and 'person_jpeg'"):
            client.tryon(both, garment, timeout_s=5)
        r = client.channel.request(Frame("tryon", "b2", {"garment_id": garment.id}, both), 5)
        assert (r.kind, r.meta["code"]) == ("error", "bad_request") and "person_jpeg" in r.meta["message"]
