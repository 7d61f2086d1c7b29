"""The gateway against the real `python -m viton.service` (geometric engine) — opt-in: --run-slow.

Slow only because importing torch and painting the demo catalog take ~20 s on the shared VM.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from node1.tryon.node2_client import TryOnClient
from tests.node2.conftest import free_tcp_port
from tests.transport.conftest import make_config
from transport import TcpClient
from transport.endpoints import gateway_endpoint

ROOT = Path(__file__).resolve().parents[2]
SERVICE_START_TIMEOUT_S = 120.0


@pytest.mark.slow
def test_tryon_through_gateway_and_real_viton_service(tmp_path: Path, astronaut: np.ndarray) -> None:
    from garments.catalog import load_catalog
    from node2.gateway import start

    cfg = make_config({"node2": {"gateway_port": free_tcp_port(), "health_port": free_tcp_port()},
                       "paths": {"var_dir": str(tmp_path)}, "transport": {"mode": "tcp"},
                       "viton": {"engine": "geometric", "device": "cpu"}})
    env = dict(os.environ, PYTHONPATH=str(ROOT), VM__paths__var_dir=str(tmp_path), DEPLOYMENT="LOCAL",
               VM__viton__engine="geometric", VM__viton__device="cpu", OMP_NUM_THREADS="1")
    service = subprocess.Popen([sys.executable, "-m", "viton.service"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    running = None
    try:
        deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
        while not (tmp_path / "viton.sock").exists():
            out = service.stdout
            assert service.poll() is None and time.monotonic() < deadline, out.read() if out else ""
            time.sleep(0.2)
        running = start(cfg)
        garment = load_catalog(tmp_path / "catalog").garments[0]
        h, w = astronaut.shape[:2]
        kp = np.zeros((25, 3), np.float32)
        for i, (x, y) in {0: (255, 120), 1: (255, 190), 2: (180, 200), 5: (330, 200), 3: (160, 300),
                          6: (350, 300), 4: (150, 400), 7: (360, 400), 8: (255, 420), 9: (210, 420),
                          12: (300, 420)}.items():
            kp[i] = (x, y, 0.9)
        parse = np.zeros((h, w), np.uint8)
        parse[180:450, 150:360] = 5
        person = {"person": astronaut, "parse": parse, "keypoints": kp}
        with TryOnClient(TcpClient(gateway_endpoint(cfg))) as client:
            r = client.tryon(person, garment, timeout_s=60)
        assert r.kind == "result", r.meta
        assert r.tensors["image"].shape == astronaut.shape and r.meta["engine"] == "geometric"
        assert {"gateway_ms", "viton_ms"} <= set(r.meta["timings_ms"])
        assert not np.array_equal(r.tensors["image"][180:450, 150:360], astronaut[180:450, 150:360])
    finally:
        if running is not None:
            running.close()
        service.terminate()
        service.wait(10)
