"""The statements the store runs, each on a connection the caller manages."""

from __future__ import annotations

import math
from typing import Any

import structlog
from sqlalchemy import bindparam, delete, insert, select, update

from pudimd.store.records import Rollup, StoredResult
from pudimd.store.rollup import RESOLUTIONS, Bucket, Buckets
from pudimd.store.sketch import Sketch
from pudimd.store.tables import results, rollups
from pudimd.store.threaded import AsyncConnection

__all__ = [
    "DELETE_CHUNK",
    "RESULT_COLUMNS",
    "delete_results_before",
    "delete_rollups_before",
    "insert_results",
    "select_results",
    "select_rollups",
    "upsert_rollups",
]

log = structlog.get_logger(__name__)

_IN_CHUNK = 500  # targets per "IN (...)" lookup
DELETE_CHUNK = 20_000
"""Rows deleted per retention transaction."""

RESULT_COLUMNS = (
    "target",
    "probe",
    "ts",
    "success",
    "duration",
    "status",
    "message",
    "phases",
    "metrics",
)
"""Columns of the rows :func:`insert_results` takes, in order."""

_INSERT_RESULTS = insert(results).values({name: bindparam(name) for name in RESULT_COLUMNS})
_DRIVER_INSERT: dict[str, str | None] = {}  # per dialect: positional SQL, or None
_INSERT_ROLLUPS = insert(rollups)
_UPDATE_ROLLUPS = (
    update(rollups)
    .where(
        rollups.c.target == bindparam("k_target"),
        rollups.c.resolution == bindparam("k_resolution"),
        rollups.c.bucket_start == bindparam("k_start"),
    )
    .values(
        count=bindparam("v_count"),
        failures=bindparam("v_failures"),
        latency_p50=bindparam("v_p50"),
        latency_p95=bindparam("v_p95"),
        latency_max=bindparam("v_max"),
        sketch=bindparam("v_sketch"),
    )
)


async def insert_results(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
    """Insert result rows (tuples in :data:`RESULT_COLUMNS` order) with one executemany.

    The values are plain str, float, bool and None, so the INSERT is compiled once per
    dialect and handed to the driver's own executemany, skipping SQLAlchemy's per-row
    parameter processing.
    """
    dialect = f"{conn.dialect.name}+{conn.dialect.driver}"
    sql = _DRIVER_INSERT.get(dialect, "")
    if sql == "":
        sql = _DRIVER_INSERT[dialect] = _compile_insert(conn)
    if sql is None:  # a driver with named parameters
        await conn.execute(
            _INSERT_RESULTS, [dict(zip(RESULT_COLUMNS, r, strict=True)) for r in rows]
        )
    else:
        await conn.exec_driver_sql(sql, rows)


def _compile_insert(conn: AsyncConnection) -> str | None:
    compiled = _INSERT_RESULTS.compile(dialect=conn.dialect)
    if compiled.positional and tuple(compiled.positiontup or ()) == RESULT_COLUMNS:
        return str(compiled)
    return None


async def upsert_rollups(conn: AsyncConnection, buckets: Buckets) -> int:
    """Write ``buckets``, merging each into the row already stored for its target and
    period (counts add, sketches merge, quantiles recomputed).  Returns rows written.

    Read-merge-write in the caller's transaction; on PostgreSQL the existing rows are
    locked (``FOR UPDATE``).  Two writers inserting the same new row make one of them fail
    with a key violation: its caller keeps the buckets and retries, then merges.
    """
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    lock = conn.dialect.name == "postgresql"
    for (resolution, start), targets in buckets.items():
        stored = await _stored_buckets(conn, resolution, start, list(targets), lock=lock)
        for target, bucket in targets.items():
            previous = stored.get(target)
            if previous is None:
                inserts.append(
                    {"target": target, "resolution": resolution, "bucket_start": start}
                    | _bucket_values(bucket, prefix="")
                )
            else:
                previous.merge(bucket)
                updates.append(
                    {"k_target": target, "k_resolution": resolution, "k_start": start}
                    | _bucket_values(previous, prefix="v_")
                )
    if inserts:
        await conn.execute(_INSERT_ROLLUPS, inserts)
    if updates:
        await conn.execute(_UPDATE_ROLLUPS, updates)
    return len(inserts) + len(updates)


async def _stored_buckets(
    conn: AsyncConnection, resolution: str, start: int, targets: list[str], *, lock: bool
) -> dict[str, Bucket]:
    found: dict[str, Bucket] = {}
    c = rollups.c
    for i in range(0, len(targets), _IN_CHUNK):
        query = select(c.target, c.count, c.failures, c.latency_max, c.sketch).where(
            c.resolution == resolution,
            c.bucket_start == start,
            c.target.in_(targets[i : i + _IN_CHUNK]),
        )
        if lock:
            query = query.with_for_update()
        for row in await conn.execute(query):
            found[row.target] = _decode_bucket(row, resolution, start)
    return found


def _decode_bucket(row: Any, resolution: str, start: int) -> Bucket:
    try:
        sketch = Sketch.from_json(row.sketch)
    except ValueError as exc:
        # Keep the counts; the old latencies are lost but for their maximum.
        log.warning(
            "unreadable rollup sketch replaced",
            target=row.target,
            resolution=resolution,
            bucket_start=start,
            error=str(exc),
        )
        sketch = Sketch()
        sketch.add(row.latency_max)
    return Bucket(count=row.count, failures=row.failures, sketch=sketch)


def _bucket_values(bucket: Bucket, prefix: str) -> dict[str, Any]:
    """Column values of ``bucket``; with a prefix, as the update's bind names."""
    if prefix:
        names = ("count", "failures", "p50", "p95", "max", "sketch")
    else:
        names = ("count", "failures", "latency_p50", "latency_p95", "latency_max", "sketch")
    values = (
        bucket.count,
        bucket.failures,
        bucket.latency_p50,
        bucket.latency_p95,
        bucket.latency_max,
        bucket.sketch.to_json(),
    )
    return {prefix + name: value for name, value in zip(names, values, strict=True)}


async def delete_results_before(conn: AsyncConnection, cutoff: float) -> int:
    """Delete up to a chunk of results older than ``cutoff``; returns rows deleted
    (fewer than the chunk size means done)."""
    oldest = select(results.c.id).where(results.c.ts < cutoff).limit(DELETE_CHUNK)
    outcome = await conn.execute(delete(results).where(results.c.id.in_(oldest)))
    return int(outcome.rowcount)


async def delete_rollups_before(
    conn: AsyncConnection, cutoff: float, resolution: str | None = None
) -> int:
    """Delete rollups (of ``resolution`` only, when given: ``1m`` or ``1h``) whose bucket
    starts before ``cutoff``; returns rows deleted."""
    bound = math.ceil(cutoff)  # bucket_start is an integer: "< 12.5" is "< 13"
    query = delete(rollups).where(rollups.c.bucket_start < bound)
    if resolution is not None:
        query = query.where(rollups.c.resolution == resolution)
    outcome = await conn.execute(query)
    return int(outcome.rowcount)


async def select_results(
    conn: AsyncConnection, target: str, since: float | None, until: float | None, limit: int
) -> list[StoredResult]:
    """Results of ``target`` with ``since <= ts < until``, newest first."""
    c = results.c
    query = select(results).where(c.target == target)
    if since is not None:
        query = query.where(c.ts >= since)
    if until is not None:
        query = query.where(c.ts < until)
    query = query.order_by(c.ts.desc(), c.id.desc()).limit(limit)
    return [StoredResult.from_row(row) for row in await conn.execute(query)]


async def select_rollups(
    conn: AsyncConnection, target: str, resolution: str, since: float | None, until: float | None
) -> list[Rollup]:
    """Rollups of ``target`` at ``resolution`` with ``since <= bucket_start < until``,
    oldest first."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown rollup resolution {resolution!r}: expected one of 1m, 1h")
    c = rollups.c
    query = select(rollups).where(c.target == target, c.resolution == resolution)
    if since is not None:
        query = query.where(c.bucket_start >= math.ceil(since))
    if until is not None:
        query = query.where(c.bucket_start < math.ceil(until))
    query = query.order_by(c.bucket_start)
    return [Rollup.from_row(row) for row in await conn.execute(query)]
