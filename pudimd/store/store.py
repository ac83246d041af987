"""The history store: results buffered in memory, written in batches, rolled up per
minute and per hour, and expired after their retention."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import structlog
from sqlalchemy.exc import SQLAlchemyError

from pudimd.results import ProbeResult
from pudimd.store import queries
from pudimd.store.engine import open_engine
from pudimd.store.errors import StoreError, describe, mask_url
from pudimd.store.records import Rollup, StoredResult
from pudimd.store.rollup import Rollups
from pudimd.store.threaded import AsyncEngine

__all__ = ["Store"]

log = structlog.get_logger(__name__)

MAX_PENDING = 1_000_000
"""Rows kept in memory while the database cannot be written; newer ones are dropped."""
SHUTDOWN_FLUSH_TIMEOUT = 5.0
"""Seconds the writer may spend writing what is pending when it is cancelled."""
MAX_RETRY_DELAY = 30.0
"""Longest wait between two attempts at a failing write, seconds."""
MAX_TRANSACTION_ROWS = 50_000
"""Most rows written in one transaction (a backlog is written in several)."""
CLOSE_GRACE = 5.0
"""Seconds after its period ends before a rollup bucket is written, for late results."""

Row = tuple[Any, ...]
"""A ``results`` row, columns in :data:`pudimd.store.queries.RESULT_COLUMNS` order."""


class Store:
    """Check history: raw results and per-minute/per-hour rollups in SQLite or PostgreSQL.

    Open with :meth:`open`, feed with :meth:`enqueue` (cheap, synchronous), and run
    :meth:`run` as a task: it writes in batches, writes rollup buckets once their period
    is over, applies retention, and flushes what is pending when cancelled.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        url: str,
        *,
        raw_retention: timedelta = timedelta(days=7),
        rollup_retention: timedelta = timedelta(days=90),
        minute_rollup_retention: timedelta | None = None,
        batch_interval: float = 1.0,
        batch_size: int = 5000,
        retention_interval: float = 600.0,
        on_written: Callable[[int], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        max_pending: int = MAX_PENDING,
    ) -> None:
        """Use :meth:`open`, which migrates the database first."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        if not batch_interval > 0 or not retention_interval > 0:
            raise ValueError("batch_interval and retention_interval must be greater than zero")
        self._engine = engine
        self._url = mask_url(url)
        self._raw_url = url
        self._raw_retention = raw_retention.total_seconds()
        self._rollup_retention = rollup_retention.total_seconds()
        minutes = minute_rollup_retention or rollup_retention
        self._minute_rollup_retention = min(minutes.total_seconds(), self._rollup_retention)
        self._batch_interval = batch_interval
        self._batch_size = batch_size
        self._transaction_rows = max(batch_size, MAX_TRANSACTION_ROWS)
        self._retention_interval = retention_interval
        self._on_written = on_written
        self._on_error = on_error
        self._max_pending = max_pending
        self._pending: list[Row] = []
        self._rollups = Rollups()
        self._dropped = 0
        self._dropped_reported = 0
        self._lock = anyio.Lock()
        self._wake: anyio.Event | None = None
        self._running = False

    def __repr__(self) -> str:
        return f"Store(url={self._url!r}, pending={len(self._pending)})"

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        raw_retention: timedelta = timedelta(days=7),
        rollup_retention: timedelta = timedelta(days=90),
        minute_rollup_retention: timedelta | None = None,
        batch_interval: float = 1.0,
        batch_size: int = 5000,
        retention_interval: float = 600.0,
        on_written: Callable[[int], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> Store:
        """Connect to ``url`` (``sqlite:///path`` or ``postgresql://...``), migrate the
        schema to the latest revision and return the store.

        SQLite: the file's directory is created; WAL and ``synchronous=NORMAL`` are set.
        Raises :class:`StoreError` (one line, password masked) when the database cannot
        be used.
        """
        engine = await open_engine(url)
        try:
            return cls(
                engine,
                url,
                raw_retention=raw_retention,
                rollup_retention=rollup_retention,
                minute_rollup_retention=minute_rollup_retention,
                batch_interval=batch_interval,
                batch_size=batch_size,
                retention_interval=retention_interval,
                on_written=on_written,
                on_error=on_error,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await engine.dispose()
            raise

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def engine(self) -> AsyncEngine:
        """The database engine (alerting keeps its state in the same database)."""
        return self._engine

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return self._url

    @property
    def pending(self) -> int:
        """Results waiting to be written."""
        return len(self._pending)

    @property
    def dropped(self) -> int:
        """Results dropped because the buffer was full (rollups still count them)."""
        return self._dropped

    # -- writing -------------------------------------------------------------------

    def enqueue(self, target: str, probe: str, result: ProbeResult) -> None:
        """Buffer ``result`` of ``target`` for the writer and fold it into the rollups.

        Never blocks and never touches the database.  A timestamp of 0 means now; a
        negative or non-finite duration is stored as 0.
        """
        ts = float(result.timestamp)
        if not 0.0 < ts < math.inf:
            ts = time.time()
        duration = float(result.duration)
        if not 0.0 <= duration < math.inf:
            duration = 0.0
        success = bool(result.success)
        self._rollups.add(target, ts, success, duration)
        pending = self._pending
        if len(pending) >= self._max_pending:
            self._dropped += 1
            return
        status = result.status
        phases = result.phases
        metrics = result.metrics
        pending.append(
            (
                _text(target),
                _text(probe),
                ts,
                success,
                duration,
                None if status is None else _text(str(status)),
                _text(result.message),
                _ENCODE(phases) if phases else None,
                _ENCODE(metrics) if metrics else None,
            )
        )
        if len(pending) >= self._batch_size and self._wake is not None:
            self._wake.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The writer task; start it with ``await task_group.start(store.run)``.

        Every ``batch_interval`` (sooner once ``batch_size`` rows wait) it writes all the
        pending rows in one transaction (a backlog of more than
        :data:`MAX_TRANSACTION_ROWS` in several), and the rollup buckets whose
        period is over; every ``retention_interval`` it applies retention.  A failed write
        is logged, passed to ``on_error`` and retried with backoff, its rows kept.  When
        cancelled it writes everything pending, partial rollup buckets included, for at
        most a few seconds.
        """
        if self._running:
            raise RuntimeError("Store.run() is already running")
        self._running = True
        self._wake = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._retention_loop)
                task_status.started()
                await self._write_loop()
        finally:
            await self._final_flush()
            self._wake = None
            self._running = False

    async def flush(self) -> None:
        """Write everything pending now, partial rollup buckets included.

        Raises :class:`StoreError` if the write fails (the rows stay pending).
        """
        try:
            await self._write(everything=True)
        except Exception as exc:
            raise self._error("write to", exc) from exc

    async def close(self) -> None:
        """Close the database connections.  Pending rows are not written: flush first
        (or cancel :meth:`run`, which does)."""
        if self._pending:
            log.warning(
                "store closed with results not written", url=self._url, pending=len(self._pending)
            )
        await self._engine.dispose()

    async def apply_retention(self, now: float | None = None) -> tuple[int, int]:
        """Delete results older than ``raw_retention``, hour rollups older than
        ``rollup_retention`` and minute rollups older than ``minute_rollup_retention``
        (relative to ``now``, default the current time).

        Returns ``(results deleted, rollups deleted)``; raises :class:`StoreError` when
        the database fails.
        """
        now = time.time() if now is None else now
        raw_cutoff = now - self._raw_retention
        deleted_results = 0
        try:
            while True:
                async with self._engine.begin() as conn:
                    n = await queries.delete_results_before(conn, raw_cutoff)
                deleted_results += n
                if n < queries.DELETE_CHUNK:
                    break
            async with self._engine.begin() as conn:
                deleted_rollups = await queries.delete_rollups_before(
                    conn, now - self._rollup_retention
                )
                deleted_rollups += await queries.delete_rollups_before(
                    conn, now - self._minute_rollup_retention, "1m"
                )
        except SQLAlchemyError as exc:
            raise self._error("apply retention to", exc) from exc
        if deleted_results or deleted_rollups:
            log.info("store retention applied", results=deleted_results, rollups=deleted_rollups)
        return deleted_results, deleted_rollups

    # -- reading -------------------------------------------------------------------

    async def results(
        self,
        target: str,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[StoredResult]:
        """Stored results of ``target`` with ``since <= ts < until``, newest first.

        Results still pending are not included.  Raises :class:`StoreError` when the
        database fails."""
        try:
            async with self._engine.connect() as conn:
                return await queries.select_results(conn, target, since, until, limit)
        except SQLAlchemyError as exc:
            raise self._error("read from", exc) from exc

    async def rollups(
        self,
        target: str,
        resolution: str,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Rollup]:
        """Stored rollups of ``target`` at ``resolution`` (``"1m"`` or ``"1h"``) with
        ``since <= bucket_start < until``, oldest first.  Buckets still in memory are not
        included until written.  Raises ValueError for another resolution and
        :class:`StoreError` when the database fails."""
        try:
            async with self._engine.connect() as conn:
                return await queries.select_rollups(conn, target, resolution, since, until)
        except SQLAlchemyError as exc:
            raise self._error("read from", exc) from exc

    # -- internals -----------------------------------------------------------------

    async def _write_loop(self) -> None:
        failures = 0
        while True:
            if failures:
                await anyio.sleep(min(self._batch_interval * 2 ** (failures - 1), MAX_RETRY_DELAY))
            else:
                assert self._wake is not None
                with anyio.move_on_after(self._batch_interval):
                    await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self._write(everything=False)
            except Exception as exc:
                failures += 1
                self._report(
                    exc, retry_in=min(self._batch_interval * 2 ** (failures - 1), MAX_RETRY_DELAY)
                )
            else:
                if failures:
                    log.info("store writes resumed", url=self._url)
                failures = 0
            self._report_dropped()

    async def _retention_loop(self) -> None:
        await anyio.sleep(min(self._retention_interval, 60.0))
        while True:
            try:
                await self.apply_retention()
            except Exception as exc:
                log.error(
                    "store retention failed", url=self._url, error=describe(exc, self._raw_url)
                )
                self._call_on_error(exc)
            await anyio.sleep(self._retention_interval)

    async def _write(self, *, everything: bool) -> None:
        """Write pending rows (as of now) and due rollup buckets; on failure put them
        back and raise."""
        async with self._lock:
            if everything:
                buckets = self._rollups.take_all()
            else:
                buckets = self._rollups.take_closed(time.time() - CLOSE_GRACE)
            todo = len(self._pending)
            while True:
                rows = self._take_rows(min(todo, self._transaction_rows))
                todo -= len(rows)
                if not rows and not buckets:
                    return
                try:
                    async with self._engine.begin() as conn:
                        if rows:
                            await queries.insert_results(conn, rows)
                        if buckets:
                            await queries.upsert_rollups(conn, buckets)
                except BaseException:
                    self._restore_rows(rows)
                    self._rollups.put_back(buckets)
                    raise
                buckets = {}
                if rows:
                    self._call_on_written(len(rows))

    def _take_rows(self, n: int) -> list[Row]:
        if n >= len(self._pending):
            rows, self._pending = self._pending, []
        else:
            rows = self._pending[:n]
            del self._pending[:n]
        return rows

    def _restore_rows(self, rows: list[Row]) -> None:
        if not rows:
            return
        self._pending[:0] = rows
        excess = len(self._pending) - self._max_pending
        if excess > 0:
            del self._pending[self._max_pending :]
            self._dropped += excess

    async def _final_flush(self) -> None:
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + SHUTDOWN_FLUSH_TIMEOUT
            try:
                await self._write(everything=True)
            except Exception as exc:
                self._report(exc, retry_in=None)
        if scope.cancelled_caught:
            log.error(
                "store flush at shutdown timed out", url=self._url, timeout=SHUTDOWN_FLUSH_TIMEOUT
            )
        if self._pending:
            log.error("results not written at shutdown", url=self._url, lost=len(self._pending))
        self._report_dropped()

    def _error(self, action: str, exc: Exception) -> StoreError:
        return StoreError(f"cannot {action} database {self._url}: {describe(exc, self._raw_url)}")

    def _report(self, exc: Exception, *, retry_in: float | None) -> None:
        log.error(
            "store write failed",
            url=self._url,
            error=describe(exc, self._raw_url),
            pending=len(self._pending),
            retry_in=retry_in,
        )
        self._call_on_error(exc)

    def _report_dropped(self) -> None:
        if self._dropped > self._dropped_reported:
            log.error(
                "store buffer full: results dropped",
                url=self._url,
                dropped=self._dropped - self._dropped_reported,
                dropped_total=self._dropped,
                limit=self._max_pending,
            )
            self._dropped_reported = self._dropped

    def _call_on_written(self, n: int) -> None:
        if self._on_written is not None:
            try:
                self._on_written(n)
            except Exception:
                log.exception("store on_written callback failed")

    def _call_on_error(self, exc: Exception) -> None:
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                log.exception("store on_error callback failed")


def _text(value: str) -> str:
    """``value`` as both databases accept it: no NUL, no lone surrogate."""
    if value.isascii() and "\x00" not in value:
        return value
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


# One encoder for every row: json.dumps() with options builds a new one per call.
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode
