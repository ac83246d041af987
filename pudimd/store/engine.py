"""Creating the engine: SQLite (WAL, created on first use) or PostgreSQL (psycopg), used
from the event loop through :mod:`pudimd.store.threaded`."""

from __future__ import annotations

from typing import Any

import anyio
import structlog
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from pudimd.store.errors import StoreError, describe, mask_url
from pudimd.store.migrate import upgrade
from pudimd.store.threaded import AsyncEngine

__all__ = ["open_engine", "sqlite_writer"]

log = structlog.get_logger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_CACHE_KIB = 2048
"""Page cache per SQLite connection: a ceiling that a long-running daemon reaches, for
each pooled connection.  32 MB wrote ~10 % faster (a batch dirties about one index page
per target) but grew the daemon's RSS by tens of MB over hours; 2 MB (SQLite's default)
still writes ~90,000 results/s here (bench/bench_store.py)."""
CONNECT_TIMEOUT = 10
"""Seconds to wait for a PostgreSQL server before giving up."""
POOL_SIZE = 5
POOL_OVERFLOW = 10
"""Connections kept open, and opened beyond those at busy times (SQLAlchemy's defaults).
The pool hands out the connection returned last (LIFO): an idle daemon keeps using one,
so the others' SQLite page caches stay empty (up to SQLITE_CACHE_KIB each otherwise) and
PostgreSQL's idle timeouts may close the rest."""
SYNC_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
"""The driver each database gets when its URL names none, or names the async driver of
earlier versions (``sqlite+aiosqlite``, ``postgresql+asyncpg``), which keep working."""
_ASYNC_DRIVERS = {"aiosqlite", "asyncpg"}


async def open_engine(url: str) -> AsyncEngine:
    """An engine for ``url`` with the schema migrated to the latest revision.

    Raises :class:`StoreError` (``cannot open database <masked url>: <reason>``) on any
    failure: a bad URL, an unknown or async-only driver, an unwritable path, an
    unreachable server.
    """
    engine: AsyncEngine | None = None
    try:
        parsed = make_url(url)
        engine = await _create(parsed)
        in_memory = parsed.get_backend_name() == "sqlite" and parsed.database in (
            None,
            "",
            ":memory:",
        )
        await upgrade(engine, url=None if in_memory else url)
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            if parsed.get_backend_name() == "sqlite":
                mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
                if mode != "wal" and parsed.database not in (None, "", ":memory:"):
                    log.warning("sqlite WAL mode unavailable", url=mask_url(url), mode=mode)
    except BaseException as exc:
        if engine is not None:
            with anyio.CancelScope(shield=True):
                await engine.dispose()
        if isinstance(exc, Exception):
            reason = describe(exc, url)
            raise StoreError(f"cannot open database {mask_url(url)}: {reason}") from exc
        raise
    return engine


async def create_engine_for(url: str) -> AsyncEngine:
    """The engine :func:`open_engine` would make, without migrating (for the migration
    child process)."""
    return await _create(make_url(url))


async def _create(url: URL) -> AsyncEngine:
    url = sync_url(url)
    options: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    pooled = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW, "pool_use_lifo": True}
    if url.get_backend_name() == "sqlite":
        await _make_parent_dir(url)
        # Each call runs in whichever worker thread is free; one task uses a connection
        # at a time (AsyncConnection), so sharing it across threads is safe.
        connect_args["check_same_thread"] = False
        if (url.database or "") in ("", ":memory:"):  # a database per connection: share one
            options["poolclass"] = StaticPool
        else:
            options |= pooled
    else:
        options |= pooled | {"pool_pre_ping": True}
        if url.get_driver_name() == "psycopg" and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT
    engine = create_engine(url, connect_args=connect_args, **options)
    if engine.dialect.is_async:
        raise ValueError(
            f"{url.drivername} is an async driver; name a synchronous one "
            f"(or none: {url.get_backend_name()}:// picks one)"
        )
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return AsyncEngine(engine, max_connections=POOL_SIZE + POOL_OVERFLOW)


def sync_url(url: URL) -> URL:
    """``url`` with the synchronous driver pudimd uses for its database (see
    :data:`SYNC_DRIVERS`); a URL naming another synchronous driver is kept."""
    backend = url.get_backend_name()
    driver = SYNC_DRIVERS.get(backend)
    if driver is not None and (
        "+" not in url.drivername or url.get_driver_name() in _ASYNC_DRIVERS
    ):
        return url.set(drivername=f"{backend}+{driver}")
    return url


def sqlite_writer(engine: AsyncEngine) -> Engine | None:
    """For an ``engine`` on an SQLite file, a synchronous engine on the same file with one
    connection, for a writer that runs whole transactions in a worker thread (one thread
    hop per transaction instead of several per statement).  Its transactions start with
    ``BEGIN IMMEDIATE``, so they take SQLite's write lock up front and wait for it (busy
    timeout) rather than fail when another connection wrote in between.  None for other
    databases and in-memory SQLite."""
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        return None
    writer = create_engine(
        url.set(drivername="sqlite"),
        poolclass=StaticPool,
        connect_args={"check_same_thread": False},
    )

    def connect(dbapi_connection: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.isolation_level = None  # SQLAlchemy's recipe: we say BEGIN

    def begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(writer, "connect", connect)
    event.listen(writer, "begin", begin)
    return writer


async def _make_parent_dir(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    await anyio.Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    finally:
        cursor.close()
