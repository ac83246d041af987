"""The audit log: one row per change made through the API.

Handlers that change something call :func:`audit` with the resource before and after;
the auth middleware writes a row for every other write request (its method, path and
the status answered), so nothing changes unrecorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
import structlog
from aiohttp import web

from pudimd.auth.principal import actor
from pudimd.store.tables import audit_log

if TYPE_CHECKING:
    from pudimd.store.threaded import AsyncEngine

__all__ = ["AuditEntry", "audit", "list_audit", "record"]

log = structlog.get_logger("pudimd.auth.audit")

AUDITED: web.RequestKey[bool] = web.RequestKey("pudimd.audited", bool)
"""Request key set once a handler audited its request."""

ENGINE: web.RequestKey[AsyncEngine] = web.RequestKey("pudimd.audit_engine")
"""Request key of the engine to write to (set by the middleware)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log."""

    id: int
    at: float
    actor: str
    address: str | None
    method: str
    path: str
    action: str
    status: int
    before: Any = None
    after: Any = None

    def as_json(self) -> dict[str, Any]:
        """The entry as the API shows it."""
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "address": self.address,
            "method": self.method,
            "path": self.path,
            "action": self.action,
            "status": self.status,
            "before": self.before,
            "after": self.after,
        }


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, default=str).decode()


async def record(
    engine: AsyncEngine,
    *,
    actor: str,
    address: str | None,
    method: str,
    path: str,
    action: str,
    status: int,
    before: Any = None,
    after: Any = None,
) -> None:
    """Write one row."""
    values = {
        "at": time.time(),
        "actor": actor or "anonymous",
        "address": address,
        "method": method[:8],
        "path": path,
        "action": action,
        "status": status,
        "before": _json(before),
        "after": _json(after),
    }
    async with engine.begin() as conn:
        await conn.execute(audit_log.insert().values(**values))


async def audit(
    request: web.Request,
    action: str,
    before: Any = None,
    after: Any = None,
    *,
    status: int = 200,
    who: str | None = None,
) -> None:
    """Record that the caller of ``request`` did ``action`` (``targets.update``), with the
    resource ``before`` and ``after`` (JSON-able; None: absent); ``who`` overrides the
    caller's name.  The middleware then writes
    no row of its own for this request.  A failure to write is logged, never raised."""
    request[AUDITED] = True
    engine = request.get(ENGINE)
    if engine is None:
        return
    try:
        await record(
            engine,
            actor=who or actor(request, "anonymous"),
            address=request.remote,
            method=request.method,
            path=request.path,
            action=action,
            status=status,
            before=before,
            after=after,
        )
    except Exception as exc:
        log.error("cannot write the audit log", action=action, error=str(exc))


async def list_audit(
    engine: AsyncEngine, *, limit: int = 100, before_id: int | None = None
) -> list[AuditEntry]:
    """The newest ``limit`` rows (older than row ``before_id`` when given), newest first."""
    query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        AuditEntry(
            id=int(row.id),
            at=float(row.at),
            actor=row.actor,
            address=row.address,
            method=row.method,
            path=row.path,
            action=row.action,
            status=int(row.status),
            before=None if row.before is None else orjson.loads(row.before),
            after=None if row.after is None else orjson.loads(row.after),
        )
        for row in rows
    ]
