"""Node 2 fixtures: a small real VITON-protocol service (zmq ROUTER in a thread) and a gateway."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zmq

from tests.transport.conftest import make_config
from transport.frames import Frame, decode, encode, error_frame

ROUTER_POLL_MS = 50


class TinyViton:
    """Answers the VITON-facing protocol of docs/transport.md over a real ROUTER socket.

    tryon -> result whose image is the person blended 50/50 with the garment's mean colour
    (so tests can check the garment arrived); ping -> pong; health -> health {status ok}.
    `delay_s` and `fail_code` shape its answers.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.delay_s = 0.0
        self.fail_code: str | None = None
        self.received: list[Frame] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TinyViton:
        self._thread.start()
        self._ready.wait(5)
        return self

    def _run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.ROUTER)
        sock.linger = 0
        sock.bind(self.endpoint)
        self._ready.set()
        pending: list[tuple[float, list]] = []
        try:
            while not self._stop.is_set():
                if sock.poll(ROUTER_POLL_MS if not pending else 5):
                    ident, *parts = sock.recv_multipart(copy=False)
                    reply = self._answer(parts)
                    pending.append((time.monotonic() + (self.delay_s if reply.kind not in ("pong", "health") else 0),
                                    [ident, *encode(reply)]))
                now = time.monotonic()
                for item in [p for p in pending if p[0] <= now]:
                    sock.send_multipart(item[1], copy=False)
                    pending.remove(item)
        finally:
            sock.close(linger=0)

    def _answer(self, parts: list) -> Frame:
        try:
            frame = decode(parts)
        except Exception as exc:
            return error_frame("", "malformed_frame", str(exc))
        if frame.kind == "ping":
            return Frame("pong", frame.request_id)
        if frame.kind == "health":
            return Frame("health", frame.request_id, {"status": "ok", "engine": "tiny"})
        self.received.append(frame)
        if self.fail_code:
            return error_frame(frame.request_id, self.fail_code, "told to fail")
        if "person" not in frame.tensors:      # person_jpeg: this stand-in does not decode; it says what came
            return error_frame(frame.request_id, "bad_input", f"got {sorted(frame.tensors)}")
        person = frame.tensors["person"].astype(np.float32)
        colour = frame.tensors["garment_image"].reshape(-1, 3).mean(axis=0)
        image = ((person + colour) / 2).astype(np.uint8)
        return Frame("result", frame.request_id, {"timings_ms": {"engine_ms": 1.0}, "engine": "tiny",
                                                  "device": "cpu"}, {"image": image})

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def person_tensors(h: int = 64, w: int = 48, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "person": rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
        "parse": rng.integers(0, 20, (h, w), dtype=np.uint8),
        "keypoints": rng.random((25, 3), dtype=np.float32) * np.float32(w),
    }


@dataclass(frozen=True)
class TestGarment:
    id: str
    kind: str
    image: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray


def make_garment(colour: tuple[int, int, int] = (200, 30, 30), h: int = 40, w: int = 30) -> TestGarment:
    from garments.types import content_id

    image = np.empty((h, w, 3), np.uint8)
    image[:] = colour
    mask = np.full((h, w), 255, np.uint8)
    landmarks = np.random.default_rng(3).random((9, 2), dtype=np.float32) * np.float32(w)
    return TestGarment(content_id(image, mask), "tshirt", image, mask, landmarks)


@pytest.fixture
def gateway_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    ports = {"gateway_port": free_tcp_port(), "health_port": free_tcp_port()}
    return make_config({"node2": ports, "transport": {"mode": "auto"},
                        "viton": {"endpoint": f"ipc://{tmp_path}/viton.sock"},
                        "limits": {"request_timeout_s": 5}})


@pytest.fixture
def viton(gateway_config) -> Iterator[TinyViton]:  # type: ignore[no-untyped-def]
    service = TinyViton(gateway_config["viton"]["endpoint"]).start()
    yield service
    service.close()


@pytest.fixture
def gateway(gateway_config, viton):  # type: ignore[no-untyped-def]
    from node2.gateway import start

    running = start(gateway_config)
    yield running
    running.close()
