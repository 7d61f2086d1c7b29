"""Faults during load: kill -9 node-2 processes, then delay / loss / cuts on the node 1 <-> node 2 links.

    .venv/bin/python bench/fault_bench.py [--shoppers 4] [--phase-s 20] [--json] [--no-netns] [--skip-kills]

Part A (LOCAL deployment, start_application.sh): N shoppers keep trying on (bench/load_bench.py's
client); the VITON service, the gateway and the gvirtus backend are killed with SIGKILL in turn.
Per fault: requests that failed and how (by error code), the slowest failure (fail-fast), the
time from the kill until the supervisor's restarted child said READY, and the recovery time:
kill -> first successful try-on that started after the kill (for gvirtus: first try-on served on
the local CPU fallback, and first one back on the remote device).

Part B (DISTRIBUTED roles, two supervisors): node 2's role (gvirtus, VITON, gateway) runs in its
own network namespace behind a veth pair when this runs as root (else on loopback), node 1's role
(the web app) in the root namespace, and testing.faultproxy sits on both links (gateway TCP and
gvirtus gRPC). Phases of --phase-s seconds each under load: none, delay 50 ms +-10 ms, loss 5 %
(a chunk stalls one 200 ms RTO), bandwidth 20 MB/s, a 8 s cut then restore, and a reset of every
connection. Per phase: ok / errors by code / lost (no HTTP response), p50 / p95 / p99 over all
requests of the phase (numpy.percentile; failures included, ok_* and failed_* beside), and for the
cut and the reset the recovery time. The baseline is phase "none" in the same run.
`--json` keys: kills (per component), links (per phase), lost_total (no response),
contract_broken_total, machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load_bench import (  # noqa: E402
    CONTRACT,
    NO_RESPONSE,
    Outcomes,
    garment_ids,
    latency_summary,
    run_load,
    warm_up,
)
from testing.faultproxy import FaultProxy  # noqa: E402
from tests.faults.deployment import Deployment, astronaut_jpeg, free_ports, write_config  # noqa: E402

SETTLE_S = 10.0                 # after a restarted child is READY, before the next fault
READY_WAIT_S = 180.0
CUT_S = 8.0
IN_FLIGHT_S = 5.0               # a fault's window starts this long before it (requests then in flight)
SERVER_REQUEST_TIMEOUT_S = 60
LINK_PHASES: list[tuple[str, dict[str, Any]]] = [
    ("none", {}), ("delay 50+-10 ms", {"delay_s": 0.05, "jitter_s": 0.01}),
    ("loss 5 % (RTO 200 ms)", {"loss": 0.05}), ("bandwidth 20 MB/s", {"bandwidth_bps": 20e6}),
    ("cut 8 s", {"cut": CUT_S}), ("reset all connections", {"reset": True}),
]


class LoadInBackground:
    """Shoppers running for the whole part; faults are read off their event log."""

    def __init__(self, dep: Deployment, shoppers: int, seconds: float, photo: bytes, garments: list[str]) -> None:
        self.out = Outcomes()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_load, daemon=True,
                                       args=(dep, shoppers, seconds, photo, garments, self.out, self.stop))
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(120)

    def window(self, t0: float, t1: float) -> list[tuple[float, str, float, str]]:
        """Requests that STARTED in [t0, t1)."""
        with self.out.lock:
            return [e for e in self.out.events if t0 <= e[0] - e[2] / 1000 < t1]

    def first_ok_after(self, t0: float, device_prefix: str = "", timeout_s: float = READY_WAIT_S,
                       started_after: bool = True) -> float | None:
        """Seconds from t0 until a successful try-on (on a device starting with device_prefix) that
        started after t0 (or, with started_after=False, merely finished after it) completed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.out.lock:
                for t, kind, ms, device in self.out.events:
                    begun = t - ms / 1000 if started_after else t
                    if begun >= t0 and kind == "ok" and device.startswith(device_prefix):
                        return round(t - t0, 1)
            time.sleep(0.2)
        return None


def summarize(events: list[tuple[float, str, float, str]]) -> dict[str, Any]:
    """Outcomes of a window's requests: counts by code, lost (no response), and latency percentiles
    (numpy.percentile) over ALL of them, with the successful and failed ones beside."""
    ok = [ms for _, k, ms, _ in events if k == "ok"]
    failed = [ms for _, k, ms, _ in events if k != "ok"]
    errors: dict[str, int] = {}
    for _, k, _ms, _ in events:
        if k != "ok":
            errors[k] = errors.get(k, 0) + 1
    local = sum(1 for _, k, _ms, dev in events if k == "ok" and dev.endswith("(local fallback)"))
    return {"requests": len(events), "ok": len(ok), "served_on_local_fallback": local,
            "errors_by_code": dict(sorted(errors.items())), "errors_by_kind": dict(sorted(errors.items())),
            "lost": sum(n for k, n in errors.items() if k.startswith(NO_RESPONSE)),
            "contract_broken": sum(n for k, n in errors.items() if k.startswith(CONTRACT)),
            **latency_summary([ms for _, _k, ms, _ in events], ok, failed),
            "slowest_failure_ms": round(max(failed), 1) if failed else None}


def part_a(tmp: Path, shoppers: int, photo: bytes) -> dict[str, Any]:
    dep = Deployment.start(tmp / "local", limits={"request_timeout_s": SERVER_REQUEST_TIMEOUT_S})
    try:
        garments = garment_ids(dep, photo)
        warm_up(dep, photo, garments)
        start_stats = dep.process_stats()
        load = LoadInBackground(dep, shoppers, 3 * 150.0, photo, garments)
        time.sleep(10)
        kills: dict[str, Any] = {}
        for comp in ("viton.service", "node2.gateway", "gvirtus.backend"):
            mark, t_kill = dep.mark(), time.monotonic()
            dep.kill_child(comp)
            ready_s = dep.wait_ready_after(comp, mark, READY_WAIT_S)
            row: dict[str, Any] = {"restart_ready_s": round(ready_s, 1)}
            if comp == "gvirtus.backend":
                row["first_ok_local_fallback_s"] = load.first_ok_after(t_kill, "cpu", timeout_s=60,
                                                                       started_after=False)
                row["back_on_remote_s"] = load.first_ok_after(t_kill, "gvirtus:")
                row["recovery_s"] = row["back_on_remote_s"]
            else:
                row["recovery_s"] = load.first_ok_after(t_kill)
            time.sleep(SETTLE_S)
            row.update(summarize(load.window(t_kill - IN_FLIGHT_S, time.monotonic())))
            kills[comp] = row
            print(f"  kill -9 {comp}: {row}", file=sys.stderr, flush=True)
        end_stats = dep.process_stats()
        load.finish()
    finally:
        dep.stop()
    survivors = {n: {"rss_mb": [start_stats[n]["rss_mb"], end_stats[n]["rss_mb"]],
                     "fds": [start_stats[n]["fds"], end_stats[n]["fds"]]}
                 for n in start_stats if n in end_stats and start_stats[n]["pid"] == end_stats[n]["pid"]}
    return {"kills": kills, "lost": load.out.lost, "contract_broken": load.out.contract_broken,
            "requests": load.out.requests, "surviving_processes": survivors}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def make_netns() -> dict[str, str] | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return None
    n = os.getpid() % 200 + 20
    net = {"ns": f"vmfault{os.getpid()}", "host_if": f"vfh{os.getpid()}"[:15], "ns_if": f"vfn{os.getpid()}"[:15],
           "host_ip": f"10.214.{n}.1", "ns_ip": f"10.214.{n}.2"}
    try:
        _ip("netns", "add", net["ns"])
        _ip("link", "add", net["host_if"], "type", "veth", "peer", "name", net["ns_if"])
        _ip("link", "set", net["ns_if"], "netns", net["ns"])
        _ip("addr", "add", f"{net['host_ip']}/24", "dev", net["host_if"])
        _ip("link", "set", net["host_if"], "up")
        for cmd in (["addr", "add", f"{net['ns_ip']}/24", "dev", net["ns_if"]], ["link", "set", net["ns_if"], "up"],
                    ["link", "set", "lo", "up"]):
            _ip("netns", "exec", net["ns"], "ip", *cmd)
    except subprocess.CalledProcessError as exc:
        remove_netns(net)
        print(f"  no network namespace ({exc.stderr.decode().strip()}); node 2 stays on loopback", file=sys.stderr)
        return None
    return net


def remove_netns(net: dict[str, str]) -> None:
    subprocess.run(["ip", "netns", "del", net["ns"]], capture_output=True, timeout=10)
    subprocess.run(["ip", "link", "del", net["host_if"]], capture_output=True, timeout=10)


def part_b(tmp: Path, shoppers: int, phase_s: float, photo: bytes, use_netns: bool) -> dict[str, Any]:
    net = make_netns() if use_netns else None
    n2_host = net["ns_ip"] if net else "127.0.0.1"
    cfg2_path, cfg2 = write_config(tmp / "node2", {"DEPLOYMENT": "DISTRIBUTED",
                                                   "limits": {"request_timeout_s": SERVER_REQUEST_TIMEOUT_S}})
    cfg2["node2"]["host"] = n2_host
    cfg2_path.write_text(json.dumps(cfg2, indent=2))
    proxies = [FaultProxy((n2_host, int(cfg2["node2"][k])), seed=i, name=f"proxy {k}").start()
               for i, k in enumerate(("gateway_port", "gvirtus_port"))]
    cfg1 = json.loads(json.dumps(cfg2))
    cfg1["node2"].update(host="127.0.0.1", gateway_port=proxies[0].port, gvirtus_port=proxies[1].port)
    cfg1["node1"]["https_port"] = free_ports(1)[0]
    cfg1["paths"]["var_dir"] = str(tmp / "node1" / "var")
    (tmp / "node1").mkdir(parents=True, exist_ok=True)
    cfg1_path = tmp / "node1" / "env_config.json"
    cfg1_path.write_text(json.dumps(cfg1, indent=2))
    node2 = node1 = None
    phases: dict[str, Any] = {}
    try:
        node2 = Deployment.start(tmp / "node2", role="node2", config=(cfg2_path, cfg2),
                                 prefix=["ip", "netns", "exec", net["ns"]] if net else None)
        node1 = Deployment.start(tmp / "node1", role="node1", config=(cfg1_path, cfg1))
        garments = garment_ids(node1, photo)
        warm_up(node1, photo, garments)
        load = LoadInBackground(node1, shoppers, phase_s * len(LINK_PHASES) + 120, photo, garments)
        for name, faults in LINK_PHASES:
            t0 = time.monotonic()
            row: dict[str, Any] = {}
            if "cut" in faults:
                for p in proxies:
                    p.cut()
                time.sleep(faults["cut"])
                t_restore = time.monotonic()
                for p in proxies:
                    p.restore()
                rec = load.first_ok_after(t_restore)
                row["recovery_after_restore_s"] = rec
            elif "reset" in faults:
                for p in proxies:
                    row["connections_reset"] = row.get("connections_reset", 0) + p.reset_connections()
                row["recovery_s"] = load.first_ok_after(t0)
            else:
                for p in proxies:
                    p.clear()
                    p.set(**faults)
            time.sleep(max(0.0, phase_s - (time.monotonic() - t0)))
            for p in proxies:
                p.clear()
            row.update(summarize(load.window(t0, time.monotonic())))
            phases[name] = row
            print(f"  link {name}: {row}", file=sys.stderr, flush=True)
        load.finish()
        lost, broken = load.out.lost, load.out.contract_broken
    finally:
        for d in (node1, node2):
            if d is not None:
                d.stop()
        for p in proxies:
            p.close()
        if net:
            remove_netns(net)
    return {"links": phases, "lost": lost, "contract_broken": broken, "node2_in_netns": bool(net),
            "proxy_bytes": [p.stats().bytes_up + p.stats().bytes_down for p in proxies]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shoppers", type=int, default=4)
    ap.add_argument("--phase-s", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-netns", action="store_true")
    ap.add_argument("--skip-kills", action="store_true")
    ap.add_argument("--skip-links", action="store_true")
    args = ap.parse_args(argv)
    photo = astronaut_jpeg()
    result: dict[str, Any] = {"shoppers": args.shoppers, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="vm-fault-") as tmp:
        if not args.skip_kills:
            result.update(part_a(Path(tmp), args.shoppers, photo))
        if not args.skip_links:
            b = part_b(Path(tmp), args.shoppers, args.phase_s, photo, not args.no_netns)
            result.update(links=b["links"], links_lost=b["lost"], links_contract_broken=b["contract_broken"],
                          node2_in_netns=b["node2_in_netns"])
    result["lost_total"] = result.get("lost", 0) + result.get("links_lost", 0)
    result["contract_broken_total"] = result.get("contract_broken", 0) + result.get("links_contract_broken", 0)
    held = result["lost_total"] == 0 and result["contract_broken_total"] == 0
    result["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(result))
        return 0 if held else 1
    print(f"faults under load: {args.shoppers} shoppers, {os.cpu_count()} CPUs, load avg {result['loadavg_1m_end']}")
    for comp, row in result.get("kills", {}).items():
        print(f"kill -9 {comp:<16} ready after {row['restart_ready_s']} s, recovered after {row['recovery_s']} s; "
              f"{row['ok']}/{row['requests']} ok, p50/p95/p99 {row['p50_ms']}/{row['p95_ms']}/{row['p99_ms']} ms "
              f"(all requests), errors {row['errors_by_code']}, lost {row['lost']}, slowest failure "
              f"{row['slowest_failure_ms']} ms")
    base = result.get("links", {}).get("none", {}).get("p50_ms")
    for name, row in result.get("links", {}).items():
        ratio = f"{row['p50_ms'] / base:.2f}x" if base and row.get("p50_ms") else "-"
        extra = {k: v for k, v in row.items() if k.startswith(("recovery", "connections"))}
        print(f"link {name:<24} p50 {row['p50_ms']} ms ({ratio} of none), p95 {row['p95_ms']} ms, p99 "
              f"{row['p99_ms']} ms (all requests), {row['ok']}/{row['requests']} ok, errors {row['errors_by_code']}, "
              f"lost {row['lost']} {extra}")
    print(f"lost requests (no response): {result['lost_total']}; contract broken: {result['contract_broken_total']}")
    return 0 if held else 1


if __name__ == "__main__":
    raise SystemExit(main())
