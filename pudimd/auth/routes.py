"""The auth endpoints of ``/api/v1``:

=====================================  ==========================================================
``POST /api/v1/login``                 ``{username, password, totp?}``: sets the session cookie,
                                       answers ``{user, role, csrf_token, expires_at}``
``POST /api/v1/logout``                ends the session
``GET /api/v1/whoami``                 the caller: ``{name, kind, role, scopes}``
``GET /api/v1/tokens``                 every token that is not revoked (``?revoked=true``: all)
``POST /api/v1/tokens``                ``{name, role, scopes?, expires?}``: the new token,
                                       shown once (201)
``DELETE /api/v1/tokens/{id}``         revoke (204; 404 when there is no such live token)
``GET /api/v1/audit``                  the audit log, newest first; ``limit``, ``cursor``
=====================================  ==========================================================
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pudimd.api._amjson import read_json
from pudimd.api.problems import Problem, answers_problems, limit_param
from pudimd.auth import policy
from pudimd.auth.audit import audit, list_audit
from pudimd.auth.passwords import DUMMY_HASH, verify_password
from pudimd.auth.principal import actor, principal
from pudimd.auth.ratelimit import too_many
from pudimd.auth.sessions import COOKIE, create_session, delete_session
from pudimd.auth.tokens import ROLES, TokenInfo, create_token, list_tokens, revoke_token

if TYPE_CHECKING:
    from pudimd.auth.guard import Guard

__all__ = ["auth_routes", "token_json"]


def token_json(info: TokenInfo) -> dict[str, Any]:
    """A token as the API and ``pudimd tokens list --json`` show it (never its secret)."""
    return {
        "id": info.id,
        "name": info.name,
        "role": info.role,
        "scopes": list(info.scopes),
        "prefix": info.prefix,
        "created_at": info.created_at,
        "created_by": info.created_by,
        "expires_at": info.expires_at,
        "last_used_at": info.last_used_at,
        "revoked_at": info.revoked_at,
    }


def check_scopes(scopes: list[str]) -> list[str]:
    """``scopes`` if each names a resource (``alerts`` or ``alerts:read``).  Raises
    ValueError."""
    known = policy.resources()
    for scope in scopes:
        resource, _, mode = scope.partition(":")
        if resource not in known or mode not in ("", "read"):
            raise ValueError(
                f"unknown scope {scope!r}: expected RESOURCE or RESOURCE:read, "
                f"RESOURCE one of {', '.join(known)}"
            )
    return scopes


def _field(body: dict[str, Any], name: str, kind: type, required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise Problem(
                400, f"{name} is required", errors=[{"field": name, "message": "required"}]
            )
        return None
    if not isinstance(value, kind):
        raise Problem(
            400,
            f"{name} must be a {kind.__name__}",
            errors=[{"field": name, "message": f"not a {kind.__name__}"}],
        )
    return value


async def _object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise Problem(400, "the request body must be a JSON object")
    return body


class _AuthAPI:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    # -- tokens -----------------------------------------------------------------------

    async def tokens(self, request: web.Request) -> web.StreamResponse:
        revoked = request.query.get("revoked", "false").lower() in ("1", "true", "yes")
        found = await list_tokens(self.guard.engine, include_revoked=revoked)
        return web.json_response({"tokens": [token_json(info) for info in found]})

    async def create(self, request: web.Request) -> web.StreamResponse:
        from pudimd.durations import parse_duration

        body = await _object(request)
        unknown = sorted(set(body) - {"name", "role", "scopes", "expires"})
        if unknown:
            raise Problem(400, f"unknown field {unknown[0]!r}")
        name = _field(body, "name", str, required=True)
        role = _field(body, "role", str, required=True)
        if role not in ROLES:
            raise Problem(400, f"role must be one of {', '.join(ROLES)}")
        scopes = _field(body, "scopes", list) or []
        if not all(isinstance(s, str) for s in scopes):
            raise Problem(400, "scopes must be a list of strings")
        try:
            check_scopes(scopes)
        except ValueError as exc:
            raise Problem(
                400, str(exc), errors=[{"field": "scopes", "message": str(exc)}]
            ) from None
        expires = body.get("expires")
        expires_at = None
        if expires is not None:
            try:
                expires_at = time.time() + parse_duration(expires).total_seconds()
            except ValueError as exc:
                raise Problem(400, f"expires: {exc}") from None
        try:
            secret, info = await create_token(
                self.guard.engine,
                name,
                role,
                scopes=scopes,
                expires_at=expires_at,
                created_by=actor(request, "api"),
            )
        except ValueError as exc:
            raise Problem(400, str(exc)) from None
        shown = token_json(info)
        await audit(request, "tokens.create", after=shown, status=201)
        return web.json_response({**shown, "token": secret}, status=201)

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        try:
            token_id = int(request.match_info["id"])
        except ValueError:
            raise Problem(400, "id must be a whole number") from None
        before = next((t for t in await list_tokens(self.guard.engine) if t.id == token_id), None)
        if before is None or not await revoke_token(self.guard.engine, token_id):
            raise Problem(404, f"no live token {token_id}")
        self.guard.forget()
        await audit(request, "tokens.revoke", before=token_json(before), status=204)
        return web.Response(status=204)

    # -- audit ------------------------------------------------------------------------

    async def audit_log(self, request: web.Request) -> web.StreamResponse:
        limit = limit_param(request.query, 100)
        cursor_text = request.query.get("cursor")
        cursor = None
        if cursor_text:
            try:
                cursor = int(cursor_text)
            except ValueError:
                raise Problem(400, "cursor must be the next_cursor of an earlier page") from None
        entries = await list_audit(self.guard.engine, limit=limit, before_id=cursor)
        next_cursor = str(entries[-1].id) if len(entries) == limit else None
        return web.json_response(
            {"entries": [e.as_json() for e in entries], "next_cursor": next_cursor}
        )

    # -- web sessions -----------------------------------------------------------------

    async def login(self, request: web.Request) -> web.StreamResponse:
        import pyotp

        guard = self.guard
        key = f"l:{request.remote}"
        wait = guard.login_buckets.peek(key)
        if wait:
            return too_many(wait, "too many failed sign-ins; try again later")
        body = await _object(request)
        username = _field(body, "username", str, required=True)
        password = _field(body, "password", str, required=True)
        code = _field(body, "totp", str)
        user = next((u for u in guard.config.users if u.name == username), None)
        ok = await verify_password(user.password_hash if user else DUMMY_HASH, password)
        if ok and user is not None and user.totp_secret_file is not None:
            totp = pyotp.TOTP(user.totp_secret_file.get_secret_value())
            ok = code is not None and totp.verify(code, valid_window=1)
        if not ok or user is None:
            guard.login_buckets.take(key)
            await audit(request, "login.failed", after={"username": username}, status=401)
            raise Problem(401, "wrong user name, password or code")
        ttl = guard.config.session_ttl.total_seconds()
        cookie, session = await create_session(guard.engine, user.name, ttl, request.remote)
        response = web.json_response(
            {
                "user": user.name,
                "role": user.role,
                "csrf_token": session.csrf,
                "expires_at": session.expires_at,
            }
        )
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(ttl),
            path="/",
            httponly=True,
            secure=guard.config.cookie_secure,
            samesite="Strict",
        )
        await audit(request, "login", after={"username": user.name}, who=f"user:{user.name}")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        cookie = request.cookies.get(COOKIE)
        if cookie:
            await delete_session(self.guard.engine, cookie)
            self.guard.forget()
        response = web.Response(status=204)
        response.del_cookie(COOKIE, path="/")
        return response

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        found = principal(request)
        if found is None:
            raise Problem(401, "missing or invalid credentials")
        return web.json_response(
            {
                "name": found.name,
                "kind": found.kind,
                "role": found.role,
                "scopes": list(found.scopes),
            }
        )


def auth_routes(guard: Guard) -> list[web.RouteDef]:
    """The routes of the auth endpoints."""
    api = _AuthAPI(guard)
    return [
        web.post("/api/v1/login", answers_problems(api.login)),
        web.post("/api/v1/logout", answers_problems(api.logout)),
        web.get("/api/v1/whoami", answers_problems(api.whoami)),
        web.get("/api/v1/tokens", answers_problems(api.tokens)),
        web.post("/api/v1/tokens", answers_problems(api.create)),
        web.delete("/api/v1/tokens/{id}", answers_problems(api.revoke)),
        web.get("/api/v1/audit", answers_problems(api.audit_log)),
    ]
