"""Node 2 in its own network namespace, reached over a veth pair (created and removed here).

The VITON stand-in stays in the root namespace on an ipc:// socket (a filesystem socket, which
namespaces share), as in a LOCAL deployment; node 1 (this test) reaches the gateway over
10.213.<n>.0/24. Pulling the link down shows dead-peer detection without a TCP reset.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from node1.tryon.node2_client import TryOnClient
from tests.node2.conftest import TinyViton, free_tcp_port, make_garment, person_tensors
from tests.node2.procs import start_gateway, stop, write_config
from tests.transport.conftest import make_config
from transport import Frame, PeerUnavailable, TcpClient

pytestmark = pytest.mark.needs_root


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.skip(f"needs root to create network namespaces (euid {os.geteuid()})")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` command")
    n = os.getpid() % 200 + 20
    ns, host_if, ns_if = f"vmtest{os.getpid()}", f"vmh{os.getpid()}"[:15], f"vmn{os.getpid()}"[:15]
    net = {"ns": ns, "host_if": host_if, "host_ip": f"10.213.{n}.1", "ns_ip": f"10.213.{n}.2"}
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{net['host_ip']}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"{net['ns_ip']}/24", "dev", ns_if)
        _ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        pytest.skip(f"cannot set up a network namespace here: {exc.stderr.decode().strip()}")
    yield net
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
    subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)  # gone with the ns, usually


def test_gateway_in_its_own_namespace(netns: dict[str, str], tmp_path: Path) -> None:
    port, health_port = free_tcp_port(), free_tcp_port()
    cfg = make_config({"node2": {"host": netns["ns_ip"], "gateway_port": port, "health_port": health_port},
                       "transport": {"mode": "auto"}, "viton": {"endpoint": f"ipc://{tmp_path}/viton.sock"},
                       "limits": {"request_timeout_s": 10}}, deployment="DISTRIBUTED")
    viton = TinyViton(cfg["viton"]["endpoint"]).start()
    proc, info = start_gateway(write_config(tmp_path / "cfg.json", cfg), prefix=["ip", "netns", "exec", netns["ns"]])
    client = TryOnClient(TcpClient(f"tcp://{netns['ns_ip']}:{port}"))
    try:
        assert info["listen"] == f"{netns['ns_ip']}:{port}"
        garment = make_garment()
        r = client.tryon(person_tensors(h=256, w=192), garment, timeout_s=15)
        assert r.kind == "result" and r.tensors["image"].shape == (256, 192, 3)
        # the first /health also probes the absent gvirtus backend (channel-ready wait up to 5 s): seconds
        with urllib.request.urlopen(f"http://{netns['ns_ip']}:{health_port}/health", timeout=20) as resp:
            assert json.loads(resp.read())["viton"]["reachable"] is True

        # The link goes down mid-request: no RST arrives, heartbeats notice it (2.5 s of silence).
        viton.delay_s = 2.0
        fut = client.channel.submit(Frame("tryon", "cut", {"garment_id": garment.id}, person_tensors()), 30)
        time.sleep(0.3)
        _ip("link", "set", netns["host_if"], "down")
        t0 = time.monotonic()
        with pytest.raises(PeerUnavailable, match="heartbeats missed"):
            fut.result(timeout=10)
        assert time.monotonic() - t0 < 3.5  # 3 s + slack for the shared, loaded test machine
        _ip("link", "set", netns["host_if"], "up")
        viton.delay_s = 0.0
        r = client.tryon(person_tensors(), garment, timeout_s=15)  # reconnects by itself
        assert r.kind == "result", r.meta
    finally:
        client.close()
        stop(proc)
        viton.close()
