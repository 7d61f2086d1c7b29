"""A real pool for tests and bench/pool_bench.py: N node 2s (each `start_application.sh --role node2`:
gvirtus backend, VITON service, gateway) in N network namespaces made here, each behind its own veth
pair, and node 1 (`--role node1`) in the root namespace listening on every veth's host address.

    with PoolCluster(tmp, n=3, sources=("config", "dns", "registered")) as c:
        c.client                    # WebClient of node 1
        c.nodes()                   # GET /api/nodes (operator token)
        c.kill9(i); c.restart(i)    # kill -9 every process of member i / start it again

Member i's source: "config" (pool.members), "dns" (a name served by a dnsmasq this harness starts on
loopback: pool.dns) or "registered" (its gateway runs with --register node 1's URL). Needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from node1.cli.http_client import WebClient
from testing.deployment import descendants, free_ports
from tests.faults.deployment import Deployment, write_config

DNS_NAME = "node2.pool.test"
REGISTRATION_TOKEN = "test-registration-token"
WAIT_S = 240.0


def netns_unavailable() -> str | None:
    """Why the pool cannot be built here, or None."""
    if os.geteuid() != 0:
        return f"needs root to create network namespaces (euid {os.geteuid()})"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` command"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Netns:
    """One namespace + veth pair: host side `host_ip`, namespace side `ns_ip` (a /24 of its own)."""

    def __init__(self, index: int) -> None:
        pid = os.getpid()
        subnet = (pid * 7 + index * 31) % 200 + 20
        self.ns = f"vmpool{pid}x{index}"
        self.host_if, self.ns_if = f"vph{pid}x{index}"[:15], f"vpn{pid}x{index}"[:15]
        self.host_ip, self.ns_ip = f"10.216.{subnet}.1", f"10.216.{subnet}.2"

    def create(self) -> Netns:
        try:
            _ip("netns", "add", self.ns)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.ns)
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            for cmd in (["addr", "add", f"{self.ns_ip}/24", "dev", self.ns_if], ["link", "set", self.ns_if, "up"],
                        ["link", "set", "lo", "up"]):
                _ip("netns", "exec", self.ns, "ip", *cmd)
        except subprocess.CalledProcessError as exc:
            self.remove()
            raise RuntimeError(f"cannot create network namespace {self.ns}: {exc.stderr.decode().strip()}") from exc
        return self

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)


class Dnsmasq:
    """Debian's dnsmasq on 127.0.0.1:<free port> answering `DNS_NAME` from a hosts file (SIGHUP rereads it)."""

    def __init__(self, work: Path, ips: tuple[str, ...] = ()) -> None:
        exe = shutil.which("dnsmasq")
        if exe is None:
            raise RuntimeError("dnsmasq is not installed (apt-get install dnsmasq-base)")
        self.hosts = work / "pool.hosts"
        self._write(list(ips))
        self.port = free_ports(1)[0]
        domain = DNS_NAME.split(".", 1)[1]   # answered here only: no AAAA forwarded anywhere (REFUSED)
        self.proc = subprocess.Popen([exe, "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                                      "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={self.port}",
                                      f"--addn-hosts={self.hosts}", f"--local=/{domain}/", "--no-negcache",
                                      "--local-ttl=0", f"--pid-file={work / 'dnsmasq.pid'}", "--user=root"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 10.0) -> None:
        """Until it answers (a SIGHUP before its handler is installed would kill it)."""
        import dns.exception
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.port, r.lifetime = ["127.0.0.1"], self.port, 0.5
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"dnsmasq exited ({self.proc.returncode}): {err}")
            try:
                r.resolve(DNS_NAME, "A")
                return
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                return                                   # it answers
            except dns.exception.DNSException:
                time.sleep(0.05)
        raise RuntimeError(f"dnsmasq on port {self.port} did not answer within {timeout_s:.0f} s")

    @property
    def resolver(self) -> str:
        return f"127.0.0.1#{self.port}"

    def _write(self, ips: list[str]) -> None:
        self.hosts.write_text("".join(f"{ip} {DNS_NAME}\n" for ip in ips))

    def set_addresses(self, ips: list[str]) -> None:
        """Serve `ips` for DNS_NAME from now on (dnsmasq rereads its hosts file on SIGHUP)."""
        self._write(ips)
        self.proc.send_signal(signal.SIGHUP)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class PoolCluster:
    """See the module docstring. `overrides` apply to every config (e.g. {"limits": {...}})."""

    def __init__(self, work: Path, n: int = 3, sources: tuple[str, ...] = ("config", "config", "config"),
                 overrides: dict[str, Any] | None = None, heartbeat_timeout_s: float = 3.0) -> None:
        if len(sources) != n:
            raise ValueError(f"one source per member: got {len(sources)} for {n}")
        self.work, self.n, self.sources = work, n, sources
        self.nets: list[Netns] = []
        self.node2: list[Deployment | None] = [None] * n
        self.node1: Deployment | None = None
        self.dns: Dnsmasq | None = None
        base_path, base = write_config(work / "node1", {"DEPLOYMENT": "DISTRIBUTED", **(overrides or {})})
        token = work / "registration.token"
        token.write_text(REGISTRATION_TOKEN)
        token.chmod(0o600)
        base["node1"]["host"] = "0.0.0.0"  # noqa: S104 (the registered node 2 reaches node 1 over its veth)
        base["pool"] = {"members": [], "dns": None, "registration_token_file": str(token),
                        "health_interval_s": 1.0, "heartbeat_timeout_s": heartbeat_timeout_s}
        self.base, self.node1_config = base, base_path
        self.url = f"https://127.0.0.1:{base['node1']['https_port']}"
        self.operator_token = Path(base["node1"]["operator_token_file"]).read_text().strip()
        self.client: WebClient | None = None

    def member_name(self, i: int) -> str:
        return f"{DNS_NAME}-{self.nets[i].ns_ip}" if self.sources[i] == "dns" else f"n2-{i}"

    def _node2_config(self, i: int) -> tuple[Path, dict[str, Any]]:
        cfg = json.loads(json.dumps(self.base))
        cfg["node2"].update(host=self.nets[i].ns_ip, name=self.member_name(i))
        cfg["paths"]["var_dir"] = str(self.work / f"node2-{i}" / "var")
        (self.work / f"node2-{i}").mkdir(parents=True, exist_ok=True)
        path = self.work / f"node2-{i}" / "env_config.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path, cfg

    def start(self) -> PoolCluster:
        try:
            self.nets = [Netns(i).create() for i in range(self.n)]
            ports = {k: self.base["node2"][k] for k in ("gvirtus_port", "gateway_port", "health_port")}
            members = [{"name": self.member_name(i), "host": self.nets[i].ns_ip, **ports}
                       for i in range(self.n) if self.sources[i] == "config"]
            self.base["pool"]["members"] = members
            if "dns" in self.sources:
                self.dns = Dnsmasq(self.work, tuple(self.nets[i].ns_ip for i in range(self.n)
                                                    if self.sources[i] == "dns"))
                self.base["pool"]["dns"] = {"name": DNS_NAME, "resolver": self.dns.resolver, "interval_s": 1.0,
                                            **ports}
            self.base["node2"]["host"] = self.nets[0].ns_ip
            self.node1_config.write_text(json.dumps(self.base, indent=2))
            for i in range(self.n):
                if self.sources[i] != "registered":
                    self.restart(i)
            self.node1 = Deployment.start(self.work / "node1", role="node1", config=(self.node1_config, self.base),
                                          timeout_s=WAIT_S)
            self.client = WebClient(self.url, cafile=str(self.work / "node1" / "var" / "tls" / "node1.crt"),
                                    timeout_s=float(self.base["limits"]["request_timeout_s"]) + 30)
            for i in range(self.n):
                if self.sources[i] == "registered":
                    self.restart(i)
            self.wait(lambda nodes: sum(m["eligible"] for m in nodes["members"]) == self.n, WAIT_S,
                      f"all {self.n} members eligible")
        except BaseException:
            self.close()
            raise
        return self

    def restart(self, i: int) -> None:
        """Start member i's node 2 role in its namespace (registered ones point --register at node 1)."""
        path, cfg = self._node2_config(i)
        env = {}
        if self.sources[i] == "registered":
            env = {"VM_REGISTER_URL": f"https://{self.nets[i].host_ip}:{self.base['node1']['https_port']}",
                   "VM_REGISTER_CA": str(self.work / "node1" / "var" / "tls" / "node1.crt")}
        self.node2[i] = Deployment.start(self.work / f"node2-{i}", role="node2", config=(path, cfg),
                                         prefix=["ip", "netns", "exec", self.nets[i].ns], env=env, timeout_s=WAIT_S)

    def kill9(self, i: int) -> float:
        """SIGKILL the supervisor and every process of member i at once; returns time.monotonic() of the kill."""
        dep = self.node2[i]
        if dep is None:
            raise RuntimeError(f"member {i} is not running")
        family = [dep.proc.pid, *descendants(dep.proc.pid)]
        t = time.monotonic()
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        dep.proc.wait(10)
        self.node2[i] = None
        return t

    def nodes(self) -> dict[str, Any]:
        assert self.client is not None
        status, _, body = self.client.request("GET", "/api/nodes",
                                              headers={"Authorization": f"Bearer {self.operator_token}"})
        if status != 200:
            raise RuntimeError(f"GET /api/nodes answered {status}: {body[:300]!r}")
        doc: dict[str, Any] = json.loads(body)
        return doc

    def member(self, nodes: dict[str, Any], i: int) -> dict[str, Any] | None:
        return next((m for m in nodes["members"] if m["name"] == self.member_name(i)), None)

    def wait(self, predicate: Any, timeout_s: float, what: str, poll_s: float = 0.05) -> float:
        """Poll /api/nodes until predicate(doc); returns the seconds it took."""
        t0 = time.monotonic()
        doc: dict[str, Any] = {}
        while time.monotonic() - t0 < timeout_s:
            doc = self.nodes()
            if predicate(doc):
                return time.monotonic() - t0
            time.sleep(poll_s)
        raise TimeoutError(f"not within {timeout_s:.0f} s: {what}; /api/nodes: {json.dumps(doc)[:2000]}")

    def close(self) -> None:
        for dep in [self.node1, *self.node2]:
            if dep is not None:
                dep.stop()
        if self.dns is not None:
            self.dns.close()
        for net in self.nets:
            net.remove()

    def __enter__(self) -> PoolCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
