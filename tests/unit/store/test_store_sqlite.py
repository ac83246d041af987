"""The store against real SQLite files: schema, writes, reads, rollups, retention."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from pudimd.results import ProbeResult
from pudimd.store import Store, StoreError, queries
from pudimd.store.engine import sync_url
from pudimd.store.errors import mask_url
from pudimd.store.migrate import head_revision
from pudimd.store.tables import metadata

pytestmark = pytest.mark.anyio

HOUR = 3600.0


def sqlite_rows(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


async def query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return await anyio.to_thread.run_sync(sqlite_rows, path, sql, *params)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "pudimd.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite+aiosqlite:///{db_path}")
    yield store
    await store.close()


def past_hour() -> float:
    """Start of an hour well in the past (every bucket in it is closed)."""
    return (math.floor(time.time() / HOUR) - 2) * HOUR


def result(ts: float, duration: float = 0.01, success: bool = True, **kw: Any) -> ProbeResult:
    return ProbeResult(success=success, duration=duration, timestamp=ts, **kw)


# -- opening -------------------------------------------------------------------


async def test_open_creates_directory_tables_and_turns_on_wal(store: Store, db_path: Path) -> None:
    tables = {row[0] for row in await query(db_path, "SELECT name FROM sqlite_master")}
    assert {"results", "rollups", "alembic_version"} <= tables
    assert {"ix_results_target_ts", "ix_results_ts", "ix_rollups_bucket_start"} <= tables
    assert await query(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert await query(db_path, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


def compare_schema(path: Path) -> list[Any]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


async def test_migrated_schema_matches_the_tables(store: Store, db_path: Path) -> None:
    assert await anyio.to_thread.run_sync(compare_schema, db_path) == []


async def test_reopening_an_existing_database_keeps_its_rows(store: Store, db_path: Path) -> None:
    store.enqueue("web", "http", result(time.time()))
    await store.flush()
    again = await Store.open(f"sqlite+aiosqlite:///{db_path}")
    try:
        assert len(await again.results("web")) == 1
    finally:
        await again.close()


@pytest.mark.parametrize(
    "url",
    [
        "nosuchdriver://localhost/x",
        "this is not a url",
        "mysql+aiomysql://pudimd:hunter2secret@127.0.0.1:1/pudimd",
        "sqlite:///{tmp}/a-file/pudimd.db",
        "sqlite+aiosqlite:///{tmp}/a-file/pudimd.db",
        "postgresql://pudimd:hunter2secret@127.0.0.1:1/pudimd",
        "postgresql+asyncpg://pudimd:hunter2secret@127.0.0.1:1/pudimd",
    ],
)
async def test_open_of_an_unusable_url_raises_a_one_line_store_error(
    tmp_path: Path, url: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    url = url.format(tmp=tmp_path)
    with pytest.raises(StoreError) as caught:
        await Store.open(url)
    message = str(caught.value)
    assert message.startswith("cannot open database ")
    assert "\n" not in message
    assert "hunter2secret" not in message
    assert "Traceback" not in message
    assert message.split(": ", 1)[1].strip()  # a reason follows


async def test_an_async_only_driver_is_refused_by_name() -> None:
    with pytest.raises(
        StoreError, match=r"mysql\+aiomysql is an async driver; name a synchronous one"
    ):
        await Store.open("mysql+aiomysql://pudimd@127.0.0.1:1/pudimd")


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("sqlite:///x.db", "sqlite+pysqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+pysqlite:///x.db"),
        ("postgresql://h/db", "postgresql+psycopg://h/db"),
        ("postgresql+asyncpg://h/db", "postgresql+psycopg://h/db"),
        ("postgresql+psycopg2://h/db", "postgresql+psycopg2://h/db"),
        ("mysql+pymysql://h/db", "mysql+pymysql://h/db"),
    ],
)
def test_urls_get_the_synchronous_driver(given: str, used: str) -> None:
    assert sync_url(make_url(given)).render_as_string() == used


async def test_open_error_masks_the_password(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"postgresql\+asyncpg://pudimd:\*\*\*@127\.0\.0\.1:1/"):
        await Store.open("postgresql+asyncpg://pudimd:hunter2secret@127.0.0.1:1/pudimd")


# -- writing and reading -------------------------------------------------------


async def test_enqueue_then_flush_writes_every_column(store: Store, db_path: Path) -> None:
    now = time.time()
    store.enqueue(
        "web",
        "http",
        ProbeResult(
            success=False,
            duration=0.25,
            message="HTTP 503",
            status=503,
            phases={"dns": 0.01, "connect": 0.02},
            metrics={"content_length": 12.0},
            timestamp=now,
        ),
    )
    store.enqueue("web", "http", result(now + 1))
    assert store.pending == 2
    await store.flush()
    assert store.pending == 0
    newest, oldest = await store.results("web")
    assert newest.ts == now + 1
    assert (newest.status, newest.message, newest.phases, newest.metrics) == (None, "", {}, {})
    assert oldest.success is False
    assert oldest.duration == 0.25
    assert oldest.status == "503"
    assert oldest.message == "HTTP 503"
    assert oldest.phases == {"dns": 0.01, "connect": 0.02}
    assert oldest.metrics == {"content_length": 12.0}
    assert oldest.target == "web"
    assert oldest.probe == "http"
    raw = await query(db_path, "SELECT phases, metrics FROM results WHERE status IS NULL")
    assert raw == [(None, None)]  # empty dicts are not stored as JSON


async def test_results_filters_by_target_and_time_newest_first(store: Store) -> None:
    base = time.time() - 100
    for i in range(10):
        store.enqueue("a", "tcp", result(base + i))
        store.enqueue("b", "tcp", result(base + i))
    await store.flush()
    rows = await store.results("a", since=base + 2, until=base + 7)
    assert [r.ts - base for r in rows] == [6, 5, 4, 3, 2]
    assert [r.ts - base for r in await store.results("a", limit=3)] == [9, 8, 7]
    assert await store.results("nobody") == []


async def test_zero_timestamp_means_now_and_bad_values_are_cleaned(store: Store) -> None:
    before = time.time()
    store.enqueue(
        "t\x00", "http", ProbeResult(False, duration=float("nan"), message="a\x00b\udc80")
    )
    await store.flush()
    (row,) = await store.results("t\ufffd")
    assert row.ts >= before
    assert row.duration == 0.0
    assert row.message == "a\ufffdb?"


# -- rollups -------------------------------------------------------------------


async def test_rollups_per_minute_count_failures_and_latency(store: Store) -> None:
    hour = past_hour()
    # minute 0: 1..100 ms, every tenth a failure; minute 1: 5 results of 1 s
    for ms in range(1, 101):
        store.enqueue("web", "http", result(hour + 0.5 * ms / 100, ms / 1000, ms % 10 != 0))
    for _ in range(5):
        store.enqueue("web", "http", result(hour + 61, 1.0))
    store.enqueue("other", "http", result(hour + 1, 7.0))
    await store.flush()

    first, second = await store.rollups("web", "1m")
    assert (first.resolution, first.bucket_start, first.count, first.failures) == (
        "1m",
        int(hour),
        100,
        10,
    )
    assert first.latency_p50 == pytest.approx(0.050, rel=0.02)
    assert first.latency_p95 == pytest.approx(0.095, rel=0.02)
    assert first.latency_max == 0.1
    assert (second.bucket_start, second.count, second.failures) == (int(hour) + 60, 5, 0)
    assert second.latency_p50 == pytest.approx(1.0, rel=0.02)
    assert second.latency_max == 1.0


async def test_rollups_per_hour_cover_every_minute(store: Store) -> None:
    hour = past_hour()
    durations = [(minute + 1) / 100 for minute in range(60)]  # 10 ms .. 600 ms
    for minute, duration in enumerate(durations):
        store.enqueue("web", "http", result(hour + 60 * minute + 5, duration, minute % 3 != 0))
    store.enqueue("web", "http", result(hour + HOUR + 5, 9.0))  # the next hour
    await store.flush()

    hours = await store.rollups("web", "1h")
    assert [(h.bucket_start, h.count) for h in hours] == [(int(hour), 60), (int(hour + HOUR), 1)]
    h = hours[0]
    assert h.failures == 20
    assert h.latency_p50 == pytest.approx(sorted(durations)[29], rel=0.02)
    assert h.latency_p95 == pytest.approx(sorted(durations)[56], rel=0.02)
    assert h.latency_max == 0.6
    assert len(await store.rollups("web", "1m", since=hour, until=hour + HOUR)) == 60
    assert len(await store.rollups("web", "1m", since=hour + 600, until=hour + 1200)) == 10


async def test_a_bucket_written_twice_is_merged(store: Store) -> None:
    minute = past_hour() + 600
    for ms in range(1, 51):
        store.enqueue("web", "http", result(minute + 1, ms / 1000))
    await store.flush()
    for ms in range(51, 101):
        store.enqueue("web", "http", result(minute + 2, ms / 1000, success=False))
    await store.flush()

    (rollup,) = await store.rollups("web", "1m")
    assert (rollup.count, rollup.failures) == (100, 50)
    assert rollup.latency_p50 == pytest.approx(0.050, rel=0.02)
    assert rollup.latency_p95 == pytest.approx(0.095, rel=0.02)
    assert rollup.latency_max == 0.1
    assert rollup.sketch.count == 100
    (hour,) = await store.rollups("web", "1h")
    assert hour.count == 100


async def test_a_partial_bucket_merges_across_a_restart(db_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{db_path}"
    minute = past_hour() + 120
    first = await Store.open(url)
    first.enqueue("web", "http", result(minute, 0.2))
    await first.flush()
    await first.close()
    second = await Store.open(url)
    try:
        second.enqueue("web", "http", result(minute + 30, 0.4, success=False))
        await second.flush()
        (rollup,) = await second.rollups("web", "1m")
    finally:
        await second.close()
    assert (rollup.count, rollup.failures, rollup.latency_max) == (2, 1, 0.4)


async def test_rollups_rejects_an_unknown_resolution(store: Store) -> None:
    with pytest.raises(ValueError, match="resolution"):
        await store.rollups("web", "5m")


# -- retention -----------------------------------------------------------------


async def test_retention_deletes_old_rows_and_keeps_new_ones(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "DELETE_CHUNK", 7)  # several delete transactions
    store = await Store.open(
        f"sqlite+aiosqlite:///{db_path}",
        raw_retention=timedelta(days=7),
        rollup_retention=timedelta(days=90),
    )
    try:
        now = time.time()
        for i in range(20):
            store.enqueue("web", "http", result(now - 8 * 86400 + i))  # too old
        for i in range(5):
            store.enqueue("web", "http", result(now - 6 * 86400 + i))  # kept
        store.enqueue("web", "http", result(now - 91 * 86400))  # old raw row and rollups
        await store.flush()
        assert await store.apply_retention(now) == (21, 2)
        assert len(await store.results("web")) == 5
        minutes = await store.rollups("web", "1m")
        assert all(r.bucket_start >= now - 90 * 86400 for r in minutes)
        assert sum(r.count for r in minutes) == 25
        assert await store.apply_retention(now) == (0, 0)
    finally:
        await store.close()


async def test_minute_rollups_go_sooner_than_hour_rollups(db_path: Path) -> None:
    store = await Store.open(
        f"sqlite+aiosqlite:///{db_path}",
        raw_retention=timedelta(days=1),
        rollup_retention=timedelta(days=90),
        minute_rollup_retention=timedelta(days=7),
    )
    try:
        now = time.time()
        store.enqueue("web", "http", result(now - 30 * 86400))  # minute gone, hour kept
        store.enqueue("web", "http", result(now - 3 * 86400))  # both kept
        await store.flush()
        assert await store.apply_retention(now) == (2, 1)
        minutes = await store.rollups("web", "1m")
        hours = await store.rollups("web", "1h")
        assert [m.bucket_start > now - 7 * 86400 for m in minutes] == [True]
        assert len(hours) == 2 and sum(h.count for h in hours) == 2
    finally:
        await store.close()


async def test_a_failing_read_raises_a_one_line_store_error(store: Store, db_path: Path) -> None:
    await query(db_path, "ALTER TABLE results RENAME TO results_away")
    with pytest.raises(StoreError, match=r"^cannot read from database .*no such table") as caught:
        await store.results("web")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+asyncpg://u:pw@db:5432/x", "postgresql+asyncpg://u:***@db:5432/x"),
        ("postgresql+asyncpg://u@db/x?password=pw", "postgresql+asyncpg://u@db/x?password=***"),
        ("not a url://u:pw@host", "not a url://u:***@host"),
        (
            "sqlite+aiosqlite:////var/lib/pudimd/pudimd.db",
            "sqlite+aiosqlite:////var/lib/pudimd/pudimd.db",
        ),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked
