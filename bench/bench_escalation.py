"""Escalation timers at scale: ``--escalations`` groups escalating at once, their timers
staggered, through the real daemon.

The daemon (``python -m pudimd run``, pinned to CPU 0) has one route with
``group_by: [alertname]`` and an escalation policy: level 1 pages a user at once, level 2
a receiver after ``--delay``, level 3 an hour later.  The bench posts ``--escalations``
alerts with distinct alertnames (so as many groups and escalations) spread evenly over
``--spread`` seconds, so that the level-2 timers come due spread over the same time, each
notifying a webhook collector (``_collector.py``, CPU 1).

Reported: how late the level-2 timers fired after their due time
(``pudimd_escalation_lateness_seconds``, p50/p99/max bucket), that every level-2
notification arrived, then the daemon's CPU over ``--idle`` seconds while the escalations
wait for level 3 (every one holds a timer) and its RSS.  ``--delay`` must exceed ``--spread``:
the level-2 timers are measured alone, after every level 1 fired.  Bars (issue #6): timer accuracy
p99 < 1 s; CPU at idle < 2 %.

    python bench/bench_escalation.py [--escalations 10000] [--spread 30] [--delay 30]
        [--idle 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DaemonProc,
    bucket_delta,
    cpu_pin_cmd,
    free_port,
    histogram_quantile,
    http_get,
    install_signal_cleanup,
    temp_dir,
    wait_port,
)

HERE = Path(__file__).resolve().parent
BAR_P99 = 1.0
BAR_IDLE_CPU = 2.0
LATENESS = "pudimd_escalation_lateness_seconds"

CONFIG = """\
logging: {{format: json, level: warning}}
targets: []
alerting:
  route:
    receiver: team
    group_by: [alertname]
    group_wait: 0s
    group_interval: 5m
    escalation_policy: page
  receivers:
    - name: team
    - name: alice
    - name: escalated
      webhook_configs: [{{url: "http://127.0.0.1:{port}/hook"}}]
oncall:
  users: [{{name: alice, receiver: alice}}]
  escalation_policies:
    - name: page
      levels:
        - {{targets: [{{user: alice}}], delay: {delay}s}}
        - {{targets: [{{receiver: escalated}}], delay: 1h}}
        - {{targets: [{{receiver: escalated}}]}}
"""


def post(base: str, alerts: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{base}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        if response.status != 200:
            raise SystemExit(f"POST /api/v2/alerts answered {response.status}")


def delivered(collector: str) -> int:
    _, body = http_get(f"{collector}/stats")
    stats = json.loads(body)
    return sum(len(ids) for ids in stats["firing"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--escalations", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=30.0)
    parser.add_argument("--delay", type=int, default=40)
    parser.add_argument("--idle", type=float, default=30.0)
    args = parser.parse_args()
    install_signal_cleanup()
    with temp_dir("pudimd-bench-escalation-") as tmp:
        port = free_port()
        collector_base = f"http://127.0.0.1:{port}"
        collector = subprocess.Popen(
            [*cpu_pin_cmd(1), sys.executable, str(HERE / "_collector.py"), str(port)]
        )
        try:
            wait_port(port, collector)  # type: ignore[arg-type]
            config = tmp / "pudimd.yaml"
            config.write_text(CONFIG.format(port=port, delay=args.delay), encoding="utf-8")
            with DaemonProc(config, tmp / "state", cpu=0) as daemon:
                daemon.wait_ready()
                run(daemon, collector_base, args)
        finally:
            collector.terminate()
            collector.wait(10)


def run(daemon: DaemonProc, collector: str, args: argparse.Namespace) -> None:
    n, batch = args.escalations, 50
    if args.delay <= args.spread + 5:
        raise SystemExit("--delay must exceed --spread by over 5 s: level 2 is measured alone")
    ends = (datetime.now(UTC) + timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    started = time.monotonic()
    for first in range(0, n, batch):
        # spread the starts (and so the level-2 due times) evenly over --spread seconds
        due = started + args.spread * first / n
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        post(
            daemon.base,
            [{"labels": {"alertname": f"Esc{i}", "severity": "page"}, "endsAt": ends}
             for i in range(first, min(first + batch, n))],
        )  # fmt: skip
    posted = time.monotonic() - started
    time.sleep(2)  # the last level-1 notifications
    before = daemon.scrape()  # every level 1 fired, no level 2 due yet: level 2 alone counts
    early = delivered(collector)
    print(f"{n:,} alerts posted over {posted:.1f} s ({early} level-2 notifications early); "
          "waiting for level 2 of each", flush=True)  # fmt: skip
    deadline = started + args.spread + args.delay + 60
    got = 0
    while time.monotonic() < deadline:
        got = delivered(collector)
        if got >= n:
            break
        time.sleep(0.5)
    fired = time.monotonic() - started
    after = daemon.scrape()
    buckets = bucket_delta(after.buckets(LATENESS), before.buckets(LATENESS))
    count = after.get(f"{LATENESS}_count") - before.get(f"{LATENESS}_count")
    p50 = histogram_quantile(0.5, buckets)
    p99 = histogram_quantile(0.99, buckets)
    worst = next((le for le, c in buckets if c >= buckets[-1][1]), float("inf"))
    active = after.get("pudimd_escalations_active")
    print(f"level 2 notified for {got:,}/{n:,} escalations by {fired:.0f} s; "
          f"{count:,.0f} level-2 timers fired")  # fmt: skip
    print(f"timer lateness: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"all within {worst:g} s; active escalations {active:,.0f}")  # fmt: skip
    time.sleep(3)
    cpu0, wall0 = daemon.cpu_seconds(), time.monotonic()
    time.sleep(args.idle)
    idle = 100 * (daemon.cpu_seconds() - cpu0) / (time.monotonic() - wall0)
    print(f"idle with {active:,.0f} escalations waiting for level 3: CPU {idle:.2f} % of a "
          f"core, RSS {daemon.rss_mb():.0f} MB")  # fmt: skip
    checks = [
        (f"every level 2 delivered ({got:,}/{n:,})", got >= n),
        (f"timer accuracy p99 {p99 * 1000:.0f} ms < {BAR_P99 * 1000:.0f} ms", p99 < BAR_P99),
        (f"idle CPU {idle:.2f} % < {BAR_IDLE_CPU:g} %", idle < BAR_IDLE_CPU),
    ]
    for text, ok in checks:
        print(f"{'pass' if ok else 'MISS'}: {text}")
    if not all(ok for _, ok in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
