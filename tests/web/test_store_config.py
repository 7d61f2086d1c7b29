"""Config keys of the shared store (node1.store, node1.web_processes, node1.redis), the supervisor's
Redis child, and `python -m mirror.redis_server` itself (a real redis-server, started and stopped)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirror import ConfigError
from mirror.config import ROOT, redis_address, validate
from mirror.launch import role_specs
from mirror.redis_server import ping
from tests.web.conftest import make_config_dict

READY_TIMEOUT_S = 30.0


def _cfg(tmp_path: Path, **over):  # type: ignore[no-untyped-def]
    return validate(make_config_dict(tmp_path, **over), source="t.json")


def test_more_than_one_web_process_needs_redis(tmp_path):
    with pytest.raises(ConfigError, match=r"node1\.web_processes = 3 needs node1\.store = \"redis\""):
        _cfg(tmp_path, node1={"web_processes": 3})
    cfg = _cfg(tmp_path, node1={"web_processes": 3, "store": "redis"})
    assert cfg["node1"]["web_processes"] == 3


@pytest.mark.parametrize(("redis_over", "words"), [
    ({"host": "127.0.0.1"}, "host and node1.redis.port must be set together"),
    ({"host": "127.0.0.1", "port": 6390, "unix_socket": "var/x.sock"}, "not both"),
    ({"host": "10.0.0.5", "port": 6390}, "binds a unix socket or loopback only"),
    ({"key_prefix": "bad prefix!"}, "node1.redis.key_prefix"),
    ({"colour": "red"}, "unknown key node1.redis.colour"),
])
def test_bad_redis_settings_name_the_key(tmp_path, redis_over, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        _cfg(tmp_path, node1={"store": "redis", "redis": redis_over})


def test_redis_address_and_port_clash(tmp_path):
    cfg = _cfg(tmp_path, node1={"store": "redis"})
    assert redis_address(cfg) == str(tmp_path / "var" / "redis" / "redis.sock")
    cfg = _cfg(tmp_path, node1={"store": "redis", "redis": {"host": "127.0.0.1", "port": 6390}})
    assert redis_address(cfg) == ("127.0.0.1", 6390)
    with pytest.raises(ConfigError, match="node1.redis.port = 18443 is the same port as node1.https_port"):
        _cfg(tmp_path, node1={"store": "redis", "redis": {"host": "127.0.0.1", "port": 18443}})


def test_supervisor_starts_redis_before_node1_only_when_configured(tmp_path):
    names = [s.name for s in role_specs(_cfg(tmp_path), "all")]
    assert "node1.redis" not in names
    cfg = _cfg(tmp_path, node1={"store": "redis", "web_processes": 2})
    for role in ("all", "node1"):
        names = [s.name for s in role_specs(cfg, role)]
        assert names.index("node1.redis") == names.index("node1.web") - 1
    assert "node1.redis" not in [s.name for s in role_specs(cfg, "node2")]
    unmanaged = _cfg(tmp_path, node1={"store": "redis", "redis": {"managed": False}})
    assert "node1.redis" not in [s.name for s in role_specs(unmanaged, "all")]
    tcp = _cfg(tmp_path, node1={"store": "redis", "redis": {"host": "127.0.0.1", "port": 6390}})
    spec = next(s for s in role_specs(tcp, "all") if s.name == "node1.redis")
    assert spec.ports == [("node1.redis.port", "127.0.0.1", 6390)]


def test_redis_child_starts_memory_only_and_stops_clean(tmp_path):
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; scripts/bootstrap.sh as root)")
    cfg = make_config_dict(tmp_path, node1={"store": "redis"})
    path = tmp_path / "env_config.json"
    path.write_text(json.dumps(cfg))
    sock = tmp_path / "var" / "redis" / "redis.sock"
    sock.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)      # a stale socket left by a killed Redis: nobody answers on it
    stale.bind(str(sock))
    stale.close()
    r, w = os.pipe()
    env = dict(os.environ, VM_CONFIG=str(path), VM_NOTIFY_FD=str(w), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "mirror.redis_server"], env=env, pass_fds=(w,),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    os.close(w)
    try:
        assert select.select([r], [], [], READY_TIMEOUT_S)[0], "no READY line"
        ready = json.loads(os.read(r, 4096).decode().split("READY ", 1)[1])
        assert ready["listen"] == f"unix:{sock}"
        assert ping(str(sock))
        assert oct(sock.parent.stat().st_mode & 0o777) == "0o700"
        assert oct(sock.stat().st_mode & 0o777) == "0o700"
        import redis

        client = redis.Redis(unix_socket_path=str(sock))
        assert client.config_get("save")["save"] == "" and client.config_get("appendonly")["appendonly"] == "no"
        assert client.config_get("maxmemory")["maxmemory"] == str(512 * 1024 * 1024)
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        time.sleep(0.1)
        assert not sock.exists()
        assert not list(sock.parent.iterdir())          # nothing written: no dump.rdb, no appendonly file
    finally:
        os.close(r)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_unreachable_redis_is_a_config_error_naming_it(tmp_path, catalog):
    from node1.web import create_app
    from tests.web.doubles import TorsoTintTestRunner

    cfg = _cfg(tmp_path, node1={"store": "redis", "redis": {"unix_socket": str(tmp_path / "none.sock")}})
    with pytest.raises(ConfigError, match=r"Redis at .*none\.sock does not answer"):
        create_app(cfg, runner=TorsoTintTestRunner(catalog), catalog=catalog)
