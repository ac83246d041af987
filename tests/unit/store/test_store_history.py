"""History queries against a real SQLite file, written through the real store and alerting
writers: uptime from the rollups (hours in the middle, minutes at the edges), the labels
of alerts from their written fired events, pruning the timeline.

The ``check_*`` scenarios take a store and run unchanged on PostgreSQL
(tests/integration/test_history_postgres.py)."""

from __future__ import annotations

import math
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pudimd.results import ProbeResult
from pudimd.store import Store
from pudimd.store import history as h
from pudimd.store.alerting import AlertingDB
from pudimd.store.tables import alert_events, rollups

pytestmark = pytest.mark.anyio

HOUR = 3600
T0 = 1_800_000_000  # a whole hour
UNTIL = T0 + 37 * 60 + 15.5  # mid-minute, mid-hour
WINDOWS = (*h.WINDOWS, ("2h", 7200), ("45m", 2700))  # one full hour; none


def _results() -> list[tuple[str, float, bool]]:
    """(target, start, success): one check every few minutes over 9 days around UNTIL, and
    checks on each side of every window's edges."""
    rng = random.Random(7)
    out: list[tuple[str, float, bool]] = []
    ts = UNTIL - 9 * 86_400
    while ts < UNTIL + HOUR:
        out.append(("web", ts, rng.random() < 0.9))
        out.append(("other", ts + 1, False))
        ts += rng.uniform(100, 500)
    for _name, seconds in WINDOWS:
        for edge in (UNTIL - seconds, UNTIL):
            for delta in (-61, -1, -0.2, 0, 0.2, 1, 59, 61, 3599):
                out.append(("web", edge + delta, rng.random() < 0.5))
    return out


RESULTS = _results()


def expected(target: str, since: float, until: float) -> tuple[int, int]:
    """What the rollups must say: checks whose minute bucket starts in [since, until)."""
    found = [
        ok for t, ts, ok in RESULTS if t == target and since <= math.floor(ts / 60) * 60 < until
    ]
    return len(found), found.count(False)


async def write_results(store: Store) -> None:
    for target, ts, ok in RESULTS:
        store.enqueue(target, "http", ProbeResult(success=ok, duration=0.01, timestamp=ts))
    await store.flush()


async def check_uptime(store: Store) -> None:
    await write_results(store)
    found = await h.uptime(store.engine, "web", UNTIL, WINDOWS)
    assert [w.window for w in found] == [name for name, _ in WINDOWS]
    for window, (_name, seconds) in zip(found, WINDOWS, strict=True):
        assert (window.since, window.until) == (UNTIL - seconds, UNTIL)
        assert (window.checks, window.failures) == expected("web", UNTIL - seconds, UNTIL), window
        assert window.uptime == pytest.approx(1 - window.failures / window.checks)
    assert found[0].checks > 200 and 0 < found[0].failures < found[0].checks
    other = await h.uptime(store.engine, "other", UNTIL)
    assert other[1].checks == expected("other", UNTIL - 7 * 86_400, UNTIL)[0] > 0
    assert all(w.uptime == 0.0 for w in other)
    nobody = await h.uptime(store.engine, "nobody", UNTIL)
    assert [(w.checks, w.uptime) for w in nobody] == [(0, None)] * 4


# -- alert events ------------------------------------------------------------------------

PING = {"alertname": "PingDown", "target": "web1", "severity": "warning"}


def event(fp: str, at: float, kind: str, **detail: Any) -> dict[str, Any]:
    return {
        "fingerprint": fp,
        "at": at,
        "kind": kind,
        "alertname": "x",
        "target": "t",
        "actor": None,
        "interface": None,
        "detail": detail,
    }


async def check_fired_labels(db: AlertingDB) -> None:
    """The labels of each alert from its latest written fired event, for more alerts than
    one IN (...) holds."""
    old = {**PING, "version": "1"}
    rows = [
        event("ping", T0, "fired", labels=old),
        event("ping", T0 + 10, "resolved"),
        event("ping", T0 + 20, "fired", labels=PING),
        event("ping", T0 + 30, "resolved"),
        event("acked", T0, "acknowledged"),  # no fired event written
        event("bare", T0, "fired"),  # a fired event without labels
    ]
    rows += [event(f"{i:016x}", T0 + i, "fired", labels={"n": str(i)}) for i in range(1200)]
    await db.write_alerts([], events=rows)
    wanted = ["ping", "acked", "bare", "nobody", *(f"{i:016x}" for i in range(1200))]
    found = await h.fired_labels(db.engine, wanted)
    assert found.pop("ping") == PING
    assert found == {f"{i:016x}": {"n": str(i)} for i in range(1200)}
    assert await h.fired_labels(db.engine, []) == {}


async def check_prune_events(db: AlertingDB) -> None:
    await db.write_alerts(
        [], events=[event(f"{i % 7:016x}", T0 + i, "commented") for i in range(50)]
    )
    assert await h.prune_events(db.engine, T0 + 23, batch=4) == 23
    assert await h.prune_events(db.engine, T0 + 23, batch=4) == 0
    async with db.engine.connect() as conn:
        left = list((await conn.execute(sa.select(alert_events.c.at))).scalars())
    assert sorted(left) == [T0 + i for i in range(23, 50)]
    with pytest.raises(ValueError, match="batch"):
        await h.prune_events(db.engine, T0, batch=0)


# -- on SQLite ---------------------------------------------------------------------------


@pytest.fixture
async def store(migrated: Path, tmp_path: Path) -> AsyncIterator[Store]:
    path = tmp_path / "pudimd.db"
    shutil.copyfile(migrated, path)
    store = await Store.open(f"sqlite:///{path}")
    yield store
    await store.close()


@pytest.fixture
async def db(store: Store) -> AsyncIterator[AlertingDB]:
    db = AlertingDB(store.engine)
    yield db
    db.close()


async def test_uptime_sums_hour_rollups_and_minute_rollups_at_the_edges(store: Store) -> None:
    await check_uptime(store)


async def test_uptime_reads_hours_in_the_middle_and_minutes_only_at_the_edges(
    store: Store,
) -> None:
    # Rollups that disagree on purpose: a window's full hours must come from the hour
    # rows and its edges from the minute rows, nothing counted twice.
    hour0 = T0 - 3 * HOUR  # the 2h window is [T0 - 1h22m44.5s, T0 + 37m15.5s)
    rows = [
        ("1h", hour0 + HOUR, 1000, 1),  # before the window's first full hour
        ("1h", hour0 + 2 * HOUR, 100, 10),  # its only full hour
        ("1h", T0, 7000, 7),  # the current hour: minutes stand for it
        ("1m", T0 - 4980, 5, 5),  # starts 15.5 s before since: out
        ("1m", T0 - 4920, 2, 1),  # old edge, in
        ("1m", hour0 + 2 * HOUR + 60, 999, 999),  # inside the full hour: not read
        ("1m", T0, 3, 0),  # recent edge
        ("1m", T0 + 37 * 60, 4, 4),  # the minute of until (starts before it)
        ("1m", T0 + 38 * 60, 50, 50),  # after until
    ]
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(rollups),
            [
                {
                    "target": "web",
                    "resolution": res,
                    "bucket_start": start,
                    "count": count,
                    "failures": failures,
                    "latency_p50": 0.0,
                    "latency_p95": 0.0,
                    "latency_max": 0.0,
                    "sketch": "{}",
                }
                for res, start, count, failures in rows
            ],
        )
    two_hours, minutes = await h.uptime(store.engine, "web", UNTIL, [("2h", 7200), ("45m", 2700)])
    assert (two_hours.checks, two_hours.failures) == (2 + 100 + 3 + 4, 1 + 10 + 0 + 4)
    assert (minutes.checks, minutes.failures) == (3 + 4, 4)
    assert minutes.uptime == pytest.approx(3 / 7)
    with pytest.raises(ValueError, match="positive"):
        await h.uptime(store.engine, "web", UNTIL, [("0s", 0)])


async def test_fired_labels(db: AlertingDB) -> None:
    await check_fired_labels(db)


async def test_prune_events_deletes_in_batches(db: AlertingDB) -> None:
    await check_prune_events(db)
