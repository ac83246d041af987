"""Web sign-in sessions: a random cookie (only its SHA-256 is stored), its CSRF token and
its expiry, in ``web_sessions``."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from pudimd.store.tables import web_sessions
from pudimd.store.threaded import AsyncEngine

__all__ = ["COOKIE", "Session", "create_session", "delete_session", "find_session"]

COOKIE = "pudimd_session"


@dataclass(frozen=True, slots=True)
class Session:
    """A stored session, never its cookie."""

    id_hash: str
    username: str
    csrf: str
    created_at: float
    expires_at: float

    def usable(self, now: float | None = None) -> bool:
        """Not expired."""
        return self.expires_at > (time.time() if now is None else now)


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()


async def create_session(
    engine: AsyncEngine, username: str, ttl: float, address: str | None
) -> tuple[str, Session]:
    """A new session of ``username`` lasting ``ttl`` seconds: its cookie value and what is
    stored.  Expired sessions are deleted on the way."""
    cookie = secrets.token_urlsafe(32)
    now = time.time()
    session = Session(_hash(cookie), username, secrets.token_urlsafe(32), now, now + ttl)
    async with engine.begin() as conn:
        await conn.execute(web_sessions.delete().where(web_sessions.c.expires_at <= now))
        await conn.execute(
            web_sessions.insert().values(
                id_hash=session.id_hash,
                username=username,
                csrf=session.csrf,
                created_at=now,
                expires_at=session.expires_at,
                last_seen_at=now,
                address=address,
            )
        )
    return cookie, session


async def find_session(engine: AsyncEngine, cookie: str) -> Session | None:
    """The session whose cookie is ``cookie`` (expired ones included), or None."""
    query = sa.select(
        web_sessions.c.id_hash,
        web_sessions.c.username,
        web_sessions.c.csrf,
        web_sessions.c.created_at,
        web_sessions.c.expires_at,
    ).where(web_sessions.c.id_hash == _hash(cookie))
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    return Session(row.id_hash, row.username, row.csrf, row.created_at, row.expires_at)


async def delete_session(engine: AsyncEngine, cookie: str) -> bool:
    """End the session of ``cookie``; False when there was none."""
    async with engine.begin() as conn:
        result = await conn.execute(
            web_sessions.delete().where(web_sessions.c.id_hash == _hash(cookie))
        )
    return bool(result.rowcount)
