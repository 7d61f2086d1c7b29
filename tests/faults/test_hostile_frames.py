"""Hostile frames: fuzz transport.frames.decode, then throw malformed messages at real receivers.

decode must raise only FrameError subclasses (never another exception), never allocate memory
for what a header merely claims, and the gateway and the VITON service must answer every bad
message with an error frame and keep serving.
"""

from __future__ import annotations

import json
import math
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node1.cli.http_client import WebClient
from tests.faults.deployment import Deployment
from transport import Frame, FrameError, TcpClient, decode, encode
from transport.frames import ALLOWED_DTYPES, MAX_HEADER_BYTES

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)
MAX_BYTES = 1 << 20
ALLOC_BOUND_BYTES = 256 * 1024     # decode may allocate this much at most, whatever the header claims
NUMPY_DIM_LIMIT = 2**62            # past this numpy itself refuses a shape (frames caps dims at MAX_DIM)

dims = st.one_of(st.integers(0, 64), st.integers(-(2**40), -1), st.integers(2**31, 2**70),
                 st.sampled_from([True, 1.5, "3", None, [2]]))
dtypes = st.one_of(st.sampled_from(sorted(ALLOWED_DTYPES)),
                   st.sampled_from(["object", "complex64", "float128", "U8", "V16", "<f4", "", "uint8 "]),
                   st.text(max_size=12))
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                          max_size=4), max_leaves=12)


def _numpy_rejects(shape: Any) -> bool:
    """Zero-element shapes with a dimension numpy cannot represent: the known bug, tested apart."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        return False
    nonzero = [d for d in shape if d > 0]
    return 0 in shape and bool(nonzero) and math.prod(nonzero) >= NUMPY_DIM_LIMIT


@st.composite
def frame_parts(draw: st.DrawFn) -> list[bytes]:
    n = draw(st.integers(0, 4))
    specs: list[Any] = []
    for _ in range(n):
        spec: Any = {"name": draw(st.one_of(st.text(min_size=1, max_size=8), st.text(max_size=80), st.integers())),
                     "dtype": draw(dtypes), "shape": draw(st.one_of(st.lists(dims, max_size=10), json_leaf))}
        if draw(st.booleans()) and draw(st.booleans()):
            spec = draw(json_value)                             # not even an object
        specs.append(spec)
    header: dict[str, Any] = {"v": draw(st.sampled_from([1, 1, 1, 0, 2, "1", None])),
                              "kind": draw(st.one_of(st.text(max_size=10), json_leaf)),
                              "id": draw(st.one_of(st.text(max_size=10), json_leaf)),
                              "meta": draw(st.one_of(st.dictionaries(st.text(max_size=6), json_value, max_size=3),
                                                     json_value)),
                              "tensors": specs}
    for key in draw(st.lists(st.sampled_from(sorted(header)), max_size=2)):
        header.pop(key, None)
    bufs = []
    for spec in specs:
        if isinstance(spec, dict) and _numpy_rejects(spec.get("shape")):
            spec["shape"] = [0]
        want = draw(st.integers(0, 256))
        if (isinstance(spec, dict) and spec.get("dtype") in ALLOWED_DTYPES and isinstance(spec.get("shape"), list)
                and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 64 for d in spec["shape"])
                and draw(st.booleans())):
            want = math.prod(spec["shape"]) * np.dtype(spec["dtype"]).itemsize     # the matching size
        bufs.append(b"\x01" * min(want, 4096))
    extra = draw(st.integers(-1, 1))                           # one buffer too few / too many
    bufs = bufs[:extra] if extra < 0 else bufs + [b"x"] * extra
    return [json.dumps(header).encode(), *bufs]


def _check_decoded(parts: list[bytes]) -> None:
    try:
        frame = decode(parts, max_bytes=MAX_BYTES)
    except FrameError:
        return
    for arr, buf in zip(frame.tensors.values(), parts[1:], strict=True):
        assert arr.nbytes == len(buf) and arr.dtype.name in ALLOWED_DTYPES


@FUZZ
@given(frame_parts())
def test_fuzzed_headers_raise_only_frame_errors(parts: list[bytes]) -> None:
    _check_decoded(parts)


@FUZZ
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=4))
def test_random_bytes_raise_only_frame_errors(parts: list[bytes]) -> None:
    _check_decoded(parts)


VALID = encode(Frame("tryon", "r1", {"garment_id": "g" * 64},
                     {"person": np.zeros((4, 3, 3), np.uint8), "keypoints": np.ones((25, 3), np.float32)}))
VALID_BYTES = [bytes(memoryview(p).cast("B")) if not isinstance(p, bytes) else p for p in VALID]


@FUZZ
@given(st.integers(0, len(VALID_BYTES) - 1), st.integers(0, 4000), st.binary(min_size=1, max_size=3),
       st.sampled_from(["truncate", "flip", "insert"]))
def test_mutated_valid_frames_raise_only_frame_errors(part: int, pos: int, junk: bytes, how: str) -> None:
    parts = list(VALID_BYTES)
    b = parts[part]
    pos %= max(len(b), 1)
    parts[part] = {"truncate": b[:pos], "flip": b[:pos] + junk + b[pos + len(junk):],
                   "insert": b[:pos] + junk + b[pos:]}[how]
    _check_decoded(parts)


@pytest.mark.parametrize("shape", [[2**40], [2**31, 2**31], [2**62, 2**62, 2**62], [1] * 8 + [2**60]])
def test_claimed_huge_shapes_allocate_nothing(shape: list[int]) -> None:
    header = json.dumps({"v": 1, "kind": "tryon", "id": "x", "meta": {},
                         "tensors": [{"name": "a", "dtype": "float64", "shape": shape}]}).encode()
    tracemalloc.start()
    try:
        with pytest.raises(FrameError):
            decode([header, b"\0" * 1024], max_bytes=MAX_BYTES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < ALLOC_BOUND_BYTES


def test_oversized_and_wrong_version_and_bad_json_are_typed() -> None:
    big = json.dumps({"v": 1, "kind": "k", "id": "i", "meta": {"pad": "x" * MAX_HEADER_BYTES}, "tensors": []})
    cases = {"header over the limit": [big.encode()],
             "body over max_bytes": [json.dumps({"v": 1, "kind": "k", "id": "i", "meta": {}, "tensors": [
                 {"name": "a", "dtype": "uint8", "shape": [MAX_BYTES + 1]}]}).encode(), bytes(MAX_BYTES + 1)],
             "version 2": [b'{"v": 2, "kind": "k", "id": "i", "meta": {}, "tensors": []}'],
             "bad json": [b'{"v": 1, "kind": '], "not utf-8": [b"\xff\xfe{}"], "no parts": []}
    for what, parts in cases.items():
        with pytest.raises(FrameError) as err:
            decode(parts, max_bytes=MAX_BYTES)
        assert str(err.value), what


NESTED_HEADER = b'{"v":1,"kind":"k","id":"i","meta":{"x":' + b"[" * 5000 + b"]" * 5000 + b'},"tensors":[]}'
ZERO_SIZE_HUGE_DIM = json.dumps({"v": 1, "kind": "k", "id": "i", "meta": {},
                                 "tensors": [{"name": "a", "dtype": "uint8", "shape": [0, 2**63]}]}).encode()


def test_deeply_nested_header_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        decode([NESTED_HEADER])


def test_zero_element_tensor_with_a_huge_dimension_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        decode([ZERO_SIZE_HUGE_DIM, b""])


# --------------------------------------------------------------- real receivers, real zmq sockets
def _dealer(endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 10_000
    sock.connect(endpoint)
    return sock


HOSTILE_MESSAGES: dict[str, tuple[list[bytes], set[str]]] = {
    "truncated tensor": ([json.dumps({"v": 1, "kind": "tryon", "id": "m1", "meta": {}, "tensors": [
        {"name": "person", "dtype": "uint8", "shape": [64, 64, 3]}]}).encode(), b"\0" * 100], {"malformed_frame"}),
    "wrong dtype": ([json.dumps({"v": 1, "kind": "tryon", "id": "m2", "meta": {}, "tensors": [
        {"name": "person", "dtype": "object", "shape": [1]}]}).encode(), b"\0" * 8],
        {"dtype_not_allowed", "malformed_frame"}),   # the gateway names it; VITON says malformed_frame
    "negative shape": ([json.dumps({"v": 1, "kind": "tryon", "id": "m3", "meta": {}, "tensors": [
        {"name": "person", "dtype": "uint8", "shape": [-1, 4]}]}).encode(), b""], {"malformed_frame"}),
    "huge shape": ([json.dumps({"v": 1, "kind": "tryon", "id": "m4", "meta": {}, "tensors": [
        {"name": "person", "dtype": "float64", "shape": [2**40, 2**40]}]}).encode(), b"\0" * 64], {"malformed_frame"}),
    "bad json": ([b'{"v": 1, "kind": "tryon", "id": "m5", '], {"malformed_frame"}),
    "wrong version": ([b'{"v": 9, "kind": "tryon", "id": "m6", "meta": {}, "tensors": []}'], {"malformed_frame"}),
    "oversized header": ([b'{"v":1,"pad":"' + b"x" * (MAX_HEADER_BYTES + 10) + b'"}'], {"frame_too_large"}),
    "valid frame, wrong tensors": ([json.dumps({"v": 1, "kind": "tryon", "id": "m8", "meta": {"garment_id": "z"},
                                                "tensors": []}).encode()], {"missing_tensor"}),  # viton.contract
}


def _viton_endpoint(dep: Deployment) -> str:
    return f"ipc://{Path(dep.cfg['paths']['var_dir'])}/viton.sock"


def test_gateway_and_viton_answer_hostile_frames_and_keep_serving(deployment: Deployment, client: WebClient,
                                                                   photo: bytes, garment_id: str) -> None:
    gateway = f"tcp://127.0.0.1:{deployment.cfg['node2']['gateway_port']}"
    for endpoint in (gateway, _viton_endpoint(deployment)):
        sock = _dealer(endpoint)
        try:
            for what, (parts, codes) in HOSTILE_MESSAGES.items():
                sock.send_multipart(parts)
                reply = json.loads(sock.recv_multipart()[0])
                assert reply["kind"] == "error", (endpoint, what, reply)
                assert reply["meta"]["code"] in codes, (endpoint, what, reply)
        finally:
            sock.close()
    before = deployment.children()
    r = client.tryon(photo, garment_id)                       # the whole path still works
    assert r["result_url"] and deployment.children() == before   # and nothing was restarted


@pytest.fixture
def lone_gateway(tmp_path: Path) -> Iterator[Any]:
    """A real node2 gateway (node2.gateway.start) in this process, on free ports."""
    from node2.gateway import start
    from tests.faults.deployment import free_ports
    from tests.transport.conftest import make_config

    gw_port, health_port = free_ports(2)
    cfg = make_config({"node2": {"host": "127.0.0.1", "gateway_port": gw_port, "health_port": health_port},
                       "transport": {"mode": "tcp"}, "viton": {"endpoint": f"ipc://{tmp_path}/viton.sock"}})
    running = start(cfg)
    try:
        yield running
    finally:
        running.close()


def test_gateway_survives_a_deeply_nested_header(lone_gateway: Any) -> None:
    """A header nested too deeply to parse must not take the gateway's channel down."""
    endpoint = lone_gateway.servers[0].info.endpoint
    sock = _dealer(endpoint)
    sock.rcvtimeo = 3000
    try:
        sock.send_multipart([NESTED_HEADER])
        try:
            sock.recv_multipart()                               # an error frame, ideally
        except zmq.Again:
            pass
    finally:
        sock.close()
    with TcpClient(endpoint, heartbeat_timeout_s=2.0) as c:
        assert c.request(Frame("health", "after"), 5).kind == "health"


def test_viton_service_survives_a_deeply_nested_header(tmp_path: Path) -> None:
    from viton import make_engine
    from viton.service import TryOnService, serve

    service = TryOnService(make_engine("geometric", device="cpu"))
    endpoint = f"ipc://{tmp_path}/v.sock"
    server = serve(service, endpoint, max_bytes=MAX_BYTES)
    sock = _dealer(endpoint)
    sock.rcvtimeo = 3000
    try:
        sock.send_multipart([NESTED_HEADER])
        try:
            sock.recv_multipart()
        except zmq.Again:
            pass
        sock.send_multipart(encode(Frame("ping", "after")))   # type: ignore[arg-type]
        assert json.loads(sock.recv_multipart()[0])["kind"] == "pong"
    finally:
        sock.close()
        server.close()
        service.stop()
