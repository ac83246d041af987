"""Reading the history for reports: a target's uptime from its rollups, the labels of alerts
from their stored ``fired`` events (to route them again: ``alert_events`` has no
receiver), and pruning old timeline events.  Every function takes the store's engine and
works on SQLite and PostgreSQL.

**Uptime** here is the share of successful checks: ``1 - failures / checks`` over the
window, from the rollups (a check is counted in the bucket of its start time).  The full
hours of a window come from the hour rollups (``1h``), its partial hours at both ends from
the minute rollups (``1m``): a minute bucket counts when it starts inside ``[since,
until)``, so the figure is exact to the minute.  Buckets still in the daemon's memory (the
current minute, the current hour's hour bucket) are not written yet: the minute rollups of
the current hour stand for it.  Minute rollups already past their retention are simply
missing: a window then lacks at most the hour at its older end.

A 90-day window reads at most 2,160 hour rows and 120 minute rows of one target, through
the primary key ``(target, resolution, bucket_start)``: two statements whatever the number
of windows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.lowlevel
import orjson
import sqlalchemy as sa

from pudimd.store.tables import alert_events, rollups
from pudimd.store.threaded import AsyncConnection, AsyncEngine

__all__ = ["PRUNE_BATCH", "WINDOWS", "Uptime", "fired_labels", "prune_events", "uptime"]

WINDOWS: tuple[tuple[str, int], ...] = (
    ("24h", 86_400),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
    ("90d", 90 * 86_400),
)
"""The uptime windows reported by default: (name, seconds)."""
PRUNE_BATCH = 5_000
"""Events deleted per transaction by :func:`prune_events`."""

_HOUR = 3600
_MINUTE = 60
_IN_CHUNK = 500  # values per "IN (...)"

# -- uptime ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Uptime:
    """Checks of one target in ``[since, until)`` and how many failed."""

    window: str
    since: float
    until: float
    checks: int
    failures: int

    @property
    def uptime(self) -> float | None:
        """Share of successful checks, 0 to 1; None without checks."""
        return None if self.checks == 0 else 1.0 - self.failures / self.checks


@dataclass(frozen=True, slots=True)
class _Plan:
    since: float
    first_hour: int
    """Start of the first full hour; > ``end_hour`` when the window has none."""
    minute_ranges: tuple[tuple[int, int], ...]


async def uptime(
    engine: AsyncEngine,
    target: str,
    until: float | None = None,
    windows: Sequence[tuple[str, int]] = WINDOWS,
) -> list[Uptime]:
    """Checks, failures and uptime of ``target`` over each window (name, seconds) ending
    at ``until`` (default now), in the order of ``windows``."""
    until = time.time() if until is None else float(until)
    end = math.ceil(until)  # bucket_start is whole seconds: "< 12.5" is "< 13"
    end_hour = math.floor(until / _HOUR) * _HOUR
    plans: list[_Plan] = []
    for _name, seconds in windows:
        if seconds <= 0:
            raise ValueError(f"an uptime window must be positive, got {seconds!r} seconds")
        since = until - seconds
        start = math.ceil(since)
        first_hour = math.ceil(since / _HOUR) * _HOUR
        if first_hour >= end_hour:  # no full hour inside: minutes only
            ranges: tuple[tuple[int, int], ...] = ((start, end),)
            first_hour = end_hour + _HOUR
        else:
            ranges = ((start, first_hour), (end_hour, end))
        plans.append(_Plan(since, first_hour, tuple((a, b) for a, b in ranges if a < b)))
    async with engine.connect() as conn:
        hours = await _hour_sums(conn, target, [p.first_hour for p in plans], end_hour)
        minutes = await _minute_sums(
            conn, target, sorted({r for p in plans for r in p.minute_ranges})
        )
    out: list[Uptime] = []
    for (name, _seconds), plan, (checks, failures) in zip(windows, plans, hours, strict=True):
        for minute_range in plan.minute_ranges:
            more_checks, more_failures = minutes.get(minute_range, (0, 0))
            checks += more_checks
            failures += more_failures
        out.append(Uptime(name, plan.since, until, checks, failures))
    return out


async def _hour_sums(
    conn: AsyncConnection, target: str, first_hours: list[int], end_hour: int
) -> list[tuple[int, int]]:
    """Per window, the sums of the hour buckets in ``[first_hour, end_hour)``: one scan of
    the longest window's hours, one sum per window."""
    useful = [h for h in first_hours if h < end_hour]
    if not useful:
        return [(0, 0)] * len(first_hours)
    c = rollups.c
    columns: list[Any] = []
    for i, first in enumerate(first_hours):
        inside = c.bucket_start >= first
        columns.append(sa.func.sum(sa.case((inside, c.count), else_=0)).label(f"c{i}"))
        columns.append(sa.func.sum(sa.case((inside, c.failures), else_=0)).label(f"f{i}"))
    query = sa.select(*columns).where(
        c.target == target,
        c.resolution == "1h",
        c.bucket_start >= min(useful),
        c.bucket_start < end_hour,
    )
    row = (await conn.execute(query)).one()
    return [(int(row[2 * i] or 0), int(row[2 * i + 1] or 0)) for i in range(len(first_hours))]


async def _minute_sums(
    conn: AsyncConnection, target: str, ranges: list[tuple[int, int]]
) -> dict[tuple[int, int], tuple[int, int]]:
    """The sums of the minute buckets in each range (each at most an hour): one statement."""
    if not ranges:
        return {}
    c = rollups.c
    parts = [
        sa.select(
            sa.literal(i, sa.Integer()).label("k"),
            sa.func.sum(c.count).label("checks"),
            sa.func.sum(c.failures).label("failures"),
        ).where(
            c.target == target,
            c.resolution == "1m",
            c.bucket_start >= start,
            c.bucket_start < end,
        )
        for i, (start, end) in enumerate(ranges)
    ]
    query = parts[0] if len(parts) == 1 else sa.union_all(*parts)
    found: dict[tuple[int, int], tuple[int, int]] = {}
    for row in await conn.execute(query):
        found[ranges[int(row.k)]] = (int(row.checks or 0), int(row.failures or 0))
    return found


# -- events ------------------------------------------------------------------------------


async def fired_labels(
    engine: AsyncEngine, fingerprints: Iterable[str]
) -> dict[str, dict[str, str]]:
    """The labels of each alert in ``fingerprints``, from its latest ``fired`` event
    written (one per past episode: an alert whose episodes were all pruned, or whose only
    episode is still held by the engine, is missing).  One statement per 500
    fingerprints, through the ``(fingerprint, at)`` index."""
    wanted = list(dict.fromkeys(fingerprints))
    e = alert_events.c
    found: dict[str, dict[str, str]] = {}
    async with engine.connect() as conn:
        for i in range(0, len(wanted), _IN_CHUNK):
            latest = (
                sa.select(sa.func.max(e.id))
                .where(e.fingerprint.in_(wanted[i : i + _IN_CHUNK]), e.kind == "fired")
                .group_by(e.fingerprint)
            )
            query = sa.select(e.fingerprint, e.detail).where(e.id.in_(latest))
            for row in await conn.execute(query):
                labels = orjson.loads(row.detail).get("labels")
                if isinstance(labels, dict) and labels:
                    found[row.fingerprint] = {str(k): str(v) for k, v in labels.items()}
    return found


# -- retention ---------------------------------------------------------------------------


async def prune_events(engine: AsyncEngine, before: float, *, batch: int = PRUNE_BATCH) -> int:
    """Delete the timeline events older than ``before`` (Unix seconds), ``batch`` per
    transaction (short write locks: SQLite has one writer), yielding between batches.
    Returns how many were deleted."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch!r}")
    e = alert_events.c
    total = 0
    while True:
        oldest = sa.select(e.id).where(e.at < before).limit(batch)
        async with engine.begin() as conn:
            outcome = await conn.execute(sa.delete(alert_events).where(e.id.in_(oldest)))
        deleted = int(outcome.rowcount)
        total += deleted
        if deleted < batch:
            return total
        await anyio.lowlevel.checkpoint()
