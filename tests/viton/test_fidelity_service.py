"""Same result through the service as in process: a real `python -m viton.service` process (zmq
over ipc in a temp folder), real photos through node 1's real preprocessing, demo garments; the
reply's image must equal the in-process engine's bit for bit.

The request carries a black pose picture: the geometric engine does not read it (nor the person
mask), so the in-process result, made without either, must still be the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from photo_variants import demo_garments, person

from transport.frames import Frame, decode, encode
from viton import GeometricEngine

REPLY_TIMEOUT_MS = 60_000
STOP_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Iterator[zmq.Socket]:
    tmp = tmp_path_factory.mktemp("viton-svc")
    endpoint = f"ipc://{tmp}/svc.sock"
    env = {**os.environ, "VM__viton__endpoint": endpoint, "VM__viton__engine": "geometric"}
    proc = subprocess.Popen([sys.executable, "-m", "viton.service"], cwd=repo_root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, REPLY_TIMEOUT_MS)
    sock.connect(endpoint)
    try:
        yield sock
    finally:
        sock.close()
        ctx.term()
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        assert proc.returncode == 0, out


@pytest.mark.parametrize(("name", "kind"), [("astronaut", "original"), ("camera", "dark")])
def test_service_result_equals_in_process(service: zmq.Socket, name: str, kind: str) -> None:
    p = person(name, kind)
    assert p is not None
    for i, (slug, g) in enumerate(demo_garments()[:4]):
        frame = Frame("tryon", f"{name}-{i}", meta={"garment_kind": g.kind, "garment_id": "0" * 64}, tensors={
            "person": p.image, "parse": p.parse, "keypoints": p.keypoints,
            "garment_image": g.image, "garment_mask": g.mask, "garment_landmarks": g.landmarks})
        service.send_multipart(encode(frame), copy=False)
        reply = decode(service.recv_multipart())
        assert reply.kind == "result", reply.meta
        direct = GeometricEngine().try_on(p, g)
        assert np.array_equal(reply.tensors["image"], direct.image), f"{name}/{kind} {slug}: service != in process"
