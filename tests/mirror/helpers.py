"""Helpers for foundation tests: temporary configs on free ports."""

from __future__ import annotations

import json
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def make_config(tmp_path: Path, **overrides: dict) -> Path:
    """A copy of env_config.json on free loopback ports, writing under tmp_path; returns its path."""
    cfg = json.loads((ROOT / "env_config.json").read_text())
    p = free_ports(6)
    cfg["node1"]["https_port"] = p[0]
    cfg["node2"].update(gvirtus_port=p[1], gateway_port=p[2], health_port=p[3])
    cfg["viton"]["port"] = p[4]
    cfg["transport"]["rdma"]["rdma_port"] = p[5]
    for name in ("gvirtus.token", "operator.token"):
        (tmp_path / name).write_text("test-token-" + name)
    cfg["gvirtus"]["token_file"] = str(tmp_path / "gvirtus.token")
    cfg["node1"]["operator_token_file"] = str(tmp_path / "operator.token")
    cfg["paths"]["var_dir"] = str(tmp_path / "var")
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(cfg.get(section), dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    path = tmp_path / "env_config.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path
