"""The heartbeat endpoint under load: ``GET /ping/<key>`` driven by wrk.

The daemon runs with ``--targets`` heartbeat targets (one key each, evaluated every 30 s),
pinned to CPU 0; wrk (plain GET, kept-alive connections, no Lua) runs pinned to CPU 1 and
hammers one target's ping URL at each connection count in turn, after a short warm-up.
For each run it prints pings/s, latency percentiles (wrk ``--latency``), non-2xx answers
and the daemon's CPU, then PASS or MISS against the bar: at least 5,000 pings/s with p99
under 20 ms, the daemon on one core.  Needs ``wrk`` (Debian package ``wrk``).

``--baseline`` also drives a bare aiohttp app (one handler answering ``OK``, same CPU):
the framework's ceiling on this machine, to tell pudimd's cost from the machine's.

    python bench/bench_heartbeat.py [--connections 10,25,50] [--duration 10] [--targets 100]
        [--baseline]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DaemonProc,
    cpu_pin_cmd,
    cpu_window,
    free_port,
    http_get,
    install_signal_cleanup,
    temp_dir,
    wait_port,
    write_config,
)

BAR_RATE = 5000.0
BAR_P99_MS = 20.0
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_BARE_APP = """
import sys
from aiohttp import web
async def ping(request): return web.Response(text="OK\\n")
app = web.Application()
app.router.add_get("/ping/{key}", ping)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


@dataclass
class Run:
    connections: int
    rate: float
    requests: int
    percentiles: dict[str, float]
    non_2xx: int
    socket_errors: str
    cpu_pct: float

    @property
    def p99(self) -> float:
        return self.percentiles.get("99%", float("nan"))

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per ping: unlike pings/s, not lowered by other load."""
        return 1e4 * self.cpu_pct / self.rate if self.rate else float("nan")

    @property
    def passed(self) -> bool:
        return self.rate >= BAR_RATE and self.p99 < BAR_P99_MS and self.non_2xx == 0


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise SystemExit(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests/s, total requests, latency percentiles (ms), non-2xx and socket errors."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rate is None or total is None:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    percentiles = {p: _ms(v) for p, v in re.findall(r"^\s+(\d+%)\s+([\d.]+\w+)\s*$", out, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:\s*(.*)$", out, re.M)
    return {
        "rate": float(rate.group(1)),
        "requests": int(total.group(1)),
        "percentiles": percentiles,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def wrk(url: str, connections: int, seconds: float) -> dict[str, Any]:
    cmd = [*cpu_pin_cmd(1), "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency",
           "--timeout", "5s", url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
    return parse_wrk(proc.stdout)


def baseline(counts: list[int], seconds: float) -> list[Run]:
    """wrk against a bare aiohttp app on CPU 0."""
    port = free_port()
    cmd = [*cpu_pin_cmd(0), sys.executable, "-c", _BARE_APP, str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    try:
        wait_port(port, proc)
        url = f"http://127.0.0.1:{port}/ping/x"
        wrk(url, max(counts), 2)
        runs = []
        for n in counts:
            time.sleep(1)
            wall0, cpu0 = time.monotonic(), sum(ps.cpu_times()[:2])
            out = wrk(url, n, seconds)
            cpu = 100 * (sum(ps.cpu_times()[:2]) - cpu0) / (time.monotonic() - wall0)
            runs.append(Run(connections=n, cpu_pct=cpu, **out))
        return runs
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="10,25,50",
                        help="comma-separated connection counts (default 10,25,50)")  # fmt: skip
    parser.add_argument("--duration", type=float, default=10, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--targets", type=int, default=100, help="heartbeat targets (keys)")
    parser.add_argument("--baseline", action="store_true", help="also measure bare aiohttp")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",") if c.strip()]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install it (Debian: apt-get install wrk)")
    install_signal_cleanup()
    if len(os.sched_getaffinity(0)) > 1:  # the bench stays off the daemon's CPU
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})
    started = time.monotonic()
    keys = [secrets.token_hex(16) for _ in range(args.targets)]
    runs: list[Run] = []
    with temp_dir("pudimd-bench-heartbeat-") as tmp:
        port = free_port()
        cfg = tmp / "pudimd.yaml"
        targets = [
            {"name": f"job{i}", "probe": "heartbeat", "target": f"job {i}",
             "heartbeat": {"key": key, "period": "1h"}}
            for i, key in enumerate(keys)
        ]  # fmt: skip
        write_config(cfg, targets, defaults={"interval": "30s"}, logging={"level": "warning"})
        with DaemonProc(cfg, tmp / "state", port=port, cpu=0) as daemon:
            ready = daemon.wait_ready()
            url = f"{daemon.base}/ping/{keys[0]}"
            status, _ = http_get(url)
            unknown, _ = http_get(f"{daemon.base}/ping/{secrets.token_hex(16)}")
            if (status, unknown) != (200, 404):
                raise SystemExit(f"ping answered {status}, unknown key {unknown}: not serving")
            print(f"ready after {ready:.1f} s; warming up {args.warmup:g} s", flush=True)
            wrk(url, max(counts), args.warmup)
            for n in counts:
                time.sleep(1)
                with cpu_window(daemon) as cpu:
                    out = wrk(url, n, args.duration)
                runs.append(Run(connections=n, cpu_pct=cpu["cpu_pct"], **out))
                print(f"  {n} connections: {out['rate']:,.0f} pings/s", flush=True)
            rss = daemon.rss_mb()
    bare = baseline(counts, args.duration) if args.baseline else []

    pinned = "daemon on CPU 0, wrk on CPU 1" if cpu_pin_cmd(0) else "not pinned (one CPU)"
    print()
    print(f"== pudimd heartbeat: GET /ping/<key>, {args.targets} keys, {pinned}, "
          f"{args.duration:g} s per run")  # fmt: skip
    print(f"{'conns':>6} {'pings/s':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
          f"{'non-2xx':>8} {'CPU %':>6} {'CPU us/ping':>11}  bar")  # fmt: skip
    for r, what in [(r, "PASS" if r.passed else "MISS") for r in runs] + [
        (r, "(bare aiohttp baseline)") for r in bare
    ]:
        p = r.percentiles
        print(f"{r.connections:>6} {r.rate:>9,.0f} {p.get('50%', float('nan')):>7.2f} "
              f"{p.get('90%', float('nan')):>7.2f} {r.p99:>7.2f} {r.non_2xx:>8} "
              f"{r.cpu_pct:>6.0f} {r.cpu_us:>11.0f}  {what}"
              + (f" (socket errors: {r.socket_errors})" if r.socket_errors else ""))  # fmt: skip
    cpu_us = min(r.cpu_us for r in runs)
    print(f"daemon CPU per ping: {cpu_us:.0f} us at best, i.e. ~{1e6 / cpu_us:,.0f} pings/s "
          f"if it had its core to itself; RSS after the runs {rss:.1f} MB")  # fmt: skip
    best = [r for r in runs if r.passed]
    verdict = (
        f"PASS (at {', '.join(str(r.connections) for r in best)} connections)" if best else "MISS"
    )
    print(f"bar: >= 5,000 pings/s with p99 < 20 ms -> {verdict}")
    print(f"(bench took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
