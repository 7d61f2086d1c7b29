"""The runner over a pool of node 2s: each request on ONE member (its preprocessing through that
member's gvirtus, its try-on over that member's transport channel), retried once on another member
when the first dies or times out under it (same request id; a try-on is idempotent).

`build_pool(cfg)` is what node1.tryon.distributed.build_distributed returns when `pool` names
members, a DNS name or a registration token (node1.tryon.pool for membership and routing).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from mirror import Config
from node1.pose.errors import DeviceUnavailable
from node1.tryon.catalog import WebCatalog, open_catalog
from node1.tryon.discovery import Discovery, start_discovery
from node1.tryon.errors import Node2Unavailable, TryOnError, TryOnTimeout
from node1.tryon.interface import RESULT_JPEG_QUALITY, ProgressFn, RunnerHealth, TryOnResult
from node1.tryon.pool import Member, MemberAddress, NoMemberAvailable, Pool
from node1.tryon.runner import Dressed, Runner, RunnerCounters, load_models, loaded_models
from transport import new_request_id
from viton import contract

log = logging.getLogger("node1.tryon.pool")

FIRST_TRY_SHARE = 0.6         # the first member gets this share of the time when a retry is possible
T = TypeVar("T")
# What a member's death or stall looks like from node 1: these fail over (at most once).
MEMBER_FAILURES: tuple[type[BaseException], ...] = (Node2Unavailable, TryOnTimeout, DeviceUnavailable)


@dataclass
class MemberConn:
    """A member's node-1 side, opened once and reused: a Runner over its gvirtus device and gateway link."""

    runner: Runner
    device: Any
    link: Any

    def reset(self) -> None:
        """Drop the gvirtus session (stale once the member was down); the next request opens a new one."""
        reset = getattr(self.device, "reset", None)
        if reset is not None:
            reset()

    def close(self) -> None:
        for part in (self.device, getattr(self.link, "client", None)):
            close = getattr(part, "close", None)
            if close is not None:
                close()


class PoolRunner:
    """A TryOnRunner (node1.tryon.interface) over a Pool; also the live path (preprocess_frame, dress).

    Args:
        catalog: the garments.
        pool: the members (node1.tryon.pool.Pool).
        timeout_s: the whole try-on's limit (limits.request_timeout_s), retries included.
        needs: the preprocessing model set ("portable" for gvirtus, "cpu" for the local CPU).
        reads: the person tensors the configured engine reads (viton.contract.reads_of; one engine for all).
    """

    def __init__(self, catalog: WebCatalog, pool: Pool, timeout_s: float, counters: RunnerCounters,
                 needs: str = "portable", *, reads: tuple[str, ...] = contract.ENGINE_READS["geometric"]) -> None:
        self.catalog = catalog
        self.reads = reads
        self.pool = pool
        self.timeout_s = timeout_s
        self.counters = counters
        self.needs = needs
        self.discovery: Discovery | None = None   # DNS and registration (node1.tryon.discovery)

    def _attempts(self, what: str, call: Callable[[Member, float, bool], T], timeout_s: float) -> T:
        """call(member, time for this try, last try?) on the chosen member; on a member failure once more
        on another. Raises NoMemberAvailable (a Node2Unavailable) when none is left."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        tried: set[str] = set()
        first_error: BaseException | None = None
        for attempt in (1, 2):
            try:
                member = self.pool.choose(exclude=tried)
            except NoMemberAvailable as exc:
                if first_error is not None:
                    raise NoMemberAvailable(f"{what} failed on {', '.join(sorted(tried))} ({first_error}) and no "
                                            f"other node 2 can take it: {exc}") from first_error
                raise
            tried.add(member.name)
            left = deadline - time.monotonic()
            last = attempt == 2 or len(self.pool.members()) < 2
            budget = left if last else left * FIRST_TRY_SHARE
            with self.pool.track(member):
                try:
                    out = call(member, budget, last)
                except MEMBER_FAILURES as exc:
                    # DeviceUnavailable already counted on the breaker (the member's FallbackDevice shares it)
                    self.pool.record_failure(member, exc, eject=True, breaker=not isinstance(exc, DeviceUnavailable))
                    if attempt == 2 or deadline - time.monotonic() <= 0:
                        raise _as_tryon_error(exc, member) from exc
                    log.warning("%s failed on %s (%s: %s); retrying once on another node 2", what, member.name,
                                type(exc).__name__, exc)
                    self.pool.count_retry()
                    first_error = exc
                    continue
            self.pool.record_success(member)
            if first_error is not None:
                self.pool.record_retry(what, sorted(tried - {member.name}), member.name,
                                       (time.monotonic() - t0) * 1000.0)
            return out
        raise AssertionError("unreachable: the second attempt returns or raises")  # pragma: no cover

    def run(self, photo: np.ndarray, garment_id: str, progress: ProgressFn, *, source: bytes | None = None
            ) -> TryOnResult:
        self.catalog.get(garment_id)  # UnknownGarment before any member is chosen
        rid = new_request_id()
        sent: set[str] = set()

        def once(stage: str, ms: float) -> None:  # a retry reports its stages again: once each
            if stage not in sent:
                sent.add(stage)
                progress(stage, ms)

        def on_member(member: Member, budget: float, _last: bool) -> TryOnResult:
            conn: MemberConn = member.conn
            return conn.runner.run(photo, garment_id, once, timeout_s=budget, request_id=rid, source=source)

        return self._attempts(f"try-on {rid}", on_member, self.timeout_s)

    def preprocess_frame(self, fn: Callable[..., T], frame: np.ndarray) -> T:
        """The live path's per-frame preprocessing on a chosen member (Runner.preprocess_frame)."""
        return self._attempts("frame preprocessing",
                              lambda m, _b, _l: m.conn.runner.preprocess_frame(fn, frame), self.timeout_s)

    def dress(self, pre: Any, garment: Any, timeout_s: float) -> Dressed:
        """The live path's node-2 leg on a chosen member (Runner.dress)."""
        rid = new_request_id()
        return self._attempts("frame try-on", lambda m, b, _l: m.conn.runner.dress(pre, garment, b, request_id=rid),
                              timeout_s)

    def health(self) -> RunnerHealth:
        members = self.pool.snapshot()
        up = [m for m in members if m["eligible"]]
        models = loaded_models()
        loaded = sorted({m for names in models.values() for m in names})
        gpu = next((m["gpu"] for m in up if m["gpu"] and m["gpu"].get("memory_total_mb")), None)
        return RunnerHealth(models_loaded=loaded, transport="tcp" if up else "none", node2_reachable=bool(up),
                            gpu=gpu, details={"pool": members, "models": models, "pool_retries": self.pool.retries},
                            node2_status="ok" if up else None, models_ready=bool(models[self.needs]))

    def close(self) -> None:
        if self.discovery is not None:
            self.discovery.close()
        self.pool.close()


def _as_tryon_error(exc: BaseException, member: Member) -> TryOnError:
    if isinstance(exc, TryOnError):
        return exc
    return Node2Unavailable(f"node 2 {member.name!r} could not serve the preprocessing: {exc}")


def member_config(cfg: Config, address: MemberAddress) -> Config:
    """`cfg` with its node2 section pointing at `address` (what gvirtus and the transport read)."""
    data = cfg.as_dict()
    data["node2"] = {**copy.deepcopy(data["node2"]), **address.as_node2()}
    return Config(data, f"{cfg.source} (pool member {address.host}:{address.gateway_port})", cfg.root)


def pool_configured(cfg: Config) -> bool:
    """Whether node 1 runs a pool: `pool` lists members, names a DNS name, or registration is on."""
    p = cfg["pool"]
    return bool(p["members"] or p["dns"] or registration_token(cfg))


def registration_token(cfg: Config) -> str | None:
    return cfg.secret("pool", "registration_token_file", "VM_REGISTRATION_TOKEN")


def build_pool(cfg: Config) -> tuple[PoolRunner, WebCatalog]:
    """node1.web's runner over the pool (see the module docstring)."""
    from node1.tryon.fallback import FallbackDevice, remote_connector
    from node1.tryon.node2_client import GatewayLink, TryOnClient

    catalog = open_catalog(cfg)
    remote = cfg["node1"]["preprocess_device"] == "remote"
    needs = "portable" if remote else "cpu"
    t0 = time.monotonic()
    load_models(cpu_fast=not remote)
    log.info("preprocessing models (%s) loaded in %.1f s", needs, time.monotonic() - t0)
    timeout_s = float(cfg["limits"]["request_timeout_s"])
    pre_lock, counters = threading.Lock(), RunnerCounters()

    def build_conn(member: Member) -> MemberConn:
        mcfg = member_config(cfg, member.address)
        client = TryOnClient.from_config(mcfg)
        device: Any = FallbackDevice(remote_connector(mcfg), local=None, breaker=member.breaker) if remote else "cpu"
        link = GatewayLink(client)
        runner = Runner(catalog, device, link, client.reads, timeout_s=timeout_s, health_fn=None,
                        pre_lock=pre_lock, counters=counters, result_jpeg_quality=RESULT_JPEG_QUALITY)
        return MemberConn(runner, device, link)

    pool = Pool(build_conn, health_interval_s=float(cfg["pool"]["health_interval_s"]))
    for m in cfg["pool"]["members"]:
        pool.add(m["name"], "config", MemberAddress.from_mapping(m))
    runner = PoolRunner(catalog, pool, timeout_s, counters, needs, reads=contract.reads_of(cfg["viton"]["engine"]))
    runner.discovery = start_discovery(cfg, pool)
    return runner, catalog
