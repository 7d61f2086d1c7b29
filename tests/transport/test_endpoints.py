"""The one endpoint derivation the gateway and the VITON service share."""

from __future__ import annotations

from tests.transport.conftest import make_config
from transport import gateway_bind_endpoint, gateway_endpoint, viton_bind_endpoint, viton_endpoint


def test_local_uses_ipc_under_var_dir(repo_root) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config()
    assert viton_endpoint(cfg) == viton_bind_endpoint(cfg) == f"ipc://{repo_root}/var/viton.sock"


def test_distributed_uses_tcp_and_bind_host() -> None:
    cfg = make_config({"node2": {"host": "10.0.0.2", "bind_host": "0.0.0.0"}, "viton": {"port": 9600}},
                      deployment="DISTRIBUTED")
    assert viton_endpoint(cfg) == "tcp://10.0.0.2:9600"
    assert viton_bind_endpoint(cfg) == "tcp://0.0.0.0:9600"
    assert gateway_endpoint(cfg) == "tcp://10.0.0.2:9555"
    assert gateway_bind_endpoint(cfg) == "tcp://0.0.0.0:9555"


def test_explicit_endpoint_and_placement_and_ipv6() -> None:
    cfg = make_config({"viton": {"endpoint": "tcp://1.2.3.4:7"}}, deployment="DISTRIBUTED")
    assert viton_endpoint(cfg) == viton_bind_endpoint(cfg) == "tcp://1.2.3.4:7"
    cfg = make_config({"viton": {"placement": "node1"}, "node1": {"host": "10.0.0.1"}}, deployment="DISTRIBUTED")
    assert viton_endpoint(cfg) == "tcp://10.0.0.1:9557"
    cfg = make_config({"node2": {"host": "::1"}}, deployment="DISTRIBUTED")
    assert viton_endpoint(cfg) == "tcp://[::1]:9557"
