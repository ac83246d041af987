"""The auth middleware: who is calling (a bearer token, or a signed-in web session), may
they (roles and scopes, :mod:`pudimd.auth.policy`), how often (rate limits), from where
(``auth.allow``), and the audit row of every write.

``/api/v1`` needs credentials unless ``auth.enabled`` is false; ``/api/v2``, the
Alertmanager webhook receiver and ``/metrics`` need them only when ``auth.alertmanager_api``
or ``auth.metrics`` say so.  Every answer gets the security headers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from pudimd.api.problems import problem_response
from pudimd.auth import policy
from pudimd.auth.audit import AUDITED, ENGINE, record
from pudimd.auth.config import AuthConfig, EndpointAuth
from pudimd.auth.passwords import DUMMY_HASH, verify_password
from pudimd.auth.principal import ANONYMOUS, PRINCIPAL, Principal
from pudimd.auth.ratelimit import Buckets, too_many
from pudimd.auth.sessions import COOKIE, Session, find_session
from pudimd.auth.tokens import TokenInfo, find_token, hash_token, touch_token

if TYPE_CHECKING:
    from pudimd.daemon import Daemon
    from pudimd.store.threaded import AsyncEngine

__all__ = ["CACHE_SECONDS", "TOUCH_SECONDS", "Guard"]

log = structlog.get_logger("pudimd.auth")

CACHE_SECONDS = 5.0
"""How long a token or session lookup is reused (a revocation takes effect within it)."""

TOUCH_SECONDS = 60.0
"""A token's ``last_used_at`` is written at most this often."""

_CACHE_MAX = 10_000
_HEALTH = frozenset({"/-/healthy", "/-/ready"})
_WEBHOOK = "/api/v1/alertmanager/webhook"
_LINKS = "/api/v1/actions/"

CORS_ORIGIN: web.RequestKey[str] = web.RequestKey("pudimd.cors_origin", str)
"""The listed origin a request came from (CORS headers go on its answer)."""
_CSRF_HEADER = "X-CSRF-Token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _unauthorized(detail: str = "missing or invalid credentials") -> web.Response:
    response = problem_response(401, detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="pudimd"'
    return response


class Guard:
    """The auth state of one application: caches, rate-limit buckets, background touches."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        limits = self.config.rate_limit
        self.token_buckets = Buckets(limits.per_token.rate, limits.per_token.burst)
        self.address_buckets = Buckets(limits.per_address.rate, limits.per_address.burst)
        self.login_buckets = Buckets(limits.login.rate, limits.login.burst)
        self._tokens: dict[str, tuple[float, TokenInfo | None]] = {}
        self._sessions: dict[str, tuple[float, Session | None]] = {}
        self._basic: dict[str, float] = {}
        self._touched: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._configured: AuthConfig | None = None
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []

    # -- state ------------------------------------------------------------------------

    @property
    def config(self) -> AuthConfig:
        """The running config's ``auth`` section (reloads apply at once)."""
        config = self.daemon.config
        return config.auth if config is not None else AuthConfig()

    @property
    def engine(self) -> AsyncEngine:
        assert self.daemon.store is not None, "the daemon's store is not open"
        return self.daemon.store.engine

    def _refresh(self, config: AuthConfig) -> None:
        if config is self._configured:
            return
        self._configured = config
        limits = config.rate_limit
        self.token_buckets.configure(limits.per_token.rate, limits.per_token.burst)
        self.address_buckets.configure(limits.per_address.rate, limits.per_address.burst)
        self.login_buckets.configure(limits.login.rate, limits.login.burst)
        self._networks = [ipaddress.ip_network(net, strict=False) for net in config.allow]
        self._basic.clear()

    def forget(self) -> None:
        """Drop cached lookups (a token revoked, a session ended)."""
        self._tokens.clear()
        self._sessions.clear()

    async def close(self) -> None:
        """Wait for the background ``last_used_at`` writes."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)

    # -- lookups ----------------------------------------------------------------------

    async def token(self, secret: str) -> TokenInfo | None:
        """The usable token ``secret`` (cached for :data:`CACHE_SECONDS`), or None."""
        key = hash_token(secret)
        now = time.monotonic()
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > now:
            info = cached[1]
        else:
            info = await find_token(self.engine, secret)
            if len(self._tokens) >= _CACHE_MAX:
                self._tokens.clear()
            self._tokens[key] = (now + CACHE_SECONDS, info)
        if info is None or not info.usable():
            return None
        self._touch(info.id, now)
        return info

    def _touch(self, token_id: int, now: float) -> None:
        if now - self._touched.get(token_id, -TOUCH_SECONDS) < TOUCH_SECONDS:
            return
        self._touched[token_id] = now
        task = asyncio.get_running_loop().create_task(self._write_touch(token_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_touch(self, token_id: int) -> None:
        try:
            await asyncio.wait_for(touch_token(self.engine, token_id), timeout=10.0)
        except Exception as exc:
            log.warning("cannot record a token's last use", token=token_id, error=str(exc))

    async def session(self, cookie: str) -> Session | None:
        """The usable session of ``cookie`` (cached briefly), or None."""
        key = hashlib.sha256(cookie.encode()).hexdigest()
        now = time.monotonic()
        cached = self._sessions.get(key)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            found = await find_session(self.engine, cookie)
            if len(self._sessions) >= _CACHE_MAX:
                self._sessions.clear()
            self._sessions[key] = (now + CACHE_SECONDS, found)
        return found if found is not None and found.usable() else None

    # -- the middleware ---------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request of the application goes through here."""
        config = self.config
        self._refresh(config)
        path = request.path
        if self._networks and path not in _HEALTH and not self._address_allowed(request.remote):
            if path.startswith("/api/v1/"):
                return problem_response(403, "this address may not use pudimd's HTTP API")
            return web.Response(status=403, text="Forbidden\n")
        if path == _WEBHOOK or path.startswith("/api/v2/"):
            refused = await self._endpoint(request, config.alertmanager_api)
            if refused is not None:
                return refused
            return await handler(request)
        if path == "/metrics":
            refused = await self._endpoint(request, config.metrics)
            return refused if refused is not None else await handler(request)
        if path.startswith("/api/v1/"):
            return await self._api(request, handler, config)
        return await handler(request)

    def _address_allowed(self, remote: str | None) -> bool:
        if remote is None:
            return False
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    async def _api(
        self, request: web.Request, handler: Handler, config: AuthConfig
    ) -> web.StreamResponse:
        origin = self._cors_origin(request, config)
        if (
            origin is not None
            and request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
        ):
            return self._preflight(origin, config)
        if origin is not None:
            request[CORS_ORIGIN] = origin  # answered by security_headers, also on streams
        request[ENGINE] = self.engine
        path = request.path
        if policy.is_exempt(path):
            wait = self.address_buckets.take(f"a:{request.remote}")
            if wait:
                response: web.StreamResponse = too_many(wait)
            elif path.startswith(_LINKS):  # signed links: audited, as the link
                response = await self._handle(request, handler)
            else:
                response = await handler(request)
        elif not config.enabled:
            request[PRINCIPAL] = ANONYMOUS
            response = await self._handle(request, handler)
        else:
            found = await self._authenticate(request)
            if isinstance(found, web.StreamResponse):
                response = found
            else:
                response = await self._authorize(request, handler, found)
        return response

    async def _authenticate(self, request: web.Request) -> Principal | web.StreamResponse:
        """The caller, or the answer refusing them (401, or 429 past the address limit)."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        principal: Principal | None = None
        bucket = ""
        if scheme.lower() == "bearer" and value.strip():
            info = await self.token(value.strip())
            if info is not None:
                principal = Principal(
                    f"token:{info.name}", info.role, "token", info.scopes, token_id=info.id
                )
                bucket = f"t:{info.id}"
        elif not header and (cookie := request.cookies.get(COOKIE)):
            session = await self.session(cookie)
            user = None
            if session is not None:
                user = next((u for u in self.config.users if u.name == session.username), None)
            if session is not None and user is not None:
                principal = Principal(
                    f"user:{user.name}",
                    user.role,
                    "user",
                    tuple(user.scopes),
                    csrf=session.csrf,
                )
                bucket = f"s:{session.id_hash}"
        if principal is None:
            wait = self.address_buckets.take(f"a:{request.remote}")
            return too_many(wait) if wait else _unauthorized()
        wait = self.token_buckets.take(bucket)
        if wait:
            return too_many(wait)
        return principal

    async def _authorize(
        self, request: web.Request, handler: Handler, principal: Principal
    ) -> web.StreamResponse:
        if not policy.allowed(principal.role, principal.scopes, request.method, request.path):
            return problem_response(403, f"{principal.name} may not do this")
        if principal.csrf is not None and not policy.is_read(request.method):
            sent = request.headers.get(_CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
                return problem_response(403, f"missing or wrong {_CSRF_HEADER} header")
        request[PRINCIPAL] = principal
        return await self._handle(request, handler)

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run the handler; write the audit row of a write no handler audited."""
        if policy.is_read(request.method):
            return await handler(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if not request.get(AUDITED):
                await self._audit_row(request, status)

    async def _audit_row(self, request: web.Request, status: int) -> None:
        principal = request.get(PRINCIPAL)
        rule = policy.rule_for(request.path)
        if principal is not None:
            who = principal.name
        else:
            who = "link" if request.path.startswith(_LINKS) else "anonymous"
        try:
            await record(
                self.engine,
                actor=who,
                address=request.remote,
                method=request.method,
                path=request.path,
                action=f"{rule.resource}.{request.method.lower()}",
                status=status,
            )
        except Exception as exc:
            log.error("cannot write the audit log", path=request.path, error=str(exc))

    # -- CORS -------------------------------------------------------------------------

    @staticmethod
    def _cors_origin(request: web.Request, config: AuthConfig) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None or origin not in config.cors.origins:
            return None
        return origin

    @staticmethod
    def _preflight(origin: str, config: AuthConfig) -> web.Response:
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, X-CSRF-Token",
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Max-Age": str(int(config.cors.max_age.total_seconds())),
                "Vary": "Origin",
            },
        )

    # -- /api/v2, the webhook receiver, /metrics --------------------------------------

    async def _endpoint(self, request: web.Request, conf: EndpointAuth) -> web.Response | None:
        """None when ``request`` may use an endpoint protected by ``conf``, else the 401
        (or 429) answer."""
        if not conf.protected:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        basic = bool(conf.basic_auth_users)
        if scheme.lower() == "basic" and basic and await self._basic_ok(conf, value):
            return None
        if scheme.lower() == "bearer" and value:
            expected = conf.bearer_token_file
            if expected is not None and hmac.compare_digest(
                value.encode(), expected.get_secret_value().encode()
            ):
                return None
            if conf.api_tokens and await self.token(value) is not None:
                return None
        wait = self.address_buckets.take(f"a:{request.remote}")
        if wait:
            return too_many(wait)
        # plain text, as Prometheus' web.yml answers: amtool cannot read a problem document
        challenge = 'Basic realm="pudimd"' if basic else 'Bearer realm="pudimd"'
        return web.Response(
            status=401, text="Unauthorized\n", headers={"WWW-Authenticate": challenge}
        )

    async def _basic_ok(self, conf: EndpointAuth, value: str) -> bool:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        encoded = conf.basic_auth_users.get(user)
        key = hashlib.sha256(f"{user}\0{password}\0{encoded}".encode()).hexdigest()
        now = time.monotonic()
        if self._basic.get(key, 0.0) > now:
            return True
        ok = await verify_password(encoded or DUMMY_HASH, password) and encoded is not None
        if ok:
            if len(self._basic) >= _CACHE_MAX:
                self._basic.clear()
            self._basic[key] = now + TOUCH_SECONDS
        return ok


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the headers every answer carries (a handler's own win)."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if response.content_type == "text/html":
        headers.setdefault("Content-Security-Policy", "default-src 'self'")
    if request.path.startswith("/api/v1/"):
        headers.setdefault("Cache-Control", "no-store")
    origin = request.get(CORS_ORIGIN)
    if origin is not None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
        headers.add("Vary", "Origin")
