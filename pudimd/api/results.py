"""Stored check results and their rollups in ``/api/v1``.

====================================  ==========================================================
``GET /api/v1/results``               raw results newest first: ``target`` (optional: every
                                      target), ``from`` / ``to`` (check start, ``from <= t <
                                      to``), ``limit`` (default 100), ``cursor`` (the
                                      ``next_cursor`` of the page before)
``GET /api/v1/results/history``       rollups oldest first: ``target`` (required), ``step``
                                      (``minute`` or ``hour``, default ``hour``), ``from`` /
                                      ``to`` (bucket start; default the last 24 hours, or 7 days
                                      for hours), ``limit`` (default and at most 10,000 buckets)
====================================  ==========================================================

Times are RFC 3339 or Unix seconds.  The cursor is opaque (base64 of the last row's check
time and id): pages follow the order ``(time, id)`` descending by keyset, so results written
while a client pages through do not shift the pages (no duplicate, no gap; the new ones are
before the first page).  Results still in the writer's buffer (``storage.batch_interval``)
and the rollup buckets of the current minute and hour are not stored yet, so not shown.

A target no longer in the config keeps its history until retention removes it: it is
answered like any other (an empty list for a name never seen, not a 404).  (``GET
/api/v1/history`` is the alert timeline, :mod:`pudimd.api.oncall`.)
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from pudimd.api.problems import (
    MAX_LIMIT,
    Problem,
    answers_problems,
    known_params,
    limit_param,
    time_param,
)
from pudimd.events import event_time
from pudimd.store.records import Rollup, StoredResult
from pudimd.store.tables import results, rollups

if TYPE_CHECKING:
    from pudimd.daemon import Daemon
    from pudimd.store.threaded import AsyncEngine

__all__ = ["decode_cursor", "encode_cursor", "results_routes"]

STEPS = {"minute": "1m", "hour": "1h"}
_DEFAULT_SPAN = {"minute": 86_400.0, "hour": 7 * 86_400.0}


def encode_cursor(ts: float, row_id: int) -> str:
    """The opaque cursor after the row ``(ts, row_id)``."""
    return base64.urlsafe_b64encode(orjson.dumps([ts, row_id])).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, int]:
    """``(ts, id)`` of a cursor.  Raises Problem (400) for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        ts, row_id = orjson.loads(raw)
        if (
            isinstance(ts, int | float)
            and not isinstance(ts, bool)
            and math.isfinite(ts)
            and type(row_id) is int
        ):
            return float(ts), row_id
    except (binascii.Error, ValueError, TypeError):
        pass
    raise Problem(
        400,
        "cursor is not one this API gave out",
        errors=[{"field": "cursor", "message": "malformed cursor"}],
    )


def _time(query: Mapping[str, str], name: str) -> float | None:
    """``name`` as Unix seconds: RFC 3339 or a number of seconds."""
    text = query.get(name, "").strip()
    try:
        value = float(text)
    except ValueError:
        return time_param(query, name)
    if not math.isfinite(value) or value < 0:
        raise Problem(
            400,
            f"{name}: {text!r} is not a time",
            errors=[{"field": name, "message": "not a time"}],
        )
    return value


def _range(query: Mapping[str, str]) -> tuple[float | None, float | None]:
    since, until = _time(query, "from"), _time(query, "to")
    if since is not None and until is not None and since >= until:
        raise Problem(
            400,
            "from must be before to",
            errors=[{"field": "from", "message": "not before to"}],
        )
    return since, until


def _result_json(row: StoredResult) -> dict[str, Any]:
    return {
        "id": row.id,
        "target": row.target,
        "probe": row.probe,
        "started": event_time(row.ts),
        "ts": row.ts,
        "success": row.success,
        "duration": row.duration,
        "status": row.status,
        "message": row.message,
        "phases": dict(row.phases),
        "metrics": dict(row.metrics),
    }


def _rollup_json(rollup: Rollup) -> dict[str, Any]:
    count = rollup.count
    return {
        "start": event_time(rollup.bucket_start),
        "checks": count,
        "failures": rollup.failures,
        "uptime": None if count == 0 else 1.0 - rollup.failures / count,
        "latency_p50": rollup.latency_p50,
        "latency_p95": rollup.latency_p95,
        "latency_max": rollup.latency_max,
    }


class _ResultsAPI:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _engine(self) -> AsyncEngine:
        store = self.daemon.store
        if store is None:
            raise Problem(503, "pudimd's store is not open")
        return store.engine

    async def results(self, request: web.Request) -> web.StreamResponse:
        query = known_params(request, {"target", "from", "to", "limit", "cursor"})
        since, until = _range(query)
        limit = limit_param(query, default=100)
        cursor = query.get("cursor")
        after = decode_cursor(cursor) if cursor else None
        c = results.c
        statement = sa.select(results)
        target = query.get("target")
        if target:
            statement = statement.where(c.target == target)
        if since is not None:
            statement = statement.where(c.ts >= since)
        if until is not None:
            statement = statement.where(c.ts < until)
        if after is not None:
            ts, row_id = after
            statement = statement.where(sa.or_(c.ts < ts, sa.and_(c.ts == ts, c.id < row_id)))
        statement = statement.order_by(c.ts.desc(), c.id.desc()).limit(limit + 1)
        try:
            async with self._engine().connect() as conn:
                rows = [StoredResult.from_row(r) for r in await conn.execute(statement)]
        except SQLAlchemyError as exc:
            raise Problem(503, f"cannot read the store: {type(exc).__name__}") from None
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return web.json_response(
            {
                "results": [_result_json(row) for row in rows],
                "next_cursor": None if last is None else encode_cursor(last.ts, last.id),
            }
        )

    async def history(self, request: web.Request) -> web.StreamResponse:
        query = known_params(request, {"target", "from", "to", "step", "limit"})
        target = query.get("target")
        if not target:
            raise Problem(
                400, "target is required", errors=[{"field": "target", "message": "required"}]
            )
        step = query.get("step", "hour")
        if step not in STEPS:
            raise Problem(
                400,
                f"step must be minute or hour, got {step!r}",
                errors=[{"field": "step", "message": "expected minute or hour"}],
            )
        since, until = _range(query)
        limit = limit_param(query, default=MAX_LIMIT)
        until = time.time() if until is None else until
        since = until - _DEFAULT_SPAN[step] if since is None else since
        if since >= until:
            raise Problem(400, "from must be before to")
        c = rollups.c
        statement = (
            sa.select(rollups)
            .where(
                c.target == target,
                c.resolution == STEPS[step],
                c.bucket_start >= math.ceil(since),
                c.bucket_start < math.ceil(until),
            )
            .order_by(c.bucket_start)
            .limit(limit + 1)
        )
        try:
            async with self._engine().connect() as conn:
                found = [Rollup.from_row(r) for r in await conn.execute(statement)]
        except SQLAlchemyError as exc:
            raise Problem(503, f"cannot read the store: {type(exc).__name__}") from None
        return web.json_response(
            {
                "target": target,
                "step": step,
                "from": event_time(since),
                "to": event_time(until),
                "buckets": [_rollup_json(r) for r in found[:limit]],
                "truncated": len(found) > limit,
            }
        )


def results_routes(daemon: Daemon) -> list[web.RouteDef]:
    api = _ResultsAPI(daemon)
    return [
        web.get("/api/v1/results", answers_problems(api.results)),
        web.get("/api/v1/results/history", answers_problems(api.history)),
    ]
