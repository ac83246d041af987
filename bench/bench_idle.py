"""What the daemon costs at rest: RSS and CPU with 100 targets at a 30 s interval.

The targets are a mix: ``http`` to the daemon's own /-/healthy, ``tcp`` to its own port and
``tcp`` to a listener this bench opens.  After a warm-up the daemon runs undisturbed (no
/metrics scrape inside the window) while its RSS is sampled every few seconds and its CPU
time is read at both ends.

The daemon runs from ``.venv-runtime`` (``make bench`` creates it: pudimd and its runtime
dependencies only), as an operator installs it; the test venv also holds test tools that
libraries import when present (structlog imports rich, greenlet and twisted), ~4 MB more.

When RSS is above the bar, ``bench/_memprobe.py`` runs the daemon in-process to show where
the memory goes: RSS after each import stage, the floor the required libraries alone make,
and the top allocation sites by package (tracemalloc).

    python bench/bench_idle.py [--targets 100] [--warmup 15] [--window 75]
        [--memory auto|always|never]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DaemonProc,
    TcpSink,
    free_port,
    install_signal_cleanup,
    temp_dir,
    write_config,
)

BAR_RSS_MB = 60.0
BAR_CPU_PCT = 1.0
HERE = Path(__file__).resolve().parent
RUNTIME_PYTHON = HERE.parent / ".venv-runtime" / "bin" / "python"


def daemon_python() -> tuple[str, str]:
    """The interpreter to run the daemon with, and what it is."""
    if RUNTIME_PYTHON.exists():
        return str(RUNTIME_PYTHON), ".venv-runtime (runtime dependencies only)"
    return sys.executable, f"{sys.prefix} (no .venv-runtime: `make .venv-runtime/.installed`)"


def targets(n: int, own_port: int, sink_port: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            target = {"probe": "http", "target": f"http://127.0.0.1:{own_port}/-/healthy"}
        elif kind == 1:
            target = {"probe": "tcp", "target": f"127.0.0.1:{own_port}"}
        else:
            target = {"probe": "tcp", "target": f"127.0.0.1:{sink_port}"}
        out.append({"name": f"idle{i}", **target})
    return out


def write(path: Path, n: int, own_port: int, sink_port: int) -> None:
    write_config(
        path,
        targets(n, own_port, sink_port),
        defaults={"interval": "30s", "timeout": "5s"},
        logging={"format": "json", "level": "info"},
    )


def memory_breakdown(cfg: Path, state: Path, port: int, seconds: float) -> str:
    """Run ``_memprobe.py`` (the daemon in-process under tracemalloc) and return its report."""
    cmd = [daemon_python()[0], str(HERE / "_memprobe.py"), str(cfg), str(state), str(port),
           str(seconds)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0:
        return f"(memory probe failed with {proc.returncode}: {proc.stderr.strip()[-1500:]})"
    return proc.stdout.rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--window", type=float, default=75)
    parser.add_argument("--memory", choices=["auto", "always", "never"], default="auto")
    args = parser.parse_args()
    install_signal_cleanup()
    if len(os.sched_getaffinity(0)) > 1:  # the bench and its listener stay off the daemon's CPU
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})
    started = time.monotonic()
    sink = TcpSink()
    try:
        with temp_dir("pudimd-bench-idle-") as tmp:
            port = free_port()
            cfg = tmp / "pudimd.yaml"
            write(cfg, args.targets, port, sink.port)
            python, venv = daemon_python()
            with DaemonProc(cfg, tmp / "state", port=port, cpu=0, python=python) as daemon:
                ready = daemon.wait_ready()
                rss_ready = daemon.rss_mb()
                print(f"ready after {ready:.1f} s; warming up {args.warmup:g} s", flush=True)
                time.sleep(args.warmup)
                before = daemon.scrape()
                time.sleep(1)  # let the scrape's own work finish before the window
                rss: list[float] = []
                wall0, cpu0 = time.monotonic(), daemon.cpu_seconds()
                ctx0 = daemon.ps.num_ctx_switches()
                while time.monotonic() - wall0 < args.window:
                    rss.append(daemon.rss_mb())
                    time.sleep(min(5.0, max(0.0, args.window - (time.monotonic() - wall0))))
                wall = time.monotonic() - wall0
                cpu_s = daemon.cpu_seconds() - cpu0
                ctx1 = daemon.ps.num_ctx_switches()
                rss.append(daemon.rss_mb())
                after = daemon.scrape()
                threads = daemon.ps.num_threads()
            checks = after.get("pudimd_checks_total") - before.get("pudimd_checks_total")
            failures = after.get("pudimd_checks_total", result="failure") - before.get(
                "pudimd_checks_total", result="failure"
            )
            rss_avg = statistics.fmean(rss)
            cpu_pct = 100.0 * cpu_s / wall
            memory = ""
            if args.memory == "always" or (args.memory == "auto" and rss_avg >= BAR_RSS_MB):
                print("RSS above the bar: measuring where memory goes ...", flush=True)
                mem_port, mem_cfg = free_port(), tmp / "memprobe.yaml"
                write(mem_cfg, args.targets, mem_port, sink.port)
                memory = memory_breakdown(mem_cfg, tmp / "memstate", mem_port, 10)
    finally:
        sink.close()

    wakeups = (ctx1.voluntary + ctx1.involuntary - ctx0.voluntary - ctx0.involuntary) / wall
    print()
    print(f"== pudimd idle ({args.targets} targets at 30 s: http self, tcp self, tcp listener)")
    print(f"python                  {venv}")
    print(f"ready after             {ready:.1f} s (RSS then {rss_ready:.1f} MB)")
    print(f"window                  {wall:.0f} s, {checks:.0f} checks ({failures:.0f} failed), "
          f"no scrapes inside")  # fmt: skip
    print(f"RSS                     avg {rss_avg:.1f} MB, min {min(rss):.1f}, max {max(rss):.1f}")
    print(f"CPU                     {cpu_pct:.2f} % of one core ({cpu_s:.2f} s in {wall:.0f} s)")
    print(f"context switches        {wakeups:.1f}/s, threads {threads}")
    rss_ok, cpu_ok = rss_avg < BAR_RSS_MB, cpu_pct < BAR_CPU_PCT
    print(f"bar: RSS < 60 MB -> {'PASS' if rss_ok else 'MISS'} ({rss_avg:.1f} MB); "
          f"CPU < 1 % -> {'PASS' if cpu_ok else 'MISS'} ({cpu_pct:.2f} %)")  # fmt: skip
    if memory:
        print(memory)
    print(f"(bench took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
