"""Wiring auth into the daemon's aiohttp application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from pudimd.auth.guard import Guard, security_headers
from pudimd.auth.routes import auth_routes

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

__all__ = ["GUARD", "install"]

GUARD: web.AppKey[Guard] = web.AppKey("pudimd.auth.guard")


def install(app: web.Application, daemon: Daemon) -> Guard:
    """Put the auth middleware first in ``app``, add the auth endpoints and the security
    headers of every answer."""
    guard = Guard(daemon)
    app[GUARD] = guard
    app.middlewares.insert(0, guard.middleware)
    app.router.add_routes(auth_routes(guard))
    app.on_response_prepare.append(security_headers)

    async def closed(_app: web.Application) -> None:
        await guard.close()

    app.on_cleanup.append(closed)
    return guard
