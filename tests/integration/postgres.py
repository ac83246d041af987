"""The PostgreSQL server the integration tests use (127.0.0.1:5432, trust auth, database
``test``), and a scratch database on it per test."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from tests.helpers import missing

__all__ = ["SERVER", "admin", "scratch_database"]

SERVER = "postgres@127.0.0.1:5432"


async def admin() -> Any:
    """A connection to the ``test`` database (a missing server: skip, or fail under CI)."""
    try:
        return await asyncpg.connect(f"postgresql://{SERVER}/test", timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        missing("PostgreSQL at 127.0.0.1:5432")


@asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """The SQLAlchemy URL of a new empty database, dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    conn = await admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"postgresql://{SERVER}/{name}"
    finally:
        conn = await admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
