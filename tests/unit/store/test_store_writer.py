"""The writer task (Store.run) against real SQLite files: batching, rollup buckets,
retention, cancellation and failed writes."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from pudimd.results import ProbeResult
from pudimd.store import Rollup, Store, StoreError
from pudimd.store import store as store_module

pytestmark = pytest.mark.anyio

OpenStore = Callable[..., Awaitable[Store]]


class Recorder:
    """on_written / on_error callbacks that remember their calls."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.errors: list[Exception] = []

    def on_written(self, n: int) -> None:
        self.written.append(n)

    def on_error(self, exc: Exception) -> None:
        self.errors.append(exc)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'pudimd.db'}"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def open_store(url: str, recorder: Recorder) -> AsyncIterator[OpenStore]:
    opened: list[Store] = []

    async def open_store(**kwargs: Any) -> Store:
        store = await Store.open(
            url, on_written=recorder.on_written, on_error=recorder.on_error, **kwargs
        )
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


async def sql(url: str, statement: str) -> None:
    """Run ``statement`` on the database file behind the store's back."""

    def run() -> None:
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            conn.execute(statement)
        conn.close()

    await anyio.to_thread.run_sync(run)


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


def result(ts: float | None = None, duration: float = 0.01) -> ProbeResult:
    return ProbeResult(success=True, duration=duration, timestamp=ts or time.time())


async def test_a_full_batch_is_written_at_once_in_one_transaction(
    open_store: OpenStore, recorder: Recorder
) -> None:
    store = await open_store(batch_interval=3600, batch_size=100)
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        for i in range(250):
            store.enqueue(f"target-{i % 7}", "http", result())
        await eventually(lambda: sum(recorder.written) == 250)  # long before the interval
        tg.cancel_scope.cancel()
    assert recorder.written == [250]  # everything pending, one transaction
    assert len(await store.results("target-0")) == 36


async def test_a_backlog_is_written_in_bounded_transactions(
    open_store: OpenStore, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_TRANSACTION_ROWS", 100)
    store = await open_store(batch_interval=3600, batch_size=100)
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        for i in range(250):
            store.enqueue(f"target-{i % 7}", "http", result())
        await eventually(lambda: sum(recorder.written) == 250)
        tg.cancel_scope.cancel()
    assert recorder.written == [100, 100, 50]


async def test_rows_are_written_every_batch_interval(
    open_store: OpenStore, recorder: Recorder
) -> None:
    store = await open_store(batch_interval=0.05)
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        for _ in range(3):
            store.enqueue("web", "http", result())
        await eventually(lambda: recorder.written == [3])
        store.enqueue("web", "http", result())
        await eventually(lambda: recorder.written == [3, 1])
        assert store.pending == 0
        tg.cancel_scope.cancel()


async def test_closed_rollup_buckets_are_written_while_running(
    open_store: OpenStore,
) -> None:
    store = await open_store(batch_interval=0.05)
    past_minute = (math.floor(time.time() / 60) - 3) * 60
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        store.enqueue("web", "http", result(past_minute + 1, 0.5))
        store.enqueue("web", "http", result(past_minute + 2, 1.5))

        async def written() -> list[Rollup]:
            return await store.rollups("web", "1m")

        with anyio.fail_after(5):
            while not (rollups := await written()):
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    (rollup,) = rollups
    assert (rollup.bucket_start, rollup.count, rollup.latency_max) == (past_minute, 2, 1.5)


async def test_cancelling_the_writer_flushes_pending_rows_and_partial_buckets(
    open_store: OpenStore, recorder: Recorder
) -> None:
    store = await open_store(batch_interval=3600)
    now = time.time()
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        for i in range(10):
            store.enqueue("web", "http", result(now, 0.1 * (i + 1)))
        await anyio.sleep(0.05)
        assert recorder.written == []
        tg.cancel_scope.cancel()
    assert recorder.written == [10]
    assert len(await store.results("web")) == 10
    (minute,) = await store.rollups("web", "1m")  # the current, unfinished minute
    assert (minute.count, minute.latency_max) == (10, 1.0)
    (hour,) = await store.rollups("web", "1h")
    assert hour.count == 10


async def test_a_failed_write_keeps_the_rows_and_retries(
    url: str, open_store: OpenStore, recorder: Recorder
) -> None:
    store = await open_store(batch_interval=0.05)
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        await sql(url, "ALTER TABLE results RENAME TO results_away")
        for _ in range(5):
            store.enqueue("web", "http", result())
        await eventually(lambda: len(recorder.errors) >= 2)  # it tried, and tried again
        assert "no such table" in str(recorder.errors[0])
        assert store.pending == 5
        assert recorder.written == []
        await sql(url, "ALTER TABLE results_away RENAME TO results")
        await eventually(lambda: recorder.written == [5])
        tg.cancel_scope.cancel()
    assert len(await store.results("web")) == 5


async def test_flush_raises_store_error_and_keeps_rows_when_the_write_fails(
    url: str, open_store: OpenStore
) -> None:
    store = await open_store()
    minute = (math.floor(time.time() / 60) - 5) * 60
    store.enqueue("web", "http", result(minute, 0.3))
    await sql(url, "ALTER TABLE rollups RENAME TO rollups_away")
    with pytest.raises(StoreError, match=r"cannot write to database .*no such table"):
        await store.flush()
    assert store.pending == 1
    await sql(url, "ALTER TABLE rollups_away RENAME TO rollups")
    await store.flush()
    assert len(await store.results("web")) == 1
    (rollup,) = await store.rollups("web", "1m")
    assert rollup.count == 1  # the buckets were kept too, and written once


async def test_a_full_buffer_drops_new_rows_but_still_counts_them_in_rollups(
    url: str, open_store: OpenStore
) -> None:
    store = await open_store()
    store._max_pending = 10  # the real limit is a million rows
    minute = (math.floor(time.time() / 60) - 5) * 60
    for _ in range(15):
        store.enqueue("web", "http", result(minute + 1))
    assert (store.pending, store.dropped) == (10, 5)
    await store.flush()
    assert len(await store.results("web")) == 10
    (rollup,) = await store.rollups("web", "1m")
    assert rollup.count == 15


async def test_the_writer_applies_retention_every_interval(
    open_store: OpenStore,
) -> None:
    store = await open_store(raw_retention=timedelta(hours=1), retention_interval=0.05)
    store.enqueue("web", "http", result(time.time() - 7200))
    store.enqueue("web", "http", result())
    await store.flush()
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        with anyio.fail_after(5):
            while len(await store.results("web")) != 1:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()


async def test_run_cannot_run_twice(open_store: OpenStore) -> None:
    store = await open_store()
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        with pytest.raises(RuntimeError, match="already running"):
            await store.run()
        tg.cancel_scope.cancel()
