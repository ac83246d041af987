"""``/probe`` of pudimd against the real blackbox_exporter, and scheduled checks against both.

Part 1: nginx serves a page; blackbox_exporter (Debian's ``prometheus-blackbox-exporter``)
and pudimd (``python -m pudimd run``, no targets) each get ``wrk`` driving
``/probe?target=<nginx page>&module=http_2xx`` at concurrency 32 and 128, one exporter at a
time, same machine, same run.  Reported per exporter: probes/s, CPU-ms per probe (psutil
user+system of the exporter process, all its threads), peak RSS; then pudimd/blackbox of
probes/s.  Bar: at least 0.7x.

Part 2: pudimd runs scheduled http checks of the same nginx page (``--targets`` targets at
1 s) with no HTTP round trip per check; completed checks per CPU-second of the daemon
(``pudimd_checks_total`` and psutil), divided by blackbox's probes per CPU-second of part 1
(concurrency 32).  Bar: at least 1.0x.

Usage: ``python bench/bench_blackbox.py [--seconds 10] [--targets 1000]``.  Needs nginx,
prometheus-blackbox-exporter and wrk (Debian packages).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DaemonProc,
    Nginx,
    free_port,
    install_signal_cleanup,
    nginx,
    temp_dir,
    wait_port,
    write_config,
)

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
BAR_PROBE = 0.7
BAR_SCHEDULED = 1.0
CONCURRENCY = (32, 128)


@dataclass
class Run:
    exporter: str
    concurrency: int
    probes_per_s: float
    cpu_ms_per_probe: float
    peak_rss_mb: float
    errors: int


class PeakRss:
    """Samples a process's RSS every 50 ms; ``peak`` is the largest seen (MB)."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss / 1e6)
            except psutil.Error:
                return

    def close(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def _wrk(url: str, concurrency: int, seconds: float) -> tuple[float, int, int]:
    """(requests/s, requests, non-2xx/socket errors) from one wrk run."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*?timeout (\d+)"):
        found = re.search(pattern, out)
        if found:
            errors += int(found.group(1))
    return rate, total, errors


def _drive(name: str, proc: psutil.Process, url: str, seconds: float) -> list[Run]:
    runs: list[Run] = []
    _wrk(url, 8, 2)  # warm-up: connections, caches, JIT-less but lazy imports
    for concurrency in CONCURRENCY:
        rss = PeakRss(proc)
        cpu0 = _cpu(proc)
        rate, total, errors = _wrk(url, concurrency, seconds)
        cpu = _cpu(proc) - cpu0
        runs.append(Run(name, concurrency, rate, 1000 * cpu / max(total, 1), rss.close(), errors))
    return runs


@contextmanager
def _blackbox(tmp: Path) -> Iterator[tuple[psutil.Process, str]]:
    conf = tmp / "blackbox.yml"
    conf.write_text("modules:\n  http_2xx:\n    prober: http\n")
    port = free_port()
    proc = subprocess.Popen(
        [BLACKBOX, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield psutil.Process(proc.pid), f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def part_probe(tmp: Path, server: Nginx, seconds: float) -> list[Run]:
    target = f"{server.base}/page"
    query = f"/probe?target={target}&module=http_2xx"
    runs: list[Run] = []
    with _blackbox(tmp) as (proc, base):
        runs += _drive("blackbox_exporter", proc, base + query, seconds)
    cfg = tmp / "probe.yaml"
    cfg.write_text("logging: {format: json, level: warning}\n")
    with DaemonProc(cfg, tmp / "state-probe", cpu=None) as daemon:
        daemon.wait_ready()
        runs += _drive("pudimd", daemon.ps, daemon.base + query, seconds)
    return runs


def part_scheduled(tmp: Path, server: Nginx, targets: int, seconds: float) -> tuple[float, float]:
    """(checks per CPU-second, checks/s) of pudimd's own scheduled checks."""
    cfg = tmp / "sched.yaml"
    write_config(
        cfg,
        [
            {"name": f"t{i}", "probe": "http", "target": f"{server.base}/t{i}"}
            for i in range(targets)
        ],
        defaults={"interval": "1s", "timeout": "1s"},
        plugins={"concurrency": {"http": 512}},
        scheduler={"max_concurrency": 1024},
        logging={"format": "json", "level": "warning"},
    )
    with DaemonProc(cfg, tmp / "state-sched", cpu=None) as daemon:
        daemon.wait_ready()
        time.sleep(3)
        before = daemon.scrape()
        cpu0 = daemon.cpu_seconds()
        time.sleep(seconds)
        after = daemon.scrape()
        cpu = daemon.cpu_seconds() - cpu0
        checks = sum(
            after.get("pudimd_checks_total", result=r) - before.get("pudimd_checks_total", result=r)
            for r in ("success", "failure")
        )
        return checks / cpu, checks / (after.at - before.at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--targets", type=int, default=1000, help="scheduled targets (part 2)")
    args = parser.parse_args()
    install_signal_cleanup()
    for what, path in (("wrk", shutil.which("wrk")), ("blackbox_exporter", BLACKBOX)):
        if path is None or not Path(path).exists():
            raise SystemExit(f"{what} not found: apt-get install wrk prometheus-blackbox-exporter")
    with temp_dir("pudimd-bench-bb-") as tmp, nginx(tmp, cpu=None) as server:
        runs = part_probe(tmp, server, args.seconds)
        per_cpu, rate = part_scheduled(tmp, server, args.targets, args.seconds)
    print("/probe, http_2xx against a loopback nginx page (wrk -t1):")
    print(
        f"{'exporter':<18} {'conc':>5} {'probes/s':>9} {'CPU-ms/probe':>13} "
        f"{'peak RSS MB':>12} {'errors':>7}"
    )
    for r in runs:
        print(
            f"{r.exporter:<18} {r.concurrency:>5} {r.probes_per_s:>9.0f} "
            f"{r.cpu_ms_per_probe:>13.3f} {r.peak_rss_mb:>12.1f} {r.errors:>7}"
        )
    ok = True
    for concurrency in CONCURRENCY:
        bb = next(
            r for r in runs if r.exporter == "blackbox_exporter" and r.concurrency == concurrency
        )
        pd = next(r for r in runs if r.exporter == "pudimd" and r.concurrency == concurrency)
        ratio = pd.probes_per_s / bb.probes_per_s
        passed = ratio >= BAR_PROBE
        ok &= passed
        print(
            f"concurrency {concurrency}: pudimd/blackbox = {ratio:.2f}x probes/s "
            f"(bar {BAR_PROBE}x) {'PASS' if passed else 'FAIL'}"
        )
    bb32 = next(r for r in runs if r.exporter == "blackbox_exporter" and r.concurrency == 32)
    bb_per_cpu = 1000 / bb32.cpu_ms_per_probe
    ratio = per_cpu / bb_per_cpu
    passed = ratio >= BAR_SCHEDULED
    ok &= passed
    print(
        f"scheduled: pudimd {args.targets} targets at 1s: {rate:.0f} checks/s, "
        f"{per_cpu:.0f} checks per CPU-second; blackbox {bb_per_cpu:.0f} probes per "
        f"CPU-second; ratio {ratio:.2f}x (bar {BAR_SCHEDULED}x) {'PASS' if passed else 'FAIL'}"
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
