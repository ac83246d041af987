"""The store against the real PostgreSQL server on this machine (127.0.0.1:5432, trust
auth, user postgres), in a database created for the test and dropped afterwards."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pudimd.results import ProbeResult
from pudimd.store import Store, StoreError
from pudimd.store.tables import metadata
from tests.integration.postgres import scratch_database

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with scratch_database("pudimd_test") as url:
        yield url


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    store = await Store.open(pg_url)
    yield store
    await store.close()


def past_minute() -> float:
    return (math.floor(time.time() / 3600) - 2) * 3600 + 600


async def test_migrations_create_the_schema_of_the_tables(store: Store) -> None:
    async with store._engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert diff == []


async def test_opening_twice_and_concurrently_migrates_once(pg_url: str) -> None:
    stores: list[Store] = []

    async def open_one() -> None:
        stores.append(await Store.open(pg_url))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(open_one)
    for store in stores:
        await store.close()
    assert len(stores) == 3


async def test_writes_and_reads_results(store: Store) -> None:
    now = time.time()
    store.enqueue(
        "web",
        "http",
        ProbeResult(
            success=False,
            duration=0.5,
            message="bad \x00 gateway",
            status=502,
            phases={"connect": 0.1},
            metrics={"content_length": 3.0},
            timestamp=now,
        ),
    )
    for i in range(1, 6):
        store.enqueue("web", "http", ProbeResult(success=True, duration=0.01, timestamp=now + i))
    await store.flush()
    rows = await store.results("web", since=now, until=now + 3)
    assert [r.ts for r in rows] == [now + 2, now + 1, now]
    oldest = rows[-1]
    assert (oldest.success, oldest.status, oldest.message) == (False, "502", "bad \ufffd gateway")
    assert (oldest.phases, oldest.metrics) == ({"connect": 0.1}, {"content_length": 3.0})
    assert len(await store.results("web", limit=4)) == 4


async def test_the_writer_batches_rows(pg_url: str) -> None:
    written: list[int] = []
    store = await Store.open(pg_url, batch_size=500, batch_interval=3600, on_written=written.append)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            for i in range(1200):
                store.enqueue(f"t{i % 10}", "tcp", ProbeResult(success=True, duration=0.001))
            with anyio.fail_after(10):
                while sum(written) < 1200:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        assert written == [1200]  # all pending rows, one transaction
        assert len(await store.results("t3")) == 120
    finally:
        await store.close()


async def test_rollup_upsert_merges_a_bucket_written_twice(store: Store) -> None:
    minute = past_minute()
    for ms in range(1, 51):
        store.enqueue("web", "http", ProbeResult(True, ms / 1000, timestamp=minute + 1))
    await store.flush()
    for ms in range(51, 101):
        store.enqueue("web", "http", ProbeResult(False, ms / 1000, timestamp=minute + 2))
    await store.flush()
    (rollup,) = await store.rollups("web", "1m", since=minute - 0.5, until=minute + 60)
    assert (rollup.bucket_start, rollup.count, rollup.failures) == (int(minute), 100, 50)
    assert rollup.latency_p50 == pytest.approx(0.050, rel=0.02)
    assert rollup.latency_p95 == pytest.approx(0.095, rel=0.02)
    assert rollup.latency_max == 0.1
    (hour,) = await store.rollups("web", "1h")
    assert (hour.count, hour.failures) == (100, 50)


async def test_retention_deletes_old_rows_and_keeps_new_ones(store: Store) -> None:
    now = time.time()
    for days in (100, 8, 1):
        store.enqueue("web", "http", ProbeResult(True, 0.1, timestamp=now - days * 86400))
    await store.flush()
    assert await store.apply_retention(now) == (2, 2)
    assert [round((now - r.ts) / 86400) for r in await store.results("web")] == [1]
    assert len(await store.rollups("web", "1h")) == 2


async def test_an_unreachable_server_gives_a_one_line_store_error() -> None:
    with pytest.raises(StoreError) as caught:
        await Store.open("postgresql+asyncpg://postgres:s3cretpass@127.0.0.1:1/pudimd")
    message = str(caught.value)
    assert message.startswith("cannot open database postgresql+asyncpg://postgres:***@127.0.0.1:1/")
    assert "\n" not in message
    assert "s3cretpass" not in message


async def test_a_missing_database_gives_a_one_line_store_error(pg_url: str) -> None:
    url = pg_url.rsplit("/", 1)[0] + "/pudimd_no_such_database"
    with pytest.raises(StoreError, match='database "pudimd_no_such_database" does not exist'):
        await Store.open(url)
