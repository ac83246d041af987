"""How long a config reload takes with 10,000 targets when one of them changes, and whether
the other 9,999 keep their schedule.

Opens a local TCP listener, writes a config with 10,000 ``tcp`` targets to it at
``interval: 60s`` (about 170 connects/s in the background), runs ``pudimd run`` pinned to
CPU 0 with JSON logs, waits for /-/ready and for a first check of a sample of targets, then:

1. changes one target's labels and sends SIGHUP: internal seconds from the daemon's
   ``config reloaded`` log line, external from the signal to that line's timestamp;
2. changes another target's labels and POSTs /-/reload: time to its 200 answer;
3. waits one full interval and checks every sampled unchanged target: its check counter went
   on from where it was (its job was kept), it ran exactly once per elapsed interval (no
   extra check at the reload, no missed slot), and at the same phase (start timestamps an
   exact number of intervals apart, within ``--tolerance``).

    python bench/bench_reload.py [--targets 10000] [--interval 60] [--sample-wait 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DaemonProc,
    Metrics,
    TcpSink,
    http_post,
    install_signal_cleanup,
    temp_dir,
    write_config,
)

from pudimd.scheduler import spread_offset

BAR_SECONDS = 1.0
CHECKS = "pudimd_target_checks_total"
LAST = "pudimd_target_last_check_timestamp_seconds"


def _targets(n: int, port: int, changed: dict[int, dict[str, str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        target: dict[str, Any] = {"name": f"t{i}", "probe": "tcp", "target": f"127.0.0.1:{port}"}
        if i in changed:
            target["labels"] = changed[i]
        out.append(target)
    return out


def _write(
    path: Path, n: int, port: int, interval: int, changed: dict[int, dict[str, str]]
) -> None:
    write_config(
        path,
        _targets(n, port, changed),
        defaults={"interval": f"{interval}s", "timeout": "2s"},
        scheduler={"max_concurrency": 1024},
        logging={"format": "json", "level": "info"},
    )


def _wait_log(daemon: DaemonProc, event: str, seen: int, timeout: float) -> dict[str, Any]:
    """The first ``event`` log line after the ``seen`` already there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in daemon.log_lines() if line.get("event") == event]
        if len(lines) > seen:
            return lines[seen]
        time.sleep(0.005)
    raise SystemExit(f"no {event!r} log line after {timeout:g}s:\n{daemon.stderr_text()[-2000:]}")


def _count(daemon: DaemonProc, event: str) -> int:
    return sum(1 for line in daemon.log_lines() if line.get("event") == event)


def _log_time(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def _stats(line: dict[str, Any]) -> str:
    return ", ".join(f"{k}={line.get(k)}" for k in ("added", "changed", "removed", "unchanged"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--interval", type=int, default=60, help="seconds")
    parser.add_argument(
        "--sample-wait", type=float, default=30, help="seconds after ready before the reloads"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="phase tolerance (seconds): lateness stalls stay well under it, a rescheduled "
        "job would be off by up to the interval",
    )
    args = parser.parse_args()
    install_signal_cleanup()
    if len(os.sched_getaffinity(0)) > 1:  # the bench and its listener stay off the daemon's CPU
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})
    started = time.monotonic()
    n, interval = args.targets, args.interval
    first, second = 123 % n, 4567 % n
    sink = TcpSink()
    try:
        with temp_dir("pudimd-bench-reload-") as tmp:
            cfg = tmp / "pudimd.yaml"
            _write(cfg, n, sink.port, interval, {})
            print(f"config: {n} tcp targets, interval {interval}s, {cfg.stat().st_size:,} bytes")
            with DaemonProc(cfg, tmp / "state", cpu=0) as daemon:
                ready = daemon.wait_ready(timeout=120)
                settled = time.time() + 5
                print(f"ready after {ready:.1f} s; sampling for {args.sample_wait:g} s", flush=True)
                time.sleep(args.sample_wait)
                before = daemon.scrape()

                # 1. SIGHUP with one target's labels changed
                _write(cfg, n, sink.port, interval, {first: {"bench": "changed"}})
                seen = _count(daemon, "config reloaded")
                sent = time.time()
                daemon.proc.send_signal(signal.SIGHUP)
                hup = _wait_log(daemon, "config reloaded", seen, timeout=60)
                hup_external = _log_time(hup) - sent

                # 2. POST /-/reload with another target's labels changed
                _write(cfg, n, sink.port, interval,
                       {first: {"bench": "changed"}, second: {"bench": "changed"}})  # fmt: skip
                seen = _count(daemon, "config reloaded")
                t0 = time.perf_counter()
                status, body = http_post(f"{daemon.base}/-/reload", timeout=60)
                post_external = time.perf_counter() - t0
                if status != 200:
                    raise SystemExit(f"POST /-/reload answered {status}: {body.decode()}")
                post = _wait_log(daemon, "config reloaded", seen, timeout=10)

                # 3. one full interval later
                print(f"reloaded; waiting {interval + 3} s for a full interval", flush=True)
                time.sleep(interval + 3)
                after = daemon.scrape()
                verdict = _verify(before, after, interval, args.tolerance, {first, second}, settled)
                cpu_note = f"daemon RSS {daemon.rss_mb():.0f} MB"
                scrape_note = (
                    f"/metrics with {n} targets: {after.size / 1e6:.1f} MB in {after.seconds:.2f} s"
                )
    finally:
        sink.close()

    print()
    print(f"== pudimd reload ({n} targets, one changed per reload, daemon on 1 core)")
    print(f"ready after start               {ready:.1f} s")
    print(f"SIGHUP reload (internal)        {float(hup['seconds']):.3f} s  ({_stats(hup)})")
    print(f"SIGHUP -> 'config reloaded'     {hup_external:.3f} s  (signal to log timestamp)")
    print(f"POST /-/reload (internal)       {float(post['seconds']):.3f} s  ({_stats(post)})")
    print(f"POST /-/reload -> 200           {post_external:.3f} s")
    print(verdict)
    print(scrape_note)
    print(cpu_note)
    worst = max(float(hup["seconds"]), hup_external, float(post["seconds"]), post_external)
    print(f"bar: reload under 1 s -> {'PASS' if worst < BAR_SECONDS else 'MISS'} "
          f"(slowest of the four figures: {worst:.3f} s)")  # fmt: skip
    print(f"(bench took {time.monotonic() - started:.0f} s)")


def _lateness(name: str, ts: float, interval: int) -> float:
    """How far after its slot on the target's fixed phase grid (the scheduler's
    ``spread_offset``) a check started."""
    late = (ts - float(spread_offset(name, interval))) % interval
    return late - interval if late > interval - 1 else late


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def _verify(
    before: Metrics,
    after: Metrics,
    interval: int,
    tolerance: float,
    changed: set[int],
    settled: float,
) -> str:
    """Check the sampled unchanged targets; returns the summary lines.

    A kept job keeps counting from where it was (a new job would restart at 0), runs once
    per elapsed interval (no extra check at the reload, no missed slot), and its check after
    the reloads starts a whole number of intervals after its check before them (within
    ``tolerance``: both starts carry some scheduling lateness; a rescheduled job would be
    off by anything up to the interval).  Sampled: targets whose check before the reloads
    ran after ``settled`` (Unix time), i.e. not in the start-up burst."""
    checks0, checks1 = before.by_label(CHECKS, "target"), after.by_label(CHECKS, "target")
    last0, last1 = before.by_label(LAST, "target"), after.by_label(LAST, "target")
    skip = {f"t{i}" for i in changed}
    unchanged = [name for name in checks1 if name not in skip]
    sampled = [name for name in unchanged if name in last1 and last0.get(name, 0.0) >= settled]
    bad: dict[str, int] = {"counter reset": 0, "wrong check count": 0, "phase moved": 0}
    deviations: list[float] = []
    grid: list[float] = []
    for name in sampled:
        elapsed = last1[name] - last0[name]
        slots = round(elapsed / interval)
        deviation = elapsed - slots * interval
        deviations.append(abs(deviation))
        grid.append(_lateness(name, last1[name], interval))
        ran = checks1[name] - checks0.get(name, 0.0)
        if checks1[name] < checks0.get(name, 0.0) or checks1[name] < slots:
            bad["counter reset"] += 1
        elif ran != slots or slots < 1:
            bad["wrong check count"] += 1
        elif abs(deviation) > tolerance:
            bad["phase moved"] += 1
    ok = len(sampled) - sum(bad.values())
    lines = [
        f"unchanged targets kept schedule: {ok}/{len(sampled)} sampled OK "
        f"(of {len(unchanged)} unchanged by both reloads; sampled = first checked after the "
        f"start-up burst, checked again after the reloads)",
        f"  phase deviation across the reloads: median {_pct(deviations, 0.5) * 1000:.1f} ms, "
        f"p99 {_pct(deviations, 0.99) * 1000:.1f} ms, max "
        f"{max(deviations, default=float('nan')) * 1000:.1f} ms (tolerance "
        f"{tolerance * 1000:.0f} ms); within 50 ms: {sum(d <= 0.05 for d in deviations)}",
        f"  check starts vs. the spread_offset grid: median {_pct(grid, 0.5) * 1000:+.1f} ms, "
        f"p1 {_pct(grid, 0.01) * 1000:+.1f} ms, p99 {_pct(grid, 0.99) * 1000:+.1f} ms",
    ]
    if any(bad.values()):
        lines.append("  failed: " + ", ".join(f"{k} {v}" for k, v in bad.items() if v))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
