"""Durable state of alerting: alerts, silences, the notification log, the outbox and its
delivery attempts, in the same database as the results (SQLAlchemy Core).

Writes are small transactions the alerting engine batches itself; every method raises
SQLAlchemy's errors for the caller to retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import orjson
import sqlalchemy as sa

from pudimd.store.engine import sqlite_writer
from pudimd.store.tables import (
    alert_acks,
    alert_events,
    alerts,
    delivery_attempts,
    escalations,
    notification_log,
    notifications,
    silences,
)
from pudimd.store.threaded import AsyncEngine

__all__ = [
    "AckRow",
    "AlertRow",
    "AlertingDB",
    "EventRow",
    "Loaded",
    "NflogRow",
    "OutboxRow",
    "SilenceRow",
]

AlertRow = dict[str, Any]
"""Columns of ``alerts``, labels/annotations/blocked_by as Python values."""
SilenceRow = dict[str, Any]
"""Columns of ``silences``, matchers (API form) and muted as Python values."""
NflogRow = tuple[str, str, list[str], list[str], float, list[str]]
"""(group_key, integration, firing fingerprints, resolved fingerprints, sent_at,
acknowledged fingerprints)."""
AckRow = dict[str, Any]
"""Columns of ``alert_acks``."""
EventRow = dict[str, Any]
"""Columns of ``alert_events`` but ``id``; ``detail`` as a dict."""


@dataclass(slots=True)
class OutboxRow:
    id: int
    idempotency_key: str
    receiver: str
    integration: str
    group_key: str
    payload: dict[str, Any]
    state: str
    created_at: float
    next_attempt_at: float
    attempts: int
    last_error: str | None = None
    finished_at: float | None = None
    live: Any = None
    """The notification itself when this process enqueued it (not stored): delivery then
    skips decoding ``payload`` again."""


@dataclass(slots=True)
class Loaded:
    alerts: list[AlertRow]
    silences: list[SilenceRow]
    nflog: list[NflogRow]
    pending: list[OutboxRow]
    acks: list[AckRow]
    escalations: list[dict[str, Any]]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


_upserts: dict[tuple[str, str], Any] = {}


def _upsert(conn: sa.Connection, table: sa.Table, keys: Sequence[str]) -> Any:
    """An INSERT .. ON CONFLICT (keys) DO UPDATE of every other column, for SQLite and
    PostgreSQL (made once per dialect and table: building one is not cheap)."""
    cache_key = (conn.dialect.name, table.name)
    cached = _upserts.get(cache_key)
    if cached is not None:
        return cached
    statement: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement = postgresql.insert(table)
    else:
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys},
    )
    _upserts[cache_key] = statement
    return statement


T = TypeVar("T")

_compiled: dict[tuple[str, str], tuple[str, tuple[str, ...]] | None] = {}


def _upsert_many(
    conn: sa.Connection, table: sa.Table, keys: Sequence[str], rows: list[dict[str, Any]]
) -> None:
    """:func:`_upsert` of many rows: compiled once per dialect and table, the rows handed
    to the driver as tuples (SQLAlchemy's per-row parameter processing cost as much as
    the driver's work).  Dialects with named parameters take the ordinary path."""
    cache_key = (conn.dialect.name, table.name)
    if cache_key not in _compiled:
        compiled = _upsert(conn, table, keys).compile(dialect=conn.dialect)
        order = compiled.positiontup
        _compiled[cache_key] = (compiled.string, tuple(order)) if order else None
    entry = _compiled[cache_key]
    if entry is None:
        conn.execute(_upsert(conn, table, keys), rows)
        return
    sql, names = entry
    conn.exec_driver_sql(sql, [tuple(row[name] for name in names) for row in rows])


_EVENT_COLUMNS = (
    "fingerprint", "at", "kind", "alertname", "target", "actor", "interface", "detail",
)  # fmt: skip
_inserts: dict[tuple[str, str], str | None] = {}


def _insert_many(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """INSERT ``rows`` (tuples in the order of ``columns``) straight through the driver:
    compiled once per dialect and table, no per-row parameter processing.  Dialects with
    named parameters (psycopg) take the ordinary path."""
    cache_key = (conn.dialect.name, table.name)
    if cache_key not in _inserts:
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(columns))
        order = compiled.positiontup
        if order is not None and list(order) != list(columns):
            raise AssertionError(f"{table.name}: compiled column order {order}")
        _inserts[cache_key] = compiled.string if order is not None else None
    sql = _inserts[cache_key]
    if sql is None:
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    conn.exec_driver_sql(sql, rows)


class AlertingDB:
    """Reads and writes alerting state through ``engine``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._write_lock = anyio.Lock()
        self._writer = sqlite_writer(engine)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in one write transaction, one at a time (SQLite
        lets one writer in and makes the others poll with sleeps of a millisecond and
        more: waiting here is cheaper).  On an SQLite file the whole transaction runs in
        a worker thread (:func:`~pudimd.store.engine.sqlite_writer`); elsewhere through
        the async engine.  Either way it completes once started, even when cancelled."""
        async with self._write_lock:
            if self._writer is not None:
                return await anyio.to_thread.run_sync(self._in_thread, fn, *args)
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn, *args)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._writer is not None
        with self._writer.begin() as conn:
            return fn(conn, *args)

    def close(self) -> None:
        """Close the SQLite writer's connection (the async engine is the caller's)."""
        if self._writer is not None:
            self._writer.dispose()

    async def load(self) -> Loaded:
        """Everything a restart needs: alerts, silences, the notification log and the
        notifications still pending, oldest first."""
        async with self.engine.connect() as conn:
            alert_rows = [
                {
                    **row._asdict(),
                    "labels": orjson.loads(row.labels),
                    "annotations": orjson.loads(row.annotations),
                    "blocked_by": tuple(orjson.loads(row.blocked_by or "[]")),
                }
                for row in await conn.execute(sa.select(alerts))
            ]
            silence_rows = [
                {
                    **row._asdict(),
                    "matchers": orjson.loads(row.matchers),
                    "muted": set(orjson.loads(row.muted)),
                }
                for row in await conn.execute(sa.select(silences))
            ]
            nflog = [
                (
                    row.group_key,
                    row.integration,
                    orjson.loads(row.firing),
                    orjson.loads(row.resolved),
                    row.sent_at,
                    orjson.loads(row.acked or "[]"),
                )
                for row in await conn.execute(sa.select(notification_log))
            ]
            pending = [
                _outbox_row(row)
                for row in await conn.execute(
                    sa.select(notifications)
                    .where(notifications.c.state == "pending")
                    .order_by(notifications.c.id)
                )
            ]
            acks = [row._asdict() for row in await conn.execute(sa.select(alert_acks))]
            running = [row._asdict() for row in await conn.execute(sa.select(escalations))]
        return Loaded(alert_rows, silence_rows, nflog, pending, acks, running)

    async def write_alerts(
        self,
        rows: Sequence[AlertRow],
        deleted: Iterable[str] = (),
        *,
        events: Sequence[EventRow] = (),
        acks: Sequence[AckRow] = (),
    ) -> None:
        """In one transaction: upsert ``rows``, delete the alerts ``deleted`` (and their
        acknowledgements), append ``events`` to the timeline, upsert ``acks`` (a row
        whose ``acked_by`` and ``assignee`` are both None is deleted)."""
        await self._write(_write_alerts, rows, list(deleted), events, acks)

    async def write_escalations(
        self, rows: Sequence[dict[str, Any]], deleted: Sequence[str] = ()
    ) -> None:
        """Upsert escalations ``rows`` and delete those with ids ``deleted``."""
        await self._write(_write_escalations, rows, list(deleted))

    async def events(
        self,
        *,
        fingerprint: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[EventRow]:
        """Timeline events, oldest first, filtered by alert, target and time range."""
        query = sa.select(alert_events).order_by(alert_events.c.at, alert_events.c.id)
        if fingerprint is not None:
            query = query.where(alert_events.c.fingerprint == fingerprint)
        if target is not None:
            query = query.where(alert_events.c.target == target)
        if since is not None:
            query = query.where(alert_events.c.at >= since)
        if until is not None:
            query = query.where(alert_events.c.at <= until)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.limit(limit))
            return [{**row._asdict(), "detail": orjson.loads(row.detail)} for row in rows]

    async def notifications_of_groups(
        self, group_keys: Sequence[str], since: float, until: float | None = None
    ) -> list[tuple[OutboxRow, list[dict[str, Any]]]]:
        """The notifications of the groups ``group_keys`` made in [since, until], each
        with its delivery attempts, oldest first."""
        if not group_keys:
            return []
        query = (
            sa.select(notifications)
            .where(notifications.c.group_key.in_(list(group_keys)))
            .where(notifications.c.created_at >= since)
            .order_by(notifications.c.id)
        )
        if until is not None:
            query = query.where(notifications.c.created_at <= until)
        async with self.engine.connect() as conn:
            found = [_outbox_row(row) for row in await conn.execute(query)]
            attempts: dict[int, list[dict[str, Any]]] = {row.id: [] for row in found}
            if found:
                rows = await conn.execute(
                    sa.select(delivery_attempts)
                    .where(delivery_attempts.c.notification_id.in_(list(attempts)))
                    .order_by(delivery_attempts.c.id)
                )
                for row in rows:
                    attempts[row.notification_id].append(row._asdict())
        return [(row, attempts[row.id]) for row in found]

    async def write_silences(self, rows: Sequence[SilenceRow], deleted: Iterable[str] = ()) -> None:
        await self._write(_write_silences, rows, list(deleted))

    async def enqueue(
        self, outbox: Sequence[OutboxRow], nflog: Sequence[NflogRow], superseded: Sequence[int]
    ) -> list[int]:
        """In one transaction: insert the notifications (a row whose idempotency key is
        already stored is not inserted again: its id is returned), record what each
        integration has been told (``nflog``), and mark the ``superseded`` pending ones.
        Returns the ids of ``outbox``, in order."""
        ids: list[int] = await self._write(_enqueue, outbox, nflog, superseded)
        return ids

    async def record_attempt(
        self,
        row: OutboxRow,
        *,
        ts: float,
        duration: float,
        outcome: str,
        detail: str | None,
    ) -> None:
        """Record one delivery attempt and the notification's new state (``row`` as it is
        after the attempt)."""
        await self._write(_record_attempt, row, ts, duration, outcome, detail)

    async def finish(self, ids: Sequence[int], state: str, at: float, reason: str) -> None:
        """Mark pending notifications as finished without an attempt (expired...)."""
        await self._write(_finish, list(ids), state, at, reason)

    async def notifications(self, *, limit: int = 100, state: str | None = None) -> list[OutboxRow]:
        """The newest notifications (for the API and the CLI)."""
        query = sa.select(notifications).order_by(notifications.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(notifications.c.state == state)
        async with self.engine.connect() as conn:
            return [_outbox_row(row) for row in await conn.execute(query)]

    async def attempts(self, notification_id: int) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(delivery_attempts)
                .where(delivery_attempts.c.notification_id == notification_id)
                .order_by(delivery_attempts.c.id)
            )
            return [row._asdict() for row in rows]


# -- the writes, each one transaction on a synchronous connection ----------------------

# statements made once, given their values when executed
_BY_KEY = sa.select(notifications.c.id).where(
    notifications.c.idempotency_key == sa.bindparam("key")
)
_NEW_NOTIFICATION = notifications.insert()
_NEW_ATTEMPT = delivery_attempts.insert()
_AFTER_ATTEMPT = notifications.update().where(notifications.c.id == sa.bindparam("row_id"))


def _write_alerts(
    conn: sa.Connection,
    rows: Sequence[AlertRow],
    gone: list[str],
    events: Sequence[EventRow],
    acks: Sequence[AckRow],
) -> None:
    if rows:
        _upsert_many(
            conn,
            alerts,
            ["fingerprint"],
            [
                {
                    **row,
                    "labels": _dumps(row["labels"]),
                    "annotations": _dumps(row["annotations"]),
                    "blocked_by": _dumps(list(row["blocked_by"])) if row["blocked_by"] else None,
                }
                for row in rows
            ],
        )
    for start in range(0, len(gone), 500):
        chunk = gone[start : start + 500]
        conn.execute(alerts.delete().where(alerts.c.fingerprint.in_(chunk)))
        conn.execute(alert_acks.delete().where(alert_acks.c.fingerprint.in_(chunk)))
    if events:
        _insert_many(
            conn,
            alert_events,
            _EVENT_COLUMNS,
            [
                (e["fingerprint"], e["at"], e["kind"], e["alertname"], e["target"],
                 e["actor"], e["interface"], _dumps(e["detail"]))
                for e in events
            ],
        )  # fmt: skip
    kept = [ack for ack in acks if ack["acked_by"] is not None or ack["assignee"] is not None]
    if kept:
        conn.execute(_upsert(conn, alert_acks, ["fingerprint"]), kept)
    dropped = [ack["fingerprint"] for ack in acks if ack not in kept]
    if dropped:
        conn.execute(alert_acks.delete().where(alert_acks.c.fingerprint.in_(dropped)))


def _write_escalations(
    conn: sa.Connection, rows: Sequence[dict[str, Any]], gone: list[str]
) -> None:
    if rows:
        conn.execute(_upsert(conn, escalations, ["id"]), list(rows))
    if gone:
        conn.execute(escalations.delete().where(escalations.c.id.in_(gone)))


def _write_silences(conn: sa.Connection, rows: Sequence[SilenceRow], gone: list[str]) -> None:
    if rows:
        conn.execute(
            _upsert(conn, silences, ["id"]),
            [
                {**row, "matchers": _dumps(row["matchers"]), "muted": _dumps(sorted(row["muted"]))}
                for row in rows
            ],
        )
    if gone:
        conn.execute(silences.delete().where(silences.c.id.in_(gone)))


def _enqueue(
    conn: sa.Connection,
    outbox: Sequence[OutboxRow],
    nflog: Sequence[NflogRow],
    superseded: Sequence[int],
) -> list[int]:
    ids: list[int] = []
    for row in outbox:
        existing = conn.scalar(_BY_KEY, {"key": row.idempotency_key})
        if existing is not None:
            ids.append(int(existing))
            continue
        result = conn.execute(
            _NEW_NOTIFICATION,
            {
                "idempotency_key": row.idempotency_key,
                "receiver": row.receiver,
                "integration": row.integration,
                "group_key": row.group_key,
                "payload": _dumps(row.payload),
                "state": row.state,
                "created_at": row.created_at,
                "next_attempt_at": row.next_attempt_at,
                "attempts": row.attempts,
            },
        )
        key = result.inserted_primary_key
        assert key is not None
        ids.append(int(key[0]))
    if nflog:
        conn.execute(
            _upsert(conn, notification_log, ["group_key", "integration"]),
            [
                {
                    "group_key": key,
                    "integration": integration,
                    "firing": _dumps(firing),
                    "resolved": _dumps(resolved),
                    "sent_at": sent_at,
                    "acked": _dumps(acked),
                }
                for key, integration, firing, resolved, sent_at, acked in nflog
            ],
        )
    if superseded:
        conn.execute(
            notifications.update()
            .where(notifications.c.id.in_(list(superseded)))
            .where(notifications.c.state == "pending")
            .values(state="superseded")
        )
    return ids


def _record_attempt(
    conn: sa.Connection,
    row: OutboxRow,
    ts: float,
    duration: float,
    outcome: str,
    detail: str | None,
) -> None:
    conn.execute(
        _NEW_ATTEMPT,
        {
            "notification_id": row.id,
            "ts": ts,
            "duration": duration,
            "outcome": outcome,
            "detail": detail,
        },
    )
    conn.execute(
        _AFTER_ATTEMPT,
        {
            "row_id": row.id,
            "state": row.state,
            "next_attempt_at": row.next_attempt_at,
            "attempts": row.attempts,
            "last_error": row.last_error,
            "finished_at": row.finished_at,
        },
    )


def _finish(conn: sa.Connection, ids: list[int], state: str, at: float, reason: str) -> None:
    conn.execute(
        notifications.update()
        .where(notifications.c.id.in_(ids))
        .values(state=state, finished_at=at, last_error=reason)
    )


def _outbox_row(row: Any) -> OutboxRow:
    return OutboxRow(
        id=row.id,
        idempotency_key=row.idempotency_key,
        receiver=row.receiver,
        integration=row.integration,
        group_key=row.group_key,
        payload=orjson.loads(row.payload),
        state=row.state,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        attempts=row.attempts,
        last_error=row.last_error,
        finished_at=row.finished_at,
    )
