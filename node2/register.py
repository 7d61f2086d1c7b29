"""Node 2 announces itself to node 1's pool: `python -m node2.gateway --register URL`
(or $VM_REGISTER_URL; start_application.sh --role node2 --register URL).

POST URL/api/nodes/register with the registration token (pool.registration_token_file, else
$VM_REGISTRATION_TOKEN) and {name, host, ports, device, gpu_memory_total_mb,
max_jobs}; then POST URL/api/nodes/heartbeat every heartbeat_interval_s node 1 asked for. A 404
heartbeat (node 1 restarted, or dropped us) registers again; a refused token (401) is logged and
retried slowly (an operator must fix it); an unreachable node 1 is retried with capped backoff.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger("node2.register")

REGISTER_TIMEOUT_S = 3.0
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 5.0
REFUSED_RETRY_S = 30.0        # a wrong token will not fix itself; try again rarely
DEFAULT_MAX_JOBS = 8          # concurrent try-ons this node 2 offers (MAX_PENDING_PER_CHANNEL-ish)
REGISTER_URL_ENV = "VM_REGISTER_URL"
REGISTER_CA_ENV = "VM_REGISTER_CA"      # PEM file trusted for node 1's HTTPS (its self-signed certificate)


class Registrar:
    """Registers once, then heartbeats, on a daemon thread (see the module docstring).

    Args:
        url: node 1's base URL (https://host:port).
        token: the registration token.
        announce: returns the registration body (called at each registration: fresh GPU memory).
        cafile: PEM to trust for node 1's certificate; None: the system's CAs.
    """

    def __init__(self, url: str, token: str, announce: Callable[[], dict[str, Any]], cafile: str | None = None) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"--register {url!r}: node 1's URL must start with https:// (or http://)")
        self.url = url.rstrip("/")
        self._token = token
        self._announce = announce
        self._ctx = ssl.create_default_context(cafile=cafile) if self.url.startswith("https") else None
        if self._ctx is not None and cafile is not None:
            self._ctx.check_hostname = False   # node 1's self-signed certificate names its configured host
        self._stop = threading.Event()
        self.registered = threading.Event()
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="node2-register", daemon=True)

    def start(self) -> Registrar:
        self._thread.start()
        return self

    def _post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        # noqa below: the URL's scheme is checked in __init__ (https or http only)
        req = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(), method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self._token}"})
        try:
            with urllib.request.urlopen(req, timeout=REGISTER_TIMEOUT_S, context=self._ctx) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {}

    def _loop(self) -> None:
        wait_s, interval_s, name = 0.0, 1.0, ""
        while not self._stop.wait(wait_s):
            try:
                if not self.registered.is_set():
                    body = self._announce()
                    code, reply = self._post("/api/nodes/register", body)
                    if code == 200:
                        name, interval_s = str(reply.get("name", body["name"])), float(reply["heartbeat_interval_s"])
                        self.registered.set()
                        self.last_error, wait_s = None, interval_s
                        log.info("registered with node 1 at %s as %s (heartbeat every %.1f s)", self.url, name,
                                 interval_s)
                        continue
                    self.last_error = f"register: HTTP {code} {reply.get('error', reply)}"
                else:
                    code, reply = self._post("/api/nodes/heartbeat", {"name": name})
                    if code == 200:
                        wait_s = interval_s
                        continue
                    self.registered.clear()
                    self.last_error = f"heartbeat: HTTP {code} {reply.get('error', reply)}"
                    if code == 404:
                        wait_s = 0.0
                        log.warning("node 1 does not know us any more; registering again")
                        continue
                if code == 401:
                    log.error("node 1 refused the registration token (%s); check pool.registration_token_file",
                              self.last_error)
                    wait_s = REFUSED_RETRY_S
                else:
                    log.warning("registration with %s failed (%s)", self.url, self.last_error)
                    wait_s = min(max(wait_s * 2, RETRY_INITIAL_S), RETRY_MAX_S)
            except (OSError, ValueError, KeyError) as exc:   # URLError is an OSError
                self.registered.clear()
                self.last_error = f"{type(exc).__name__}: {exc}"
                wait_s = min(max(wait_s * 2, RETRY_INITIAL_S), RETRY_MAX_S)
                log.warning("node 1 at %s unreachable (%s); retrying in %.1f s", self.url, self.last_error, wait_s)

    def close(self) -> None:
        self._stop.set()


def node2_name(cfg: Any) -> str:
    """This node 2's name in node 1's pool: node2.name, else the host name."""
    return str(cfg["node2"].get("name") or socket.gethostname())


def registration_token(cfg: Any) -> str | None:
    return cfg.secret("pool", "registration_token_file", "VM_REGISTRATION_TOKEN")


def announcement(cfg: Any, device_info: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The registration body: name, address, ports, device and GPU memory (from the health probe)."""
    n2 = cfg["node2"]

    def body() -> dict[str, Any]:
        info = device_info()
        gpu = info.get("gpu") or {}
        return {"name": node2_name(cfg), "host": n2["host"], "gvirtus_port": n2["gvirtus_port"],
                "gvirtus_data_port": n2["gvirtus_data_port"], "gateway_port": n2["gateway_port"],
                "health_port": n2["health_port"], "device": str((info.get("gvirtus") or {}).get("device") or "unknown"),
                "gpu_memory_total_mb": gpu.get("memory_total_mb") or 0, "max_jobs": DEFAULT_MAX_JOBS}

    return body


def register_url(argv: list[str]) -> str | None:
    """`--register URL` from argv, else $VM_REGISTER_URL."""
    if "--register" in argv:
        i = argv.index("--register")
        if i + 1 >= len(argv):
            raise SystemExit("--register needs node 1's URL, e.g. --register https://node1:8443")
        return argv[i + 1]
    return os.environ.get(REGISTER_URL_ENV) or None
