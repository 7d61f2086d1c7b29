"""Fixtures for transport tests: real zmq servers on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from transport.base import ChannelObserver
from transport.frames import Frame
from transport.tcp_server import TcpServer


class CountingObserver(ChannelObserver):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.malformed: list[str] = []
        self.bytes = {"in": 0, "out": 0}
        self.dropped: list[str] = []

    def on_bytes(self, direction: str, nbytes: int) -> None:
        with self.lock:
            self.bytes[direction] += nbytes

    def on_malformed(self, code: str) -> None:
        with self.lock:
            self.malformed.append(code)

    def on_dropped_reply(self, reason: str) -> None:
        with self.lock:
            self.dropped.append(reason)


def echo(frame: Frame, reply) -> None:  # type: ignore[no-untyped-def]
    reply(Frame("echo", frame.request_id, dict(frame.meta), dict(frame.tensors)))


@pytest.fixture
def observer() -> CountingObserver:
    return CountingObserver()


@pytest.fixture
def echo_server(observer: CountingObserver) -> Iterator[TcpServer]:
    server = TcpServer("tcp://127.0.0.1:0", echo, observer=observer)
    server.start()
    yield server
    server.close()


def make_config(overrides: dict | None = None, deployment: str = "LOCAL"):  # type: ignore[no-untyped-def]
    """A validated mirror.Config from the repo's env_config.json with `overrides` merged in."""
    import copy
    import json

    from mirror.config import DEFAULT_CONFIG_PATH, _merge, validate

    raw = json.loads(DEFAULT_CONFIG_PATH.read_text())
    raw["DEPLOYMENT"] = deployment
    raw["node1"]["operator_token_file"] = None
    raw["gvirtus"]["token_file"] = None
    return validate(_merge(copy.deepcopy(raw), overrides or {}), "test config")
