"""pudimd's alerting engine against the real Alertmanager, in the same run, fed the same
``alertmanager.yml`` (group_by [alertname], group_wait 0s, group_interval 1s, one webhook
receiver with send_resolved) and notifying the same local webhook collector.

For each system in turn (Alertmanager 0.25 from Debian's ``prometheus-alertmanager``, then
``python -m pudimd run`` with ``alertmanager_config_file:`` naming that file), started fresh,
pinned to CPU 0 (the driver and the collector share CPU 1):

1. Ingest: ``--alerts`` distinct alerts over ``--names`` alertnames, POSTed to
   ``/api/v2/alerts`` in batches of ``--batch`` by ``--concurrency`` clients: alerts/s
   accepted (every answer 200), the median of ``--rounds`` rounds, each on a freshly
   started instance (a round lasts about a second, and whether a group_interval flush of
   every group falls inside it moves a round's figure by a third).  pudimd answers after
   the batch is in its database, so its figure is alerts accepted *and persisted*;
   Alertmanager keeps alerts in memory only.
   Then ``GET /api/v2/alerts`` must list them all, and the collector must receive every one.
2. Holding them: RSS, and CPU over ``--idle`` seconds with nothing posted or changed.
3. Latency: ``--latency`` single alerts, each with a new alertname (so it opens a new
   group), posted one at a time: time from just before the POST to the collector's receipt
   of the webhook carrying it; p50, p99, max.
4. Every payload received must be valid webhook format version 4 (``_collector.py``).

Bars (issue #5): ingest >= 0.5x Alertmanager's; latency p99 < 100 ms and no worse than
Alertmanager's; idle CPU <= half of Alertmanager's; RSS <= 1.5x Alertmanager's; every alert
delivered, every payload valid.

    python bench/bench_alerting.py [--alerts 20000] [--names 20] [--batch 100]
        [--concurrency 4] [--latency 300] [--idle 30] [--rounds 3]
        [--only pudimd|alertmanager] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    CPUS,
    DaemonProc,
    cpu_pin_cmd,
    free_port,
    http_get,
    http_post,
    install_signal_cleanup,
    temp_dir,
    wait_port,
)

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
HERE = Path(__file__).resolve().parent
BAR_INGEST = 0.5
BAR_LATENCY_P99 = 0.100
BAR_IDLE = 0.5
BAR_RSS = 1.5

AM_CONFIG = """\
route:
  receiver: collector
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: collector
    webhook_configs:
      - url: http://127.0.0.1:{port}/hook
        send_resolved: true
"""


@dataclass
class Result:
    system: str
    ingest_per_s: float = 0.0
    ingest_rounds: list[float] = field(default_factory=list)
    ingest_errors: int = 0
    listed: int = 0
    delivered: int = 0
    delivered_after: float = 0.0
    rss_mb: float = 0.0
    rss_start_mb: float = 0.0
    idle_cpu_pct: float = 0.0
    latencies: list[float] = field(default_factory=list)
    post_seconds: list[float] = field(default_factory=list)
    lost: int = 0
    payloads: int = 0
    invalid: list[str] = field(default_factory=list)
    invalid_count: int = 0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the systems under test ------------------------------------------------------------------


class Alertmanager:
    """The real Alertmanager, clustering off, state in ``tmp``."""

    name = "alertmanager"

    def __init__(self, config: Path, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = (tmp / "alertmanager.log").open("wb")
        cmd = [
            *cpu_pin_cmd(0),
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        self.ps = psutil.Process(self.proc.pid)
        wait_port(self.port, self.proc)  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while http_get(f"{self.base}/-/ready")[0] != 200:
            if time.monotonic() > deadline:
                raise SystemExit("alertmanager not ready after 30 s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Pudimd:
    """``pudimd run`` with the same alertmanager.yml, no targets."""

    name = "pudimd"

    def __init__(self, am_config: Path, tmp: Path) -> None:
        config = tmp / "pudimd.yaml"
        config.write_text(
            f"alertmanager_config_file: {am_config}\n"
            "logging: {format: json, level: warning}\n"
            "targets: []\n",
            encoding="utf-8",
        )
        self.daemon = DaemonProc(config, tmp / "pudimd-state", cpu=0)
        self.daemon.wait_ready()
        self.base = self.daemon.base
        self.ps = self.daemon.ps

    def stop(self) -> None:
        self.daemon.stop()


# -- the driver ------------------------------------------------------------------------------


def alert(name: str, ident: str, ends: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "id": ident, "instance": f"host-{ident}:9100",
                   "job": "node", "severity": "warning"},
        "annotations": {"summary": f"{name} on host-{ident}"},
        "endsAt": ends,
        "generatorURL": "http://prometheus.example/graph",
    }  # fmt: skip


def batches(total: int, names: int, size: int) -> list[bytes]:
    ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    alerts = [alert(f"Bench{i % names}", str(i), ends) for i in range(total)]
    return [json.dumps(alerts[i : i + size]).encode() for i in range(0, total, size)]


async def ingest(base: str, bodies: list[bytes], concurrency: int) -> tuple[float, int]:
    """POST every body; returns (seconds, non-200 answers)."""
    queue = list(reversed(bodies))
    errors = 0
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while queue:
                body = queue.pop()
                async with session.post(f"{base}/api/v2/alerts", data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0, errors


async def latency(
    base: str, collector: str, count: int, result: Result, *, seed: int = 5
) -> None:
    rng = random.Random(seed)
    ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            name = f"Latency{i}"
            body = json.dumps([alert(name, f"lat{i}", ends)]).encode()
            t0 = time.monotonic()
            async with session.post(f"{base}/api/v2/alerts", data=body, headers=headers) as r:
                await r.read()
                status = r.status
            result.post_seconds.append(time.monotonic() - t0)
            if status != 200:
                result.ingest_errors += 1
                continue
            query = {"name": name, "timeout": "10"}
            async with session.get(f"{collector}/wait", params=query) as w:
                if w.status != 200:
                    result.lost += 1
                    continue
                result.latencies.append(float((await w.json())["at"]) - t0)
            await asyncio.sleep(rng.uniform(0.005, 0.03))


async def collector_stats(collector: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{collector}/stats") as r:
        stats: dict[str, Any] = await r.json()
        return stats


async def count_listed(base: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/api/v2/alerts") as r:
        return len(await r.json())


def delivered(stats: dict[str, Any], names: int) -> int:
    return sum(len(stats["firing"].get(f"Bench{i}", [])) for i in range(names))


async def ingest_only(system: Any, args: argparse.Namespace) -> float:
    """One more ingest round on a fresh instance: alerts/s."""
    bodies = batches(args.alerts, args.names, args.batch)
    seconds, errors = await ingest(system.base, bodies, args.concurrency)
    if errors:
        raise SystemExit(f"{system.name} refused {errors} batches")
    return args.alerts / seconds


async def run_one(
    system: Any, collector: str, args: argparse.Namespace, result: Result
) -> Result:
    bodies = batches(args.alerts, args.names, args.batch)
    result.rss_start_mb = system.ps.memory_info().rss / 1e6
    spy = None
    if args.profile and system.name == "pudimd":
        spy = subprocess.Popen(  # noqa: ASYNC220 (starting it does not wait)
            ["py-spy", "record", "-p", str(system.ps.pid), "-r", "1000", "--format", "raw",
             "-o", args.profile, "--nonblocking"], stdout=subprocess.DEVNULL
        )  # fmt: skip
        await asyncio.sleep(1)
    seconds, result.ingest_errors = await ingest(system.base, bodies, args.concurrency)
    if spy is not None:
        spy.send_signal(2)
        spy.wait(30)
    result.ingest_rounds.append(args.alerts / seconds)
    result.listed = await count_listed(system.base)
    t0 = time.monotonic()
    while True:
        stats = await collector_stats(collector)
        result.delivered = delivered(stats, args.names)
        if result.delivered >= args.alerts or time.monotonic() - t0 > 60:
            break
        await asyncio.sleep(0.2)
    result.delivered_after = time.monotonic() - t0
    await asyncio.sleep(args.settle)
    cpu0, wall0 = _cpu(system.ps), time.monotonic()
    await asyncio.sleep(args.idle)
    result.idle_cpu_pct = 100 * (_cpu(system.ps) - cpu0) / (time.monotonic() - wall0)
    result.rss_mb = system.ps.memory_info().rss / 1e6
    await latency(system.base, collector, args.latency, result)
    await asyncio.sleep(1.5)  # a last group_interval for stragglers
    stats = await collector_stats(collector)
    result.payloads = stats["payloads"]
    result.invalid = stats["invalid"]
    result.invalid_count = stats["invalid_count"]
    result.delivered = delivered(stats, args.names)
    return result


def _cpu(ps: psutil.Process) -> float:
    times = ps.cpu_times()
    return float(times.user + times.system)


# -- report ----------------------------------------------------------------------------------


def report(results: dict[str, Result], args: argparse.Namespace) -> bool:
    ms = 1000.0
    print(f"{'':14}{'ingest/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'POST p50':>10}"
          f"{'idle CPU':>10}{'RSS MB':>8}{'delivered':>11}{'invalid':>9}")  # fmt: skip
    for r in results.values():
        post = statistics.median(r.post_seconds) * ms if r.post_seconds else float("nan")
        print(
            f"{r.system:14}{r.ingest_per_s:>10,.0f}{r.quantile(0.5) * ms:>9.2f}"
            f"{r.quantile(0.99) * ms:>9.2f}{max(r.latencies, default=0) * ms:>9.2f}"
            f"{post:>10.2f}{r.idle_cpu_pct:>9.1f}%{r.rss_mb:>8.0f}"
            f"{r.delivered:>6}/{args.alerts:<5}{r.invalid_count:>8}"
        )
        if r.ingest_errors or r.lost or r.listed != args.alerts:
            print(f"  {r.system}: {r.ingest_errors} refused posts, {r.lost} latency alerts not "
                  f"received, {r.listed} alerts listed")  # fmt: skip
        rounds = ", ".join(f"{x:,.0f}" for x in r.ingest_rounds)
        print(f"  {r.system}: ingest rounds {rounds} alerts/s (median above)")
        for reason in r.invalid[:5]:
            print(f"  {r.system}: invalid payload: {reason}")
        print(f"  {r.system}: all {args.alerts} delivered {r.delivered_after:.1f} s after the "
              f"ingest; {r.payloads} payloads received; RSS {r.rss_start_mb:.0f} MB before "
              "the ingest")  # fmt: skip
    ok = True
    mine = results.get("pudimd")
    if mine is None:
        return True
    checks: list[tuple[str, bool]] = [
        ("every alert delivered, every latency alert received",
         mine.delivered == args.alerts and mine.lost == 0 and mine.listed == args.alerts),
        ("every payload valid version 4", mine.invalid_count == 0 and mine.payloads > 0),
        (f"latency p99 {mine.quantile(0.99) * ms:.1f} ms < {BAR_LATENCY_P99 * ms:.0f} ms",
         mine.quantile(0.99) < BAR_LATENCY_P99),
    ]  # fmt: skip
    am = results.get("alertmanager")
    if am is not None:
        checks += [
            (f"ingest {mine.ingest_per_s / am.ingest_per_s:.2f}x Alertmanager's (bar "
             f"{BAR_INGEST}x)", mine.ingest_per_s >= BAR_INGEST * am.ingest_per_s),
            (f"latency p99 {mine.quantile(0.99) * ms:.1f} ms vs Alertmanager's "
             f"{am.quantile(0.99) * ms:.1f} ms", mine.quantile(0.99) <= am.quantile(0.99)),
            (f"idle CPU {mine.idle_cpu_pct:.1f}% vs Alertmanager's {am.idle_cpu_pct:.1f}% "
             f"(bar half)", mine.idle_cpu_pct <= BAR_IDLE * am.idle_cpu_pct),
            (f"RSS {mine.rss_mb / am.rss_mb:.2f}x Alertmanager's (bar {BAR_RSS}x)",
             mine.rss_mb <= BAR_RSS * am.rss_mb),
        ]  # fmt: skip
    for text, passed in checks:
        print(f"{'pass' if passed else 'MISS'}: {text}")
        ok = ok and passed
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--names", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency", type=int, default=300)
    parser.add_argument("--idle", type=float, default=30)
    parser.add_argument("--settle", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3,
                        help="ingest rounds, each on a fresh instance (the median counts)")
    parser.add_argument("--only", choices=("pudimd", "alertmanager"))
    parser.add_argument("--profile", metavar="FILE", help="py-spy pudimd's ingest (collapsed)")
    args = parser.parse_args()
    install_signal_cleanup()
    systems = [s for s in ("alertmanager", "pudimd") if args.only in (None, s)]
    if "alertmanager" in systems and not Path(ALERTMANAGER).exists():
        raise SystemExit(f"{ALERTMANAGER} is missing: apt-get install prometheus-alertmanager")
    if len(CPUS) > 1 and 1 in CPUS:
        os.sched_setaffinity(0, {1})
    results: dict[str, Result] = {}
    with temp_dir("pudimd-bench-alerting-") as tmp:
        port = free_port()
        am_config = tmp / "alertmanager.yml"
        am_config.write_text(AM_CONFIG.format(port=port), encoding="utf-8")
        collector = subprocess.Popen(
            [*cpu_pin_cmd(1), sys.executable, str(HERE / "_collector.py"), str(port)]
        )
        try:
            wait_port(port, collector)  # type: ignore[arg-type]
            base = f"http://127.0.0.1:{port}"
            for name in systems:
                result = Result(name)
                for round_ in range(args.rounds):
                    http_post(f"{base}/reset")
                    work = tmp / f"{name}-{round_}"
                    work.mkdir()
                    system: Any = (
                        Alertmanager(am_config, work) if name == "alertmanager"
                        else Pudimd(am_config, work)
                    )  # fmt: skip
                    try:
                        print(f"== {name}, round {round_ + 1}", flush=True)
                        if round_ < args.rounds - 1:
                            result.ingest_rounds.append(asyncio.run(ingest_only(system, args)))
                        else:
                            asyncio.run(run_one(system, base, args, result))
                    finally:
                        system.stop()
                result.ingest_per_s = statistics.median(result.ingest_rounds)
                results[name] = result
        finally:
            collector.terminate()
            collector.wait(10)
    print(f"\n{args.alerts:,} alerts over {args.names} alertnames in batches of {args.batch}, "
          f"{args.concurrency} clients; {args.latency} single alerts opening new groups; "
          f"idle window {args.idle:g} s")  # fmt: skip
    ok = report(results, args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
