"""History queries on a year of rollups: ``GET /api/v1/targets/{name}/uptime`` and what
``pudimd alerts history --target NAME --since 90d`` asks the daemon, timed against the
real daemon.

1. Build an SQLite database through the real store (``Store.open`` runs the migrations),
   then fill it with ``executemany``: ``--days`` (365) of hour rollups for ``--targets``
   (1,000) targets, written hour by hour for every target as the daemon writes them (so one
   target's rows are spread over the whole table); minute rollups for the last
   ``--minute-days`` and for the two hours around each window's older edge (7d, 30d, 90d
   ago), which is every minute row an uptime query reads; counts and sketches as checks
   every ``--check-interval`` seconds make them; and ``--events`` (50,000) alert events
   over the same year (episodes: fired, acknowledged, assigned, commented, resolved),
   spread over the targets with a long tail (a few flap a lot).
2. Start ``python -m pudimd run`` on it (pinned to CPU 0, the bench on CPU 1), with the
   1,000 targets configured as ``tcp`` checks of a local listener every
   ``--check-interval`` seconds (so the store writes while it is read) and
   ``storage.rollup_retention`` longer than ``--days``.
3. Time, over ``--runs`` runs each on a target drawn at random (a new connection per call,
   as the CLI makes): ``GET /api/v1/targets/{name}/uptime``; the two calls of ``alerts
   history --target NAME --since 90d`` (the uptime, then ``GET /api/v1/history?target=
   &since=&limit=1000``), for an ordinary target and for the noisiest one; then, for
   information, the report endpoints over 90 days and the whole command as a subprocess
   (interpreter start included).

Bar (issue #6): ``alerts history`` for one target over 90 days answers in under 200 ms
(p99 of the API calls it makes) with a year of rollups stored.

    python bench/bench_history.py [--targets 1000] [--days 365] [--minute-days 2]
        [--events 50000] [--check-interval 60] [--runs 300] [--keep DIR]
        [--covering-index]

``--keep DIR`` builds the database in DIR once and reuses it (the edges' minute rows are
placed relative to the build time: rebuild after a few hours).  ``--covering-index`` adds
an index ``(target, resolution, bucket_start, count, failures)`` on rollups before the
daemon starts, to measure what it would save.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    CPUS,
    DaemonProc,
    TcpSink,
    http_get,
    install_signal_cleanup,
    temp_dir,
    write_config,
)

from pudimd.alerting.alert import fingerprint
from pudimd.store import Store
from pudimd.store.rollup import Bucket

BAR_MS = 200.0
HOUR = 3600
MINUTE = 60
DAY = 86_400
EDGES = (7 * DAY, 30 * DAY, 90 * DAY)
CHUNK = 100_000


def target_name(i: int) -> str:
    return f"target-{i:04d}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- building the database -------------------------------------------------------------------


def sketches(
    rng: random.Random, samples: int, n: int = 64
) -> list[tuple[float, float, float, str]]:
    """(p50, p95, max, sketch JSON) of ``n`` buckets of ``samples`` check durations each."""
    out = []
    for _ in range(n):
        bucket = Bucket()
        for _ in range(max(samples, 1)):
            bucket.add(True, rng.lognormvariate(-3.5, 0.8))
        out.append(
            (bucket.latency_p50, bucket.latency_p95, bucket.latency_max, bucket.sketch.to_json())
        )
    return out


def rollup_rows(
    rng: random.Random,
    targets: int,
    resolution: str,
    starts: Iterator[int],
    per_bucket: int,
    templates: list[tuple[float, float, float, str]],
) -> Iterator[tuple[Any, ...]]:
    """Rows for every target at each bucket start, time-major (as the daemon writes)."""
    names = [target_name(i) for i in range(targets)]
    for start in starts:
        for name in names:
            roll = rng.random()
            if roll < 0.002:
                failures = per_bucket  # an outage
            elif roll < 0.03:
                failures = 1
            else:
                failures = 0
            p50, p95, top, sketch = templates[rng.randrange(len(templates))]
            yield (name, resolution, start, per_bucket, failures, p50, p95, top, sketch)


def insert_chunks(conn: sqlite3.Connection, sql: str, rows: Iterator[tuple[Any, ...]]) -> int:
    count = 0
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            conn.executemany(sql, chunk)
            count += len(chunk)
            chunk = []
    if chunk:
        conn.executemany(sql, chunk)
        count += len(chunk)
    conn.commit()
    return count


def event_rows(
    rng: random.Random, targets: int, events: int, since: float, until: float
) -> list[tuple[Any, ...]]:
    """About ``events`` timeline events in episodes, oldest first; target i is picked with
    weight 1/(i+1) (target-0000 flaps the most)."""
    weights = [1.0 / (i + 1) for i in range(targets)]
    names = ("TargetDown", "SlowResponse", "CertificateExpiry")
    rows: list[tuple[Any, ...]] = []
    while len(rows) < events:
        target = target_name(rng.choices(range(targets), weights)[0])
        alertname = rng.choice(names)
        severity = "critical" if alertname == "TargetDown" else "warning"
        labels = {"alertname": alertname, "target": target, "severity": severity}
        fp = fingerprint(labels)
        at = rng.uniform(since, until - HOUR)
        episode: list[tuple[float, str, str | None, str | None, dict[str, Any]]] = [
            (at, "fired", None, None, {"labels": labels})
        ]
        t = at
        if rng.random() < 0.7:
            t += rng.expovariate(1 / 300)
            episode.append((t, "acknowledged", "alice", "cli", {}))
        if rng.random() < 0.2:
            t += rng.expovariate(1 / 300)
            episode.append((t, "assigned", "alice", "api", {"assignee": "team:ops"}))
        if rng.random() < 0.1:
            t += rng.expovariate(1 / 600)
            episode.append((t, "commented", "bob", "web", {"comment": "looking into it"}))
        t += rng.expovariate(1 / 1800)
        episode.append((t, "resolved", None, None, {}))
        for ev_at, kind, actor, interface, detail in episode:
            rows.append((fp, ev_at, kind, alertname, target, actor, interface, json.dumps(detail)))
    rows.sort(key=lambda row: row[1])
    return rows


def build(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The database at ``path``: migrated by the store, then filled.  Returns counts."""

    async def migrate() -> None:
        store = await Store.open(f"sqlite:///{path}")
        await store.close()

    anyio.run(migrate)
    rng = random.Random(args.seed)
    now = time.time()
    last_hour = math.floor(now / HOUR) * HOUR  # the current hour is not written yet
    last_minute = math.floor(now / MINUTE) * MINUTE
    per_hour = max(1, round(HOUR / args.check_interval))
    per_minute = max(1, round(MINUTE / args.check_interval))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    sql = (
        "INSERT INTO rollups (target, resolution, bucket_start, count, failures, latency_p50, "
        "latency_p95, latency_max, sketch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    t0 = time.monotonic()
    hours = insert_chunks(
        conn,
        sql,
        rollup_rows(
            rng,
            args.targets,
            "1h",
            iter(range(last_hour - args.days * 24 * HOUR, last_hour, HOUR)),
            per_hour,
            sketches(rng, per_hour),
        ),
    )
    minute_starts: set[int] = set(
        range(last_minute - int(args.minute_days * DAY), last_minute, MINUTE)
    )
    for edge in EDGES:
        around = math.floor((now - edge) / MINUTE) * MINUTE
        minute_starts.update(range(around - HOUR, around + HOUR, MINUTE))
    minutes = insert_chunks(
        conn,
        sql,
        rollup_rows(
            rng,
            args.targets,
            "1m",
            iter(sorted(minute_starts)),
            per_minute,
            sketches(rng, per_minute),
        ),
    )
    events = event_rows(rng, args.targets, args.events, now - args.days * DAY, now)
    conn.executemany(
        "INSERT INTO alert_events (fingerprint, at, kind, alertname, target, actor, interface, "
        "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        events,
    )
    conn.commit()
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    return {
        "hour_rows": hours,
        "minute_rows": minutes,
        "events": len(events),
        "seconds": time.monotonic() - t0,
        "bytes": path.stat().st_size,
        "built_at": now,
    }


def covering_index(path: Path) -> float:
    t0 = time.monotonic()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE INDEX IF NOT EXISTS ix_bench_rollups_covering ON rollups "
            "(target, resolution, bucket_start, count, failures)"
        )
    return time.monotonic() - t0


def query_plan(path: Path) -> list[str]:
    """SQLite's plan for the hour part of the uptime query."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "EXPLAIN QUERY PLAN SELECT sum(CASE WHEN bucket_start >= ? THEN count ELSE 0 END) "
            "FROM rollups WHERE target = ? AND resolution = '1h' AND bucket_start >= ? "
            "AND bucket_start < ?",
            (0, "target-0001", 0, 1),
        ).fetchall()
    return [str(row[-1]) for row in rows]


# -- timing -------------------------------------------------------------------------------------


def timed(fn: Callable[[], None], runs: int) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``fn``."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):7.1f} ms   p99 {quantile(values, 0.99):7.1f} ms   "
        f"max {max(values):7.1f} ms   (n={len(values)})"
    )


HEADERS: dict[str, str] = {}
"""The admin token's header, once the daemon runs (the CLI gets it as PUDIMD_TOKEN)."""


def get_json(url: str) -> Any:
    status, body = http_get(url, timeout=30, headers=HEADERS)
    if status != 200:
        raise SystemExit(f"GET {url}: {status} {body[:300]!r}")
    return json.loads(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365, help="days of hour rollups")
    parser.add_argument(
        "--minute-days", type=float, default=2.0, help="days of minute rollups up to now"
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--check-interval", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="build the database here once, then reuse it")
    parser.add_argument("--covering-index", action="store_true")
    args = parser.parse_args()
    install_signal_cleanup()
    if len(CPUS) > 1 and 1 in CPUS:
        os.sched_setaffinity(0, {1})
    with temp_dir("pudimd-bench-history-") as tmp:
        state = tmp / "state"
        state.mkdir()
        db = state / "pudimd.db"
        info: dict[str, Any]
        if args.keep is not None:
            kept = args.keep / "pudimd.db"
            marker = args.keep / "build.json"
            if not marker.exists():
                args.keep.mkdir(parents=True, exist_ok=True)
                info = build(kept, args)
                marker.write_text(json.dumps(info))
            info = json.loads(marker.read_text())
            print(f"reusing {kept} (built {iso(info['built_at'])})")
            shutil.copyfile(kept, db)
        else:
            info = build(db, args)
        print(
            f"database: {info['hour_rows']:,} hour rollups ({args.days} days x "
            f"{args.targets:,} targets), {info['minute_rows']:,} minute rollups, "
            f"{info['events']:,} alert events; {info['bytes'] / 1e9:.2f} GB, "
            f"built in {info['seconds']:.0f} s"
        )
        if args.covering_index:
            print(f"covering index on rollups built in {covering_index(db):.0f} s")
        print("plan of the hour query: " + " / ".join(query_plan(db)))
        run(args, tmp, state)


def run(args: argparse.Namespace, tmp: Path, state: Path) -> None:
    sink = TcpSink()
    try:
        config = tmp / "pudimd.yaml"
        write_config(
            config,
            [
                {
                    "name": target_name(i),
                    "probe": "tcp",
                    "target": f"127.0.0.1:{sink.port}",
                    "interval": f"{args.check_interval:g}s",
                }
                for i in range(args.targets)
            ],
            storage={"rollup_retention": f"{args.days + 30}d"},
            logging={"format": "json", "level": "warning"},
            alerting={
                "route": {
                    "receiver": "ops",
                    "routes": [{"matchers": ['severity="critical"'], "receiver": "pager"}],
                },
                "receivers": [{"name": "ops"}, {"name": "pager"}],
            },
        )
        with DaemonProc(config, state, cpu=0) as daemon:
            print(f"daemon ready after {daemon.wait_ready():.1f} s")
            token = daemon.admin_token()
            HEADERS["Authorization"] = f"Bearer {token}"
            os.environ["PUDIMD_TOKEN"] = token
            measure(args, daemon.base)
            print(f"daemon RSS {daemon.rss_mb():.0f} MB")
    finally:
        sink.close()


def measure(args: argparse.Namespace, base: str) -> None:
    rng = random.Random(args.seed + 1)
    ordinary = [target_name(i) for i in range(10, args.targets)]
    noisy = target_name(0)

    def uptime(name: str) -> Any:
        return get_json(f"{base}/api/v1/targets/{urllib.parse.quote(name)}/uptime")

    def history(name: str) -> None:
        """What `pudimd alerts history --target NAME --since 90d` asks for."""
        uptime(name)
        query = urllib.parse.urlencode(
            {"target": name, "since": iso(time.time() - 90 * DAY), "limit": "1000"}
        )
        get_json(f"{base}/api/v1/history?{query}")

    sample = uptime(ordinary[0])
    windows = {w["window"]: w for w in sample["windows"]}
    print(
        f"uptime of {ordinary[0]}: "
        + ", ".join(
            f"{name} {w['checks']:,} checks {w['uptimePercent']:.3f}%"
            for name, w in windows.items()
        )
    )
    query = urllib.parse.urlencode({"target": noisy, "since": iso(time.time() - 90 * DAY)})
    noisy_events = len(get_json(f"{base}/api/v1/history?{query}&limit=10000")["events"])
    for _ in range(20):  # warm up: connections, imports, statement caches
        history(rng.choice(ordinary))

    results = {
        "GET /uptime (random target)": timed(lambda: uptime(rng.choice(ordinary)), args.runs),
        "alerts history --target --since 90d (its 2 calls)": timed(
            lambda: history(rng.choice(ordinary)), args.runs
        ),
        f"  the same for {noisy} ({noisy_events} events in 90d)": timed(
            lambda: history(noisy), max(20, args.runs // 5)
        ),
    }
    since = iso(time.time() - 90 * DAY)
    results["GET /reports/response (90 days)"] = timed(
        lambda: get_json(f"{base}/api/v1/reports/response?since={since}"), 5
    )
    results["GET /history/receivers/pager (90 days)"] = timed(
        lambda: get_json(f"{base}/api/v1/history/receivers/pager?since={since}&limit=1000"), 5
    )
    cli = [sys.executable, "-m", "pudimd", "alerts", "history", "--url", base]

    def command() -> None:
        out = subprocess.run(
            [*cli, "--target", rng.choice(ordinary), "--since", "90d"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"pudimd alerts history failed: {out.stderr}")

    results["pudimd alerts history --target (the process)"] = timed(command, 10)
    print()
    for name, values in results.items():
        print(f"{name:58} {summary(values)}")
    bar = quantile(results["alerts history --target --since 90d (its 2 calls)"], 0.99)
    verdict = "pass" if bar < BAR_MS else "MISS"
    print(
        f"\nbar: alerts history --target over 90 days p99 {bar:.1f} ms < {BAR_MS:.0f} ms: {verdict}"
    )


if __name__ == "__main__":
    main()
