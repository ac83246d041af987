"""An async engine over SQLAlchemy's synchronous one: every database call runs in a worker
thread, the event loop never blocks on the database.

This is the part of :mod:`sqlalchemy.ext.asyncio`'s interface pudimd uses (``connect()``,
``begin()``, ``execute()``, ``exec_driver_sql()``, ``run_sync()``, ``dispose()``), built on
the synchronous drivers (``sqlite3``, ``psycopg``) instead of the async ones.  Why not the
extension itself: importing it imports SQLAlchemy's ORM and greenlet (about 7 MB that an
idle daemon keeps for its lifetime), and its SQLite driver, aiosqlite, is a worker thread
per connection anyway; here a whole :meth:`AsyncConnection.run_sync` unit costs one
thread hop, not one per statement.

Results come back buffered (every row fetched in the worker thread), so reading them
never touches the database from the event loop.  A call that has started in a worker
thread completes even when its task is cancelled; the cancellation is seen after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy.engine import URL, Connection, CursorResult, Dialect, Engine, IteratorResult
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.sql.base import Executable

__all__ = ["AsyncConnection", "AsyncEngine", "BufferedResult"]

T = TypeVar("T")


class BufferedResult(IteratorResult[Any]):
    """A statement's result with every row already fetched: the whole
    :class:`~sqlalchemy.engine.Result` interface (``scalar()``, ``all()``,
    ``mappings()``...), plus ``rowcount`` and ``inserted_primary_key`` of the cursor."""

    rowcount: int
    inserted_primary_key: Any

    @classmethod
    def take(cls, result: CursorResult[Any]) -> BufferedResult:
        """Fetch what ``result`` holds and close it (in the thread that ran it)."""
        try:
            rowcount = result.rowcount
            context = result.context
            key = None
            if context.isinsert and not context.executemany:
                key = result.inserted_primary_key
            if result.returns_rows:
                frozen = result.freeze()
                buffered = cls(frozen.metadata, iter(frozen.data))
                buffered._attributes = frozen._attributes
                buffered._source_supports_scalars = frozen._source_supports_scalars
            else:
                buffered = cls(SimpleResultMetaData([]), iter(()))
        finally:
            result.close()
        buffered.rowcount = rowcount
        buffered.inserted_primary_key = key
        return buffered


class AsyncConnection:
    """One pooled connection, used from one task at a time; every call runs in a worker
    thread.  Obtain it from :meth:`AsyncEngine.connect` or :meth:`AsyncEngine.begin`."""

    def __init__(self, sync: Connection) -> None:
        self.sync_connection = sync

    @property
    def dialect(self) -> Dialect:
        return self.sync_connection.dialect

    async def execute(
        self,
        statement: Executable,
        parameters: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    ) -> BufferedResult:
        """``Connection.execute`` in a worker thread; the result comes back buffered."""
        return await self._call(_execute, self.sync_connection, statement, parameters)

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> BufferedResult:
        """``Connection.exec_driver_sql`` in a worker thread (the driver's own parameter
        style, no SQLAlchemy processing); the result comes back buffered."""
        return await self._call(_exec_driver_sql, self.sync_connection, statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in a worker thread, ``connection`` the synchronous
        :class:`~sqlalchemy.engine.Connection`: several statements for one thread hop."""
        return await self._call(fn, self.sync_connection, *args)

    async def commit(self) -> None:
        await self._call(self.sync_connection.commit)

    async def rollback(self) -> None:
        await self._call(self.sync_connection.rollback)

    @staticmethod
    async def _call(fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args)


class AsyncEngine:
    """Async access to a synchronous :class:`~sqlalchemy.engine.Engine`.

    At most ``max_connections`` connections are open at once: a task wanting another
    waits here, on the event loop, rather than in a worker thread blocked on the pool
    (threads waiting for connections could hold every worker thread the connections'
    owners need to finish)."""

    def __init__(self, sync_engine: Engine, *, max_connections: int) -> None:
        self.sync_engine = sync_engine
        self._slots = anyio.Semaphore(max_connections)

    def __repr__(self) -> str:
        return f"AsyncEngine({self.sync_engine.url!r})"

    @property
    def url(self) -> URL:
        return self.sync_engine.url

    @property
    def dialect(self) -> Dialect:
        return self.sync_engine.dialect

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection; what it did without committing is rolled back at the end."""
        async with self._slots:
            sync = await anyio.to_thread.run_sync(self.sync_engine.connect)
            try:
                yield AsyncConnection(sync)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(sync.close)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed when the block ends and rolled back
        when it raises (or is cancelled)."""
        async with self.connect() as conn:
            sync = conn.sync_connection
            await anyio.to_thread.run_sync(sync.begin)
            try:
                yield conn
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(sync.rollback)
                raise
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sync.commit)

    async def dispose(self) -> None:
        """Close the pool's connections."""
        await anyio.to_thread.run_sync(self.sync_engine.dispose)


def _execute(
    conn: Connection,
    statement: Executable,
    parameters: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None,
) -> BufferedResult:
    return BufferedResult.take(conn.execute(statement, parameters))


def _exec_driver_sql(conn: Connection, statement: str, parameters: Any) -> BufferedResult:
    return BufferedResult.take(conn.exec_driver_sql(statement, parameters))
