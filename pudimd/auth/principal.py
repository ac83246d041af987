"""Who is making a request: set by the auth middleware as ``request["principal"]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from pudimd.auth.tokens import Role

__all__ = ["ANONYMOUS", "PRINCIPAL", "Principal", "actor", "principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: ``name`` is ``token:NAME``, ``user:NAME`` or ``anonymous``."""

    name: str
    role: Role
    kind: Literal["token", "user", "anonymous"]
    scopes: tuple[str, ...] = ()
    token_id: int | None = None
    csrf: str | None = None
    """The session's CSRF token (cookie sign-ins only)."""


PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
"""``request[PRINCIPAL]``: who is calling (absent on paths served without credentials)."""

ANONYMOUS = Principal("anonymous", "admin", "anonymous")
"""Who a request is when ``auth.enabled`` is false (labs only): allowed everything."""


def principal(request: web.Request) -> Principal | None:
    """The caller of ``request`` (None on paths served without credentials)."""
    return request.get(PRINCIPAL)


def actor(request: web.Request, default: str = "") -> str:
    """The name to record as who did something: the caller's (``token:deploy-bot``,
    ``user:alice``), else ``default``."""
    found = principal(request)
    if found is None or found.kind == "anonymous":
        return default
    return found.name
