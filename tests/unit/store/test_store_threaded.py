"""The async engine over SQLAlchemy's synchronous one (pudimd.store.threaded), on a real
SQLite file: buffered results, transactions, cancellation, the connection limit."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from pudimd.store.engine import create_engine_for
from pudimd.store.threaded import AsyncEngine

pytestmark = pytest.mark.anyio

items = sa.Table(
    "items",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await create_engine_for(f"sqlite:///{tmp_path / 'threaded.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(items.metadata.create_all)
    yield engine
    await engine.dispose()


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(items))).scalar_one())


async def test_results_are_read_after_the_connection_is_gone(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        inserted = await conn.execute(items.insert().values(name="a"))
        await conn.execute(items.insert(), [{"name": "b"}, {"name": "c"}])
        deleted = await conn.execute(items.delete().where(items.c.name == "c"))
    assert inserted.inserted_primary_key == (1,)
    assert deleted.rowcount == 1
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(items).order_by(items.c.id))
        scalars = await conn.execute(sa.select(items.c.name).order_by(items.c.id))
        raw = await conn.exec_driver_sql("SELECT name FROM items WHERE id = ?", (2,))
    await engine.dispose()  # the connections are closed: what follows reads buffered rows
    assert [dict(m) for m in rows.mappings()] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert scalars.scalars().all() == ["a", "b"]
    assert raw.scalar() == "b"


async def test_work_runs_off_the_event_loop_thread(engine: AsyncEngine) -> None:
    loop_thread = threading.get_ident()
    async with engine.connect() as conn:
        ran_in = await conn.run_sync(lambda sync: threading.get_ident())
    assert ran_in != loop_thread


async def test_begin_commits_and_rolls_back(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(items.insert().values(name="kept"))

    async def failing() -> None:
        async with engine.begin() as conn:
            await conn.execute(items.insert().values(name="lost"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing()
    async with engine.connect() as conn:  # connect() without commit rolls back too
        await conn.execute(items.insert().values(name="uncommitted"))
    async with engine.connect() as conn:
        names = (await conn.execute(sa.select(items.c.name))).scalars().all()
    assert names == ["kept"]


async def test_a_cancelled_transaction_is_rolled_back_and_its_connection_returned(
    engine: AsyncEngine,
) -> None:
    started = anyio.Event()

    async def writer() -> None:
        async with engine.begin() as conn:
            await conn.execute(items.insert().values(name="cancelled"))
            started.set()
            await anyio.sleep(30)

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        await started.wait()
        tg.cancel_scope.cancel()
    assert await count(engine) == 0
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_started_call_completes_when_its_task_is_cancelled(engine: AsyncEngine) -> None:
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    ended: list[bool] = []  # when the task ended: had the call finished?
    scope = anyio.CancelScope()

    def slow_insert(sync: sa.Connection) -> None:
        entered.set()
        release.wait(10)
        sync.execute(items.insert().values(name="finished"))
        sync.commit()
        finished.set()

    async def run() -> None:
        try:
            with scope:
                async with engine.connect() as conn:
                    await conn.run_sync(slow_insert)
        finally:
            ended.append(finished.is_set())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await anyio.to_thread.run_sync(entered.wait, 10)
            scope.cancel()  # the worker thread is mid-call: the task waits for it
            await anyio.sleep(0.2)
            assert ended == []
            release.set()
    assert ended == [True]
    assert await count(engine) == 1


async def test_tasks_beyond_the_connection_limit_wait_on_the_loop(tmp_path: Path) -> None:
    sync = sa.create_engine(f"sqlite:///{tmp_path / 'limit.db'}", pool_size=1, max_overflow=0)
    engine = AsyncEngine(sync, max_connections=1)
    try:
        order: list[str] = []

        async def user(name: str, hold: float) -> None:
            async with engine.connect() as conn:
                order.append(f"{name} in")
                await conn.exec_driver_sql("SELECT 1")
                await anyio.sleep(hold)
                order.append(f"{name} out")

        with anyio.fail_after(10):  # a thread blocked on the pool would time out at 30 s
            async with anyio.create_task_group() as tg:
                tg.start_soon(user, "first", 0.2)
                await anyio.sleep(0.05)
                for i in range(5):
                    tg.start_soon(user, f"next{i}", 0)
        assert order[:2] == ["first in", "first out"]
        assert len(order) == 12
    finally:
        await engine.dispose()


async def test_the_connection_returned_last_is_handed_out_first(engine: AsyncEngine) -> None:
    """LIFO: an idle daemon keeps reusing one connection, the others' page caches stay
    cold."""

    def dbapi_id(sync: sa.Connection) -> int:
        return id(sync.connection.dbapi_connection)

    async with engine.connect() as first, engine.connect() as second:
        first_id = await first.run_sync(dbapi_id)
        second_id = await second.run_sync(dbapi_id)
    # `second` was returned first, then `first`: the pool hands `first` out again
    for _ in range(3):
        async with engine.connect() as again:
            assert await again.run_sync(dbapi_id) == first_id
    assert first_id != second_id
