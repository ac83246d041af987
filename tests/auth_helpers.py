"""Credentials for tests that call the daemon's API: an admin token made in its store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pudimd.auth.tokens import Role, create_token

if TYPE_CHECKING:
    from pudimd.daemon import Daemon
    from pudimd.store.threaded import AsyncEngine


async def token_for(engine: AsyncEngine, role: Role = "admin", name: str = "test") -> str:
    """A new token of ``role`` in the store behind ``engine``."""
    secret, _ = await create_token(engine, name, role, created_by="test")
    return secret


async def auth_headers(daemon: Daemon, role: Role = "admin") -> dict[str, str]:
    """``Authorization: Bearer`` headers of a new ``role`` token of the running ``daemon``."""
    assert daemon.store is not None, "the daemon is not running"
    return {"Authorization": f"Bearer {await token_for(daemon.store.engine, role)}"}
