"""``GET /api/v1/status``: what an operator or a monitor polls to see that pudimd is well.

Everything comes from memory but the database round trip (``SELECT 1`` under a 2 s
timeout), so the endpoint stays cheap to poll:

- ``version``, ``started_at``, ``uptime_seconds``;
- ``config``: the version id applied, and the last (re)load: when, from where, whether it
  worked and its error;
- ``targets`` and checks ``in_flight``;
- ``plugins``: name, kinds, types, distribution version, load error, disabled, and the
  errors counted per hook since start (``pudimd_plugin_errors_total``);
- ``scheduler.lateness``: how late checks started, from the
  ``pudimd_scheduler_lateness_seconds`` histogram: p50, p99 and the largest bucket seen
  (upper bounds of the histogram buckets), since start and over the last few minutes
  (between this call and an earlier one at least a minute before);
- ``database``: dialect, round trip seconds (or the error), results waiting for the
  writer and results dropped because its buffer was full;
- ``alerting``: alerts firing, notifications waiting in the outbox and the age of the
  oldest;
- ``events``: live stream subscribers and the last event id.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa
from aiohttp import web

from pudimd import __version__
from pudimd.api.problems import answers_problems
from pudimd.events import event_time

if TYPE_CHECKING:
    from prometheus_client import Histogram

    from pudimd.daemon import Daemon
    from pudimd.store import Store

__all__ = ["DB_TIMEOUT", "status_routes"]

DB_TIMEOUT = 2.0
"""Seconds the database round trip may take before the status says it timed out."""
_RECENT_MIN = 60.0  # a recent window spans at least this many seconds...
_RECENT_MAX = 600.0  # ...and snapshots older than this are forgotten
_SNAPSHOT_EVERY = 10.0

Buckets = list[tuple[float, float]]
"""A histogram's cumulative buckets: (upper bound, observations at or below it)."""


def _buckets(histogram: Histogram) -> Buckets:
    return [
        (float(sample.labels["le"]), sample.value)
        for metric in histogram.collect()
        for sample in metric.samples
        if sample.name.endswith("_bucket")
    ]


def quantiles(buckets: Buckets) -> dict[str, Any]:
    """p50, p99 and the largest occupied bucket of cumulative ``buckets``, as bucket upper
    bounds (None without observations; ``+Inf`` as None too, beyond the last bound)."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return {"checks": 0, "p50": None, "p99": None, "max": None}

    def bound(count: float) -> float | None:
        for le, seen in buckets:
            if seen >= count:
                return le if math.isfinite(le) else None
        return None

    previous = 0.0
    largest: float | None = None
    for le, seen in buckets:
        if seen > previous:
            largest = le if math.isfinite(le) else None
        previous = seen
    return {
        "checks": int(total),
        "p50": bound(total * 0.5),
        "p99": bound(total * 0.99),
        "max": largest,
    }


class _Lateness:
    """Recent lateness: snapshots of the histogram taken when the status is asked for."""

    def __init__(self) -> None:
        self._snapshots: deque[tuple[float, Buckets]] = deque()

    def report(self, histogram: Histogram) -> dict[str, Any]:
        now = time.monotonic()
        current = _buckets(histogram)
        snapshots = self._snapshots
        while snapshots and now - snapshots[0][0] > _RECENT_MAX:
            snapshots.popleft()
        if not snapshots or now - snapshots[-1][0] >= _SNAPSHOT_EVERY:
            snapshots.append((now, current))
        recent: dict[str, Any] | None = None
        usable = [s for s in snapshots if now - s[0] >= _RECENT_MIN]
        if usable:
            at, old = usable[-1]
            delta = [
                (le, seen - before) for (le, seen), (_, before) in zip(current, old, strict=True)
            ]
            recent = quantiles(delta) | {"window_seconds": round(now - at, 1)}
        return {"since_start": quantiles(current), "recent": recent}


async def _database(store: Store) -> dict[str, Any]:
    engine = store.engine
    out: dict[str, Any] = {
        "dialect": engine.dialect.name,
        "url": store.url,
        "ok": False,
        "round_trip_seconds": None,
        "error": None,
        "writer_pending": store.pending,
        "writer_dropped": store.dropped,
    }
    started = time.perf_counter()
    try:
        with anyio.fail_after(DB_TIMEOUT):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
    except TimeoutError:
        out["error"] = f"no answer within {DB_TIMEOUT:g}s"
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    else:
        out["ok"] = True
        out["round_trip_seconds"] = round(time.perf_counter() - started, 6)
    return out


class _StatusAPI:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.lateness = _Lateness()

    def _plugins(self) -> list[dict[str, Any]]:
        daemon = self.daemon
        errors: dict[str, dict[str, int]] = defaultdict(dict)
        for metric in daemon.metrics.plugin_errors.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    hook = sample.labels["hook"]
                    errors[sample.labels["plugin"]][hook] = int(sample.value)
        out = []
        for info in sorted(daemon.host.infos.values(), key=lambda i: i.name):
            hook_errors = errors.get(info.name, {})
            out.append(
                {
                    "name": info.name,
                    "kinds": info.kinds,
                    "types": info.types,
                    "distribution": info.distribution,
                    "version": info.version,
                    "disabled": info.disabled,
                    "error": info.error,
                    "errors": sum(hook_errors.values()),
                    "errors_by_hook": hook_errors,
                }
            )
        return out

    def _alerting(self) -> dict[str, Any] | None:
        alerting = self.daemon.alerting
        if alerting is None:
            return None
        now = time.time()
        firing = sum(1 for alert in alerting.all_alerts() if not alert.resolved(now))
        return {
            "alerts": alerting.alert_count(),
            "firing": firing,
            "outbox_depth": alerting.outbox.depth,
            "outbox_oldest_seconds": round(alerting.outbox.oldest_age(), 3),
        }

    async def status(self, request: web.Request) -> web.StreamResponse:
        daemon = self.daemon
        now = time.time()
        version = daemon.config_version
        reload = daemon.events.last_reload
        scheduler = daemon.scheduler
        body: dict[str, Any] = {
            "version": __version__,
            "ready": daemon.ready,
            "started_at": event_time(daemon.started_at),
            "uptime_seconds": round(now - daemon.started_at, 3),
            "config": {
                "file": str(daemon.config_path),
                "version": None if version is None else version.id,
                "last_reload": None
                if reload is None
                else {
                    "at": event_time(reload.at),
                    "ok": reload.ok,
                    "source": reload.source,
                    "error": reload.error,
                    "version": reload.version,
                },
            },
            "targets": 0 if scheduler is None else len(scheduler.jobs),
            "in_flight": 0 if scheduler is None else scheduler.in_flight,
            "scheduler": {"lateness": self.lateness.report(daemon.metrics.lateness)},
            "plugins": self._plugins(),
            "database": None if daemon.store is None else await _database(daemon.store),
            "alerting": self._alerting(),
            "events": {
                "subscribers": daemon.events.subscribers,
                "last_id": daemon.events.last_id,
            },
        }
        return web.json_response(body)


def status_routes(daemon: Daemon) -> list[web.RouteDef]:
    api = _StatusAPI(daemon)
    return [web.get("/api/v1/status", answers_problems(api.status))]
