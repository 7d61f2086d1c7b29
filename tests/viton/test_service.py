"""The try-on service over real zmq sockets (transport's server channel on ipc in a temp folder): try-on,
ping/health while busy, typed errors for bad requests (a missing tensor named), and it keeps serving; the
engine factory's errors; the process leaves no socket file behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from viton_synth import drawn_person, make_garment

from transport.frames import Frame, decode, encode
from viton import EngineConfigError, UnknownEngine, make_engine
from viton.geometric import GeometricEngine
from viton.service import TryOnService, serve

REPLY_TIMEOUT_MS = 10_000


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    endpoint = f"ipc://{tmp_path}/viton.sock"
    svc = TryOnService(GeometricEngine())
    server = serve(svc, endpoint, max_bytes=64 * 1024 * 1024)
    yield endpoint
    server.close()
    svc.stop()
    assert svc._worker is not None and not svc._worker.is_alive()


@pytest.fixture
def client(service: str) -> Iterator[zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, REPLY_TIMEOUT_MS)
    sock.connect(service)
    yield sock
    sock.close()
    ctx.term()


def tryon_frame(rid: str) -> Frame:
    p, g = drawn_person(), make_garment("tshirt")
    return Frame("tryon", rid, meta={"garment_kind": g.kind, "garment_id": "0" * 64}, tensors={
        "person": p.image, "parse": p.parse, "keypoints": p.keypoints,
        "garment_image": g.image, "garment_mask": g.mask, "garment_landmarks": g.landmarks})


def call(sock: zmq.Socket, frame: Frame) -> Frame:
    sock.send_multipart(encode(frame), copy=False)
    return decode(sock.recv_multipart())


def test_tryon_result_matches_the_engine(client: zmq.Socket) -> None:
    reply = call(client, tryon_frame("r1"))
    assert reply.kind == "result" and reply.request_id == "r1"
    assert reply.meta["engine"] == "geometric" and reply.meta["device"] == "cpu"
    assert {"engine_total", "viton_ms", "queue_ms"} <= set(reply.meta["timings_ms"])
    direct = GeometricEngine().try_on(drawn_person(), make_garment("tshirt"))
    assert np.array_equal(reply.tensors["image"], direct.image)


def test_ping_and_health(client: zmq.Socket) -> None:
    pong = call(client, Frame("ping", "p1"))
    assert pong.kind == "pong" and pong.request_id == "p1"
    health = call(client, Frame("health", "h1"))
    assert health.kind == "health" and health.meta["engine"] == "geometric" and health.meta["status"] == "ok"
    assert health.meta["reads"] == ["person", "parse", "keypoints"]


def test_health_answers_while_tryons_are_queued(client: zmq.Socket) -> None:
    for i in range(3):
        client.send_multipart(encode(tryon_frame(f"t{i}")), copy=False)
    client.send_multipart(encode(Frame("ping", "while-busy")), copy=False)
    replies = [decode(client.recv_multipart()) for _ in range(4)]
    ids = [r.request_id for r in replies]
    assert ids.index("while-busy") < ids.index("t2"), f"ping waited behind the try-ons: {ids}"
    assert sorted(r.kind for r in replies) == ["pong", "result", "result", "result"]


@pytest.mark.parametrize(("mutate", "code", "text"), [
    (lambda f: f.tensors.pop("parse"), "missing_tensor", "lacks tensor(s) parse"),
    (lambda f: f.tensors.pop("keypoints"), "missing_tensor", "lacks tensor(s) keypoints"),
    (lambda f: f.tensors.__setitem__("pose_render", np.zeros((512, 384, 3), np.uint8)), "bad_input",
     "unknown tensor(s) pose_render"),
    (lambda f: f.tensors.__setitem__("parse", np.zeros((7, 7), np.uint8)), "bad_input",
     r"'parse' must be uint8 (512, 384); got uint8 (7, 7)"),
    (lambda f: f.tensors.__setitem__("parse", np.full((512, 384), 33, np.uint8)), "bad_input", "label 33"),
    (lambda f: f.tensors.__setitem__("keypoints", np.zeros((25, 3), np.float64)), "bad_input",
     "'keypoints' must be float32"),
    (lambda f: f.tensors.__setitem__("keypoints", np.zeros((25, 3), np.float32)), "no_pose", "RShoulder (2)"),
])
def test_bad_requests_get_typed_errors_and_service_keeps_serving(client: zmq.Socket, mutate, code: str,
                                                                 text: str) -> None:
    frame = tryon_frame("bad")
    mutate(frame)
    reply = call(client, frame)
    assert reply.kind == "error" and reply.request_id == "bad"
    assert reply.meta["code"] == code and text in reply.meta["message"]
    assert call(client, tryon_frame("after")).kind == "result"


def test_malformed_and_unknown_frames(client: zmq.Socket) -> None:
    client.send_multipart([b"not json"])
    reply = decode(client.recv_multipart())
    assert reply.kind == "error" and reply.meta["code"] == "malformed_frame"
    client.send_multipart([b'{"v":1,"kind":"tryon","id":"x","meta":{},"tensors":[{"name":"a","dtype":"uint8",'
                           b'"shape":[4]}]}', b"abc"])
    reply = decode(client.recv_multipart())
    assert reply.meta["code"] == "malformed_frame" and reply.request_id == "x"
    reply = call(client, Frame("dance", "d"))
    assert reply.meta["code"] == "unknown_kind" and "'dance'" in reply.meta["message"]
    assert call(client, Frame("ping", "still")).kind == "pong"


def test_make_engine_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownEngine, match="'nope' is not an engine; choose one of geometric, vitonhd"):
        make_engine("nope")
    with pytest.raises(EngineConfigError, match="needs checkpoint_dir"):
        make_engine("vitonhd")
    from viton.vitonhd import CheckpointError  # the vitonhd engine's own error, propagated unchanged

    with pytest.raises(CheckpointError, match="seg_final.pth"):
        make_engine("vitonhd", checkpoint_dir=tmp_path)
    assert make_engine("geometric").name == "geometric"


def _env(tmp_path: Path, engine: str) -> dict[str, str]:
    import os
    return {**os.environ, "VM__viton__endpoint": f"ipc://{tmp_path}/svc.sock", "VM__viton__engine": engine,
            "VM__viton__checkpoint_dir": str(tmp_path / "no-checkpoints")}


def test_service_process_serves_and_stops_on_sigterm(tmp_path: Path, repo_root: Path) -> None:
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "viton.service"], cwd=repo_root, env=_env(tmp_path, "geometric"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 20_000)
        sock.connect(f"ipc://{tmp_path}/svc.sock")
        assert call(sock, Frame("ping", "1")).kind == "pong"
        sock.close()
        ctx.term()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out
        assert "ready" in out
        assert not (tmp_path / "svc.sock").exists(), "the service left its ipc socket file behind"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_service_refuses_to_start_without_vitonhd_weights(tmp_path: Path, repo_root: Path) -> None:
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "viton.service"], cwd=repo_root, env=_env(tmp_path, "vitonhd"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    out = done.stderr + done.stdout
    assert "cannot start the 'vitonhd' try-on engine: CheckpointError" in out
    assert "no-checkpoints" in out  # the message names the folder it looked in


def test_a_jpeg_result_is_the_file_the_web_app_would_have_made(client: zmq.Socket) -> None:
    import io

    from PIL import Image

    raw = call(client, tryon_frame("raw1"))
    frame = tryon_frame("jpeg1")
    frame.meta.update(result_format="jpeg", result_jpeg_quality=92)
    got = call(client, frame)
    assert got.kind == "result" and sorted(got.tensors) == ["image_jpeg"], got.meta
    data = got.tensors["image_jpeg"]
    assert data.dtype == np.uint8 and data.ndim == 1 and bytes(data[:3]) == b"\xff\xd8\xff"
    buf = io.BytesIO()
    Image.fromarray(raw.tensors["image"]).save(buf, format="JPEG", quality=92)   # node1.web's encode_jpeg
    assert bytes(data) == buf.getvalue()
    assert got.meta["timings_ms"]["encode_ms"] > 0
    assert data.nbytes < raw.tensors["image"].nbytes / 5


@pytest.mark.parametrize("meta", [{"result_format": "webp"}, {"result_format": "jpeg", "result_jpeg_quality": 0},
                                  {"result_format": "jpeg", "result_jpeg_quality": True}])
def test_bad_result_formats_are_named(client: zmq.Socket, meta: dict) -> None:
    frame = tryon_frame("badfmt")
    frame.meta.update(meta)
    got = call(client, frame)
    assert got.kind == "error" and got.meta["code"] == "bad_input" and "result_" in got.meta["message"], got.meta
    assert call(client, tryon_frame("after")).kind == "result"      # still serving


def _jpeg_of(rgb: np.ndarray, **save: object) -> tuple[bytes, np.ndarray]:
    """A JPEG file of `rgb` and the pixels it decodes to (as node 1's web app decodes it)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90, **save)
    data = buf.getvalue()
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("save", [{}, {"subsampling": 0}, {"progressive": True}])
def test_the_photo_may_travel_as_the_shoppers_jpeg(client: zmq.Socket, save: dict) -> None:
    """person_jpeg instead of person: the service decodes the file to exactly the pixels node 1 decoded, so
    the try-on is the one the pixels would have given."""
    frame = tryon_frame("px")
    data, pixels = _jpeg_of(frame.tensors["person"], **save)
    frame.tensors["person"] = pixels
    by_pixels = call(client, frame)
    del frame.tensors["person"]
    frame.tensors["person_jpeg"] = np.frombuffer(data, np.uint8)
    frame.request_id = "jp"
    by_file = call(client, frame)
    assert by_pixels.kind == by_file.kind == "result", by_file.meta
    np.testing.assert_array_equal(by_file.tensors["image"], by_pixels.tensors["image"])


def test_a_bad_person_jpeg_is_named(client: zmq.Socket) -> None:
    frame = tryon_frame("bad")
    data, _ = _jpeg_of(frame.tensors["person"])
    small, _ = _jpeg_of(np.ascontiguousarray(frame.tensors["person"][::2, ::2]))
    grey, _ = _jpeg_of(frame.tensors["person"][..., 0])
    cases = {"broken": (data[: len(data) // 3], "not a JPEG file that decodes"),
             "png": (b"\x89PNG\r\n\x1a\n" + data[8:], "JPEG"),
             "small": (small, "the parse map is 384x512"), "grey": (grey, "only RGB")}
    for name, (payload, says) in cases.items():
        f = tryon_frame(name)
        del f.tensors["person"]
        f.tensors["person_jpeg"] = np.frombuffer(payload, np.uint8)
        got = call(client, f)
        assert got.kind == "error" and got.meta["code"] == "bad_input", (name, got.meta)
        assert "person_jpeg" in got.meta["message"] and says in got.meta["message"], (name, got.meta["message"])
    both = tryon_frame("both")
    both.tensors["person_jpeg"] = np.frombuffer(data, np.uint8)
    got = call(client, both)
    assert got.meta["code"] == "bad_input" and "both 'person' and 'person_jpeg'" in got.meta["message"]
    assert call(client, tryon_frame("after")).kind == "result"      # still serving
