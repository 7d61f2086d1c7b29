"""How node 2s join node 1's pool besides the config list: DNS and registration.

    DnsDiscovery   one name resolving to every node 2 (a Kubernetes headless Service), re-resolved every
                   `pool.dns.interval_s`: new addresses join (source "dns"), vanished ones leave. A
                   resolver that does not answer changes nothing (the members stay and are health-polled).
    Registry       POST /api/nodes/register with the registration token (node 2 --register URL): the
                   member joins (source "registered") with what it announced (device, GPU memory, max
                   jobs); POST /api/nodes/heartbeat keeps it; silent `pool.heartbeat_timeout_s` -> it
                   leaves. A wrong or missing token is refused (401), logged and counted.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from node1.tryon.errors import BadRequest, NotAuthorized
from node1.tryon.pool import MemberAddress, Pool

log = logging.getLogger("node1.tryon.discovery")

DNS_TIMEOUT_S = 2.0
DEFAULT_DNS_INTERVAL_S = 5.0
HEARTBEAT_INTERVAL_S = 1.0          # what node 1 asks registered node 2s for
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
HOST_RE = re.compile(r"[A-Za-z0-9.:_-]{1,253}")


class DnsDiscovery:
    """Keeps the pool's "dns" members equal to what `name` resolves to (A and AAAA records).

    Args:
        pool: the pool to update.
        name: the DNS name.
        resolver: "IP" or "IP#port" of the DNS server; None: the system's (/etc/resolv.conf).
        interval_s: re-resolve period.
        ports: gvirtus_port, gateway_port, health_port (and gvirtus_data_port) every member uses.
    """

    def __init__(self, pool: Pool, name: str, resolver: str | None, interval_s: float, ports: dict[str, int]) -> None:
        import dns.resolver

        self.pool, self.name, self.interval_s, self.ports = pool, name, interval_s, ports
        self._resolver = dns.resolver.Resolver(configure=resolver is None)
        if resolver is not None:
            ip, _, port = resolver.partition("#")
            self._resolver.nameservers = [ip]
            self._resolver.port = int(port or 53)
        self._resolver.lifetime = DNS_TIMEOUT_S
        self._stop = threading.Event()
        self.last_error: str | None = None
        self.resolved: list[str] = []
        self._thread = threading.Thread(target=self._loop, name="pool-dns", daemon=True)

    def start(self) -> DnsDiscovery:
        self.sync()
        self._thread.start()
        return self

    def resolve(self) -> list[str] | None:
        """The addresses `name` resolves to now; [] when it does not exist; None when the resolver fails."""
        import dns.exception
        import dns.resolver

        out: list[str] = []
        errors: list[str] = []
        for rtype in ("A", "AAAA"):
            try:
                answer = self._resolver.resolve(self.name, rtype, search=True)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:   # one type failing (e.g. AAAA REFUSED) is not fatal
                errors.append(f"{rtype}: {type(exc).__name__}: {exc}")
                continue
            out.extend(str(r) for r in answer)
        if len(errors) == 2:
            self.last_error = "; ".join(errors)
            log.warning("pool dns: cannot resolve %s (%s); members unchanged", self.name, self.last_error)
            return None
        return sorted(set(out))

    def sync(self) -> None:
        addresses = self.resolve()
        if addresses is None:
            return
        self.resolved, self.last_error = addresses, None
        wanted = {f"{self.name}-{ip}": ip for ip in addresses}
        for m in self.pool.members():
            if m.source == "dns" and m.name not in wanted:
                self.pool.remove(m.name, why=f"{self.name} no longer resolves to {m.address.host}")
        for member_name, ip in wanted.items():
            if self.pool.get(member_name) is None:
                self.pool.add(member_name, "dns", MemberAddress.from_mapping({"host": ip, **self.ports}))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - discovery must keep running
                log.exception("pool dns: sync failed")

    def close(self) -> None:
        self._stop.set()


@dataclass
class Registration:
    name: str
    address: MemberAddress
    info: dict[str, Any]


class Registry:
    """Registered members and their heartbeats (see the module docstring); thread-safe."""

    def __init__(self, pool: Pool, token: str, heartbeat_timeout_s: float) -> None:
        self.pool, self._token, self.heartbeat_timeout_s = pool, token, heartbeat_timeout_s
        self._lock = threading.Lock()
        self._last_beat: dict[str, float] = {}
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._expire_loop, name="pool-heartbeats", daemon=True)
        self._thread.start()

    def check_token(self, given: str | None, peer: str) -> None:
        """Raises NotAuthorized (counted, logged) unless `given` is the registration token."""
        if given is None or not hmac.compare_digest(given.encode(), self._token.encode()):
            self.pool.count_refused_registration()
            log.warning("pool: registration from %s refused: %s token", peer, "no" if given is None else "wrong")
            raise NotAuthorized("node registration: send 'Authorization: Bearer <registration token>' "
                                "(pool.registration_token_file on node 1)")

    def register(self, body: Any, peer: str) -> dict[str, Any]:
        reg = parse_registration(body, peer)
        self.pool.add(reg.name, "registered", reg.address, info=reg.info)
        with self._lock:
            self._last_beat[reg.name] = time.monotonic()
        return {"name": reg.name, "heartbeat_interval_s": HEARTBEAT_INTERVAL_S,
                "heartbeat_timeout_s": self.heartbeat_timeout_s}

    def heartbeat(self, name: Any) -> bool:
        """False when `name` is not registered (it should register again)."""
        with self._lock:
            if not isinstance(name, str) or name not in self._last_beat:
                return False
            self._last_beat[name] = time.monotonic()
            return True

    def expire(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            gone = [n for n, t in self._last_beat.items() if now - t > self.heartbeat_timeout_s]
            for n in gone:
                del self._last_beat[n]
                self.dropped += 1
        for n in gone:
            self.pool.remove(n, why=f"no heartbeat for {self.heartbeat_timeout_s:g} s")
        return gone

    def _expire_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.heartbeat_timeout_s / 3)):
            self.expire()

    def close(self) -> None:
        self._stop.set()


def parse_registration(body: Any, peer: str) -> Registration:
    """A registration's JSON body -> Registration. Raises BadRequest naming the field and value.

    Body: {"name", "host" (default: the peer address), "gvirtus_port", "gateway_port", "health_port",
    "gvirtus_data_port"?, "device"?, "gpu_memory_total_mb"?, "max_jobs"?}.
    """
    if not isinstance(body, dict):
        raise BadRequest(f"node registration: send a JSON object (got {type(body).__name__})")
    name, host = body.get("name"), body.get("host") or peer
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BadRequest(f"node registration: name = {name!r} is invalid; use 1-63 letters, digits, '.', '_', '-'")
    if not isinstance(host, str) or not HOST_RE.fullmatch(host):
        raise BadRequest(f"node registration: host = {host!r} is invalid; send an IP address or host name")
    ports: dict[str, int] = {}
    for key in ("gvirtus_port", "gateway_port", "health_port", "gvirtus_data_port"):
        value = body.get(key, 0 if key == "gvirtus_data_port" else None)
        low = 0 if key == "gvirtus_data_port" else 1
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 65535:
            raise BadRequest(f"node registration: {key} = {value!r} is invalid; send an integer port {low}-65535")
        ports[key] = value
    info: dict[str, Any] = {}
    device, total, jobs = body.get("device", "unknown"), body.get("gpu_memory_total_mb", 0), body.get("max_jobs", 0)
    if not isinstance(device, str) or len(device) > 128:
        raise BadRequest(f"node registration: device = {device!r} is invalid; send a short string like 'cuda:0'")
    if not isinstance(total, int | float) or isinstance(total, bool) or total < 0:
        raise BadRequest(f"node registration: gpu_memory_total_mb = {total!r} is invalid; send a number >= 0")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or not 0 <= jobs <= 4096:
        raise BadRequest(f"node registration: max_jobs = {jobs!r} is invalid; send an integer 0-4096 (0: no limit)")
    info.update(device=device, gpu_memory_total_mb=total, max_jobs=jobs)
    return Registration(name, MemberAddress.from_mapping({"host": host, **ports}), info)


@dataclass
class Discovery:
    dns: DnsDiscovery | None
    registry: Registry | None

    def close(self) -> None:
        for part in (self.dns, self.registry):
            if part is not None:
                part.close()


def start_discovery(cfg: Any, pool: Pool) -> Discovery:
    """DNS discovery when `pool.dns` is set; the registry when a registration token is configured."""
    p = cfg["pool"]
    dns_part = None
    if p["dns"]:
        d = p["dns"]
        ports = {k: int(d[k]) for k in ("gvirtus_port", "gateway_port", "health_port")}
        ports["gvirtus_data_port"] = int(d.get("gvirtus_data_port") or 0)
        interval_s = float(d.get("interval_s") or DEFAULT_DNS_INTERVAL_S)
        dns_part = DnsDiscovery(pool, d["name"], d.get("resolver"), interval_s, ports).start()
    token = cfg.secret("pool", "registration_token_file", "VM_REGISTRATION_TOKEN")
    registry = Registry(pool, token, float(p["heartbeat_timeout_s"])) if token else None
    return Discovery(dns_part, registry)
