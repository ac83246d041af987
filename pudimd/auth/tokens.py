"""API tokens: 256 random bits, shown once when created, stored as their SHA-256 (a token
is not a password: it cannot be guessed, so a fast hash is the right one), with a role,
optional scopes, optional expiry and the time it was last used.

A token looks like ``pudimd_<43 base64url characters>``; the prefix lets secret scanners
and operators recognise it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import sqlalchemy as sa

from pudimd.store.tables import api_tokens
from pudimd.store.threaded import AsyncEngine

__all__ = [
    "ROLES",
    "TOKEN_PREFIX",
    "Role",
    "TokenInfo",
    "create_token",
    "find_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
    "touch_token",
]

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
TOKEN_PREFIX = "pudimd_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token, never its secret."""

    id: int
    name: str
    role: Role
    prefix: str
    created_at: float
    created_by: str
    scopes: tuple[str, ...] = ()
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def usable(self, now: float | None = None) -> bool:
        """Not revoked and not expired."""
        moment = time.time() if now is None else now
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > moment


def hash_token(token: str) -> str:
    """Hex SHA-256 of ``token``: what the store keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _info(row: Any) -> TokenInfo:
    values = row._asdict()
    return TokenInfo(
        id=int(values["id"]),
        name=values["name"],
        role=values["role"],
        prefix=values["prefix"],
        created_at=float(values["created_at"]),
        created_by=values["created_by"],
        scopes=tuple(orjson.loads(values["scopes"])),
        expires_at=values["expires_at"],
        last_used_at=values["last_used_at"],
        revoked_at=values["revoked_at"],
    )


_COLUMNS = tuple(c for c in api_tokens.c if c.name != "token_hash")


async def create_token(
    engine: AsyncEngine,
    name: str,
    role: Role,
    *,
    scopes: tuple[str, ...] | list[str] = (),
    expires_at: float | None = None,
    created_by: str = "cli",
) -> tuple[str, TokenInfo]:
    """Create a token: its secret (to show once) and what is stored.  Raises ValueError on a
    bad role or name, SQLAlchemy's errors on a database failure."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not name.strip():
        raise ValueError("a token needs a name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    values = {
        "name": name,
        "role": role,
        "scopes": orjson.dumps(list(scopes)).decode(),
        "token_hash": hash_token(secret),
        "prefix": secret[: len(TOKEN_PREFIX) + 6],
        "created_at": time.time(),
        "created_by": created_by,
        "expires_at": expires_at,
    }
    async with engine.begin() as conn:
        result = await conn.execute(api_tokens.insert().values(**values))
        token_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        row = (await conn.execute(sa.select(*_COLUMNS).where(api_tokens.c.id == token_id))).one()
    return secret, _info(row)


async def find_token(engine: AsyncEngine, secret: str) -> TokenInfo | None:
    """The stored token whose secret is ``secret`` (revoked and expired ones included: the
    caller decides), or None."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    query = sa.select(*_COLUMNS).where(api_tokens.c.token_hash == hash_token(secret))
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else _info(row)


async def touch_token(engine: AsyncEngine, token_id: int, at: float | None = None) -> None:
    """Record that token ``token_id`` was used at ``at`` (now)."""
    moment = time.time() if at is None else at
    async with engine.begin() as conn:
        await conn.execute(
            api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=moment)
        )


async def list_tokens(engine: AsyncEngine, *, include_revoked: bool = False) -> list[TokenInfo]:
    """Every token, oldest first."""
    query = sa.select(*_COLUMNS).order_by(api_tokens.c.id)
    if not include_revoked:
        query = query.where(api_tokens.c.revoked_at.is_(None))
    async with engine.connect() as conn:
        return [_info(row) for row in await conn.execute(query)]


async def revoke_token(engine: AsyncEngine, token_id: int) -> bool:
    """Revoke token ``token_id``; False when there is no such token or it was revoked."""
    async with engine.begin() as conn:
        result = await conn.execute(
            api_tokens.update()
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
    return bool(result.rowcount)
