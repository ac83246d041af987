"""The ``http`` probe: fetch a URL over a fresh connection, time each phase, judge the answer.

Target: an ``http://`` or ``https://`` URL.  Every check opens a new connection (no pooling,
``Connection: close``), as the Blackbox exporter does, so the phases mean the same thing on
every check.  The client is a small HTTP/1.1 client on asyncio protocols written for this
probe: aiohttp costs about twice the CPU per check and merges the TLS handshake into
``connect`` (see ``bench/bench_http_client.py``).

Settings (the block under ``http:`` in a target)::

    method: GET                        # request method
    headers: {}                        # extra request headers (may override Host, User-Agent)
    body: null                         # request body (text, sent as UTF-8)
    valid_status_codes: []             # accepted status codes; empty means any 2xx
    body_contains: null                # fail unless the body contains this text
    fail_if_body_matches_regex: []     # fail if the body matches any of these regexes
    fail_if_body_not_matches_regex: [] # fail unless the body matches every one of these regexes
    fail_if_ssl: false                 # fail if the final response came over TLS
    fail_if_not_ssl: false             # fail unless the final response came over TLS
    follow_redirects: true             # follow 301/302/303/307/308 Location headers
    max_redirects: 10                  # more redirects than this is a failure
    verify: true                       # verify the server certificate and host name
    ca_file: null                      # PEM CA bundle to verify against (instead of the system's)
    cert_file: null                    # PEM client certificate (mutual TLS)
    key_file: null                     # PEM key of cert_file (if not inside cert_file)
    server_name: null                  # TLS SNI and certificate name, instead of the URL's host
    proxy: null                        # http://[user:pass@]host:port; https targets use CONNECT
    ip_version: any                    # any | ipv4 | ipv6: address family to try first
    ip_fallback: true                  # with ipv4/ipv6, also try the other family's addresses
    username: null                     # basic auth user (password / password_file)
    password: null
    password_file: null
    bearer_token: null                 # "Authorization: Bearer ..." (or bearer_token_file)
    bearer_token_file: null
    max_body_bytes: 1048576            # a larger (decoded) body is a failure
    keepalive: false                   # reuse the target's connection between checks

``keepalive: true`` keeps the connection to the target open between checks (HTTP/1.1
keep-alive; not through a proxy): a check on a reused connection measures only
``first_byte`` and ``transfer`` (metric ``reused`` = 1), costs a fraction of the CPU, and
still opens a new connection whenever the server closed the old one.  A check whose reused
connection turns out dead before any answer is retried once on a new connection.

Result: ``status`` is the final HTTP status code; ``message`` names the failure
(``connection refused``, ``timeout after 2s during connect``, ``status 404 not in
[200..299]``, ``body does not contain 'ok'``, the TLS verification error...).

Phases (seconds, summed over redirects): ``dns``, ``connect``, ``tls``, ``first_byte``
(request sent to response headers read), ``transfer`` (body read).

Metrics: ``reused`` (1 when the check reused a kept-alive connection, else 0),
``content_length`` (the Content-Length header, when sent), ``body_bytes`` (decoded
body size), ``redirects``, ``http_version`` (1.0 or 1.1), ``ip_protocol`` (4 or 6),
``tls`` (1 or 0), ``cert_expiry_timestamp`` (earliest notAfter of the server's certificate
chain, Unix time; only over TLS), ``tls_version`` (1.2, 1.3...; only over TLS),
``last_modified_timestamp`` (the Last-Modified header as Unix time, when sent and valid),
``failed_due_to_regex`` (1 when a ``fail_if_body_*`` regex failed the check).

Values (for conditions): ``CONNECTED`` (a connection was made), ``IP`` (the address that
answered), ``BODY`` (the decoded body, bytes), ``HEADERS`` (response headers, lower-case
names: ``[HEADERS].content-type``), ``CERTIFICATE_EXPIRATION`` (seconds until the earliest
notAfter; only over TLS).  A failed check has ``CONNECTED`` only.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
import zlib
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urljoin, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

import pudimd
from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings, Regexes, SecretFile
from pudimd_plugins.probes._net import (
    Failure,
    PhaseClock,
    TlsClientSettings,
    cert_expiry,
    connect_first,
    error_text,
    ip_protocol,
    resolve,
)

if TYPE_CHECKING:
    from pudimd.blackbox import Metric

__all__ = ["HttpProbe", "HttpSettings", "pudimd_probe_types"]

_USER_AGENT = f"pudimd/{pudimd.__version__}"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADER_LIMIT = 64 * 1024
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie"})


class HttpSettings(PluginSettings, TlsClientSettings):
    """Settings of the ``http`` probe (see the module docstring)."""

    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    valid_status_codes: list[int] = Field(default_factory=list)
    body_contains: str | None = None
    fail_if_body_matches_regex: Regexes = Field(default_factory=list)
    fail_if_body_not_matches_regex: Regexes = Field(default_factory=list)
    fail_if_ssl: bool = False
    fail_if_not_ssl: bool = False
    follow_redirects: bool = True
    max_redirects: int = Field(default=10, ge=0)
    server_name: str | None = None
    proxy: str | None = None
    ip_version: Literal["any", "ipv4", "ipv6"] = "any"
    ip_fallback: bool = True
    username: str | None = None
    password: SecretStr | None = None
    password_file: SecretFile | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: SecretFile | None = None
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    keepalive: bool = False

    @field_validator("method")
    @classmethod
    def _method_token(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]+", value):
            raise ValueError(f"invalid HTTP method {value!r}")
        return value.upper()

    @field_validator("valid_status_codes")
    @classmethod
    def _status_codes(cls, value: list[int]) -> list[int]:
        for code in value:
            if not 100 <= code <= 599:
                raise ValueError(f"invalid HTTP status code {code}")
        return value

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError("proxy must be an http://host:port URL")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> HttpSettings:
        if self.bearer_token is not None and self.username is not None:
            raise ValueError("set username/password or bearer_token, not both")
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        if self.fail_if_ssl and self.fail_if_not_ssl:
            raise ValueError("set fail_if_ssl or fail_if_not_ssl, not both")
        return self


class _Conn(asyncio.Protocol):
    """A connection's receiving end: a buffer and a waiter, nothing else."""

    __slots__ = ("_waiter", "answered", "buf", "closed", "error", "transport")

    def __init__(self) -> None:
        self.answered = False  # any byte of the current response received
        self.buf = bytearray()
        self.closed = False
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.answered = True
        self.buf += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def more(self) -> None:
        """Wait for more data (or the end of the connection)."""
        if self.closed:
            if self.error is not None:
                raise Failure(error_text(self.error))
            raise Failure("connection closed by server")
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    async def line(self) -> bytes:
        """One CRLF-terminated line, without its terminator."""
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 2]
                return line
            if len(self.buf) > _HEADER_LIMIT:
                raise Failure("line too long in chunked body")
            await self.more()

    async def exactly(self, size: int) -> bytes:
        while len(self.buf) < size:
            await self.more()
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data


class _Response:
    __slots__ = ("body", "body_bytes", "content_length", "headers", "peer", "status", "version")

    def __init__(self) -> None:
        self.peer = ""  # the IP address answering
        self.status = 0
        self.version = 1.1
        self.headers: dict[str, str] = {}
        self.content_length: int | None = None
        self.body = b""
        self.body_bytes = 0


class _Target:
    """A parsed URL: what a request to it needs."""

    __slots__ = ("host", "host_header", "netloc", "path", "port", "scheme", "url", "userinfo")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise Failure(f"invalid URL {url!r}: expected http:// or https://")
        host = parts.hostname
        if not host:
            raise Failure(f"invalid URL {url!r}: no host")
        try:
            port = parts.port
        except ValueError:
            raise Failure(f"invalid URL {url!r}: bad port") from None
        self.url = url
        self.scheme = parts.scheme
        self.host = host
        default = 443 if parts.scheme == "https" else 80
        self.port = port or default
        bracketed = f"[{host}]" if ":" in host else host
        self.netloc = f"{bracketed}:{self.port}"
        self.host_header = bracketed if self.port == default else self.netloc
        path = parts.path or "/"
        self.path = f"{path}?{parts.query}" if parts.query else path
        self.userinfo: tuple[str, str] | None = None
        if parts.username is not None:
            self.userinfo = (unquote(parts.username), unquote(parts.password or ""))


def _basic(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class _Idle:
    """A kept-alive connection between two checks."""

    __slots__ = ("conn", "metrics", "origin", "transport")

    def __init__(
        self,
        origin: tuple[str, str],
        conn: _Conn,
        transport: asyncio.Transport,
        metrics: dict[str, float],
    ) -> None:
        self.origin = origin
        self.conn = conn
        self.transport = transport
        self.metrics = metrics  # what the connection's set-up measured (tls, expiry...)


class HttpProbe:
    """Check an HTTP(S) URL; see the module docstring."""

    type = "http"
    Settings = HttpSettings
    blackbox_prober = "http"  # serves blackbox modules on /probe (see _blackbox.py)

    @classmethod
    def from_blackbox(cls, prober: Mapping[str, Any]) -> HttpSettings:
        from pudimd_plugins.probes._blackbox import http_settings

        return http_settings(prober)

    @staticmethod
    def blackbox_metrics(result: ProbeResult) -> list[Metric]:
        from pudimd_plugins.probes._blackbox import http_metrics

        return http_metrics(result)

    @staticmethod
    def blackbox_target(target: str) -> str:
        from pudimd_plugins.probes._blackbox import http_target

        return http_target(target)

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._ssl: ssl.SSLContext | None = None  # made on first https use
        self._body = settings.body.encode() if settings.body is not None else None
        self._contains = settings.body_contains.encode() if settings.body_contains else None
        self._must_not = [re.compile(p.encode()) for p in settings.fail_if_body_matches_regex]
        self._must = [re.compile(p.encode()) for p in settings.fail_if_body_not_matches_regex]
        self._auth: str | None = None
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else ""
            self._auth = _basic(settings.username, password)
        elif settings.bearer_token is not None:
            self._auth = f"Bearer {settings.bearer_token.get_secret_value()}"
        self._headers = {k.lower(): (k, v) for k, v in settings.headers.items()}
        self._proxy: _Target | None = None
        self._proxy_auth: str | None = None
        if settings.proxy is not None:
            self._proxy = _Target(settings.proxy)
            if self._proxy.userinfo is not None:
                self._proxy_auth = _basic(*self._proxy.userinfo)
        self._parsed: dict[str, _Target] = {}
        self._keepalive = settings.keepalive and settings.proxy is None
        self._idle: _Idle | None = None

    async def aclose(self) -> None:
        """Close the kept-alive connection, if any."""
        self._drop_idle()

    def _drop_idle(self) -> None:
        if self._idle is not None:
            self._idle.transport.abort()
            self._idle = None

    def _take_idle(self, target: _Target) -> _Idle | None:
        """The kept-alive connection to ``target``'s origin, if it is still usable."""
        idle, self._idle = self._idle, None
        if idle is None:
            return None
        usable = (
            idle.origin == (target.scheme, target.netloc)
            and not idle.conn.closed
            and not idle.conn.buf
            and not idle.transport.is_closing()
        )
        if usable:
            return idle
        idle.transport.abort()
        return None

    # ---------------------------------------------------------------------------- check

    async def check(self, target: str, timeout: float) -> ProbeResult:
        start = time.perf_counter()
        clock = PhaseClock("dns", "connect", "tls", "first_byte", "transfer")
        metrics: dict[str, float] = {"redirects": 0.0, "tls": 0.0}
        try:
            async with asyncio.timeout(timeout):
                response = await self._fetch(target, clock, metrics)
        except (TimeoutError, Failure, OSError) as exc:
            phase = clock.phase
            clock.enter("")
            if isinstance(exc, TimeoutError):
                message, status = f"timeout after {timeout:g}s during {phase}", None
            elif isinstance(exc, Failure):
                message, status = exc.message, exc.status
            else:
                message, status = error_text(exc), None
            result = self._done(start, False, message, status, clock.phases, metrics)
            result.values["CONNECTED"] = phase not in ("dns", "connect")
            return result
        reason = self._judge(response, metrics)
        result = self._done(
            start, reason is None, reason or "", response.status, clock.phases, metrics
        )
        values = result.values
        values["CONNECTED"] = True
        values["IP"] = response.peer
        values["BODY"] = response.body
        values["HEADERS"] = response.headers
        expiry = metrics.get("cert_expiry_timestamp")
        if expiry is not None:
            values["CERTIFICATE_EXPIRATION"] = expiry - time.time()
        return result

    @staticmethod
    def _done(
        start: float,
        success: bool,
        message: str,
        status: int | None,
        phases: dict[str, float],
        metrics: dict[str, float],
    ) -> ProbeResult:
        return ProbeResult(
            success=success,
            duration=time.perf_counter() - start,
            message=message,
            status=status,
            phases=phases,
            metrics=metrics,
        )

    def _judge(self, response: _Response, metrics: dict[str, float]) -> str | None:
        """Why ``response`` is a failure, or None."""
        s = self.settings
        status = response.status
        if s.valid_status_codes:
            if status not in s.valid_status_codes:
                codes = ", ".join(str(c) for c in s.valid_status_codes)
                return f"status {status} not in [{codes}]"
        elif not 200 <= status <= 299:
            return f"status {status} not in [200..299]"
        if s.fail_if_ssl and metrics["tls"]:
            return "response came over TLS (fail_if_ssl)"
        if s.fail_if_not_ssl and not metrics["tls"]:
            return "response did not come over TLS (fail_if_not_ssl)"
        body = response.body
        if self._contains is not None and self._contains not in body:
            return f"body does not contain {s.body_contains!r}"
        for regex in self._must_not:
            if regex.search(body):
                metrics["failed_due_to_regex"] = 1.0
                return f"body matches /{regex.pattern.decode()}/"
        for regex in self._must:
            if not regex.search(body):
                metrics["failed_due_to_regex"] = 1.0
                return f"body does not match /{regex.pattern.decode()}/"
        return None

    def _target(self, url: str) -> _Target:
        parsed = self._parsed.get(url)
        if parsed is None:
            parsed = _Target(url)
            if len(self._parsed) > 16:
                self._parsed.clear()
            self._parsed[url] = parsed
        return parsed

    async def _fetch(self, url: str, clock: PhaseClock, metrics: dict[str, float]) -> _Response:
        s = self.settings
        method = s.method
        body = self._body
        first = self._target(url)
        target = first
        send_auth = True
        redirects = 0
        while True:
            response = await self._exchange(target, method, body, send_auth, clock, metrics)
            if not (s.follow_redirects and response.status in _REDIRECTS):
                break
            location = response.headers.get("location")
            if not location:
                break
            redirects += 1
            metrics["redirects"] = float(redirects)
            if redirects > s.max_redirects:
                raise Failure(f"too many redirects (more than {s.max_redirects})", response.status)
            try:
                target = _Target(urljoin(target.url, location.strip()))
            except Failure as exc:
                raise Failure(f"bad redirect: {exc.message}", response.status) from None
            if response.status == 303 or (
                response.status in (301, 302) and method not in ("GET", "HEAD")
            ):
                method, body = ("HEAD" if method == "HEAD" else "GET"), None
            # credentials follow a redirect only to the same origin
            send_auth = (target.scheme, target.netloc) == (first.scheme, first.netloc)
        return response

    # ------------------------------------------------------------------ one request

    def _request(
        self,
        target: _Target,
        method: str,
        body: bytes | None,
        send_auth: bool,
        absolute: bool,
        keep: bool = False,
    ) -> bytes:
        headers = self._headers
        where = f"{target.scheme}://{target.host_header}{target.path}" if absolute else target.path
        lines = [f"{method} {where} HTTP/1.1"]
        if "host" not in headers:
            lines.append(f"Host: {target.host_header}")
        if "user-agent" not in headers:
            lines.append(f"User-Agent: {_USER_AGENT}")
        if send_auth and "authorization" not in headers:
            auth = self._auth
            if auth is None and target.userinfo is not None:
                auth = _basic(*target.userinfo)
            if auth is not None:
                lines.append(f"Authorization: {auth}")
        if absolute and self._proxy_auth is not None:
            lines.append(f"Proxy-Authorization: {self._proxy_auth}")
        for key, (name, value) in headers.items():
            if key in ("connection", "content-length", "transfer-encoding"):
                continue
            if not send_auth and key in _CREDENTIAL_HEADERS:
                continue  # credentials stay with their origin, whoever set them
            lines.append(f"{name}: {value}")
        lines.append("Connection: keep-alive" if keep else "Connection: close")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        return head + body if body else head

    async def _exchange(
        self,
        target: _Target,
        method: str,
        body: bytes | None,
        send_auth: bool,
        clock: PhaseClock,
        metrics: dict[str, float],
    ) -> _Response:
        idle = self._take_idle(target) if self._keepalive else None
        if idle is not None:
            try:
                return await self._over(idle, target, method, body, send_auth, clock, metrics)
            except (Failure, OSError):
                if idle.conn.answered:
                    raise
                # The server closed the kept connection meanwhile: one more try, anew.
        return await self._fresh(target, method, body, send_auth, clock, metrics)

    async def _fresh(
        self,
        target: _Target,
        method: str,
        body: bytes | None,
        send_auth: bool,
        clock: PhaseClock,
        metrics: dict[str, float],
    ) -> _Response:
        loop = asyncio.get_running_loop()
        proxy = self._proxy
        peer = proxy or target
        clock.enter("dns")
        addresses = await self._resolve(loop, peer.host, peer.port)
        clock.enter("connect")
        conn = _Conn()
        transport: asyncio.Transport | None = None
        setup: dict[str, float] = {}
        kept = False
        try:
            transport, setup["ip_protocol"] = await self._connect(loop, conn, addresses, peer.port)
            tls = target.scheme == "https"
            if proxy is not None and tls:
                await self._tunnel(conn, transport, target)
            if tls:
                clock.enter("tls")
                transport = await self._start_tls(loop, conn, transport, target)
                setup["tls"] = 1.0
                ssl_object = transport.get_extra_info("ssl_object")
                if ssl_object is not None:
                    expiry = cert_expiry(ssl_object)
                    if expiry is not None:
                        setup["cert_expiry_timestamp"] = expiry
                    version = ssl_object.version() or ""
                    if version.startswith("TLSv"):  # TLSv1.3 -> 1.3
                        setup["tls_version"] = float(version[4:])
            else:
                setup["tls"] = 0.0
            idle = _Idle((target.scheme, target.netloc), conn, transport, setup)
            response = await self._over(idle, target, method, body, send_auth, clock, metrics)
            kept = self._idle is idle
        finally:
            if transport is not None and not kept:
                transport.abort()
        metrics["reused"] = 0.0
        return response

    async def _over(
        self,
        idle: _Idle,
        target: _Target,
        method: str,
        body: bytes | None,
        send_auth: bool,
        clock: PhaseClock,
        metrics: dict[str, float],
    ) -> _Response:
        """One request and response over an open connection; keeps it when it may be."""
        conn, transport = idle.conn, idle.transport
        for key, value in idle.metrics.items():
            if key == "cert_expiry_timestamp":
                value = min(metrics.get(key, value), value)
            metrics[key] = value
        metrics["reused"] = 1.0
        kept = False
        conn.answered = False
        try:
            clock.enter("first_byte")
            absolute = self._proxy is not None and target.scheme != "https"
            keep = self._keepalive
            transport.write(self._request(target, method, body, send_auth, absolute, keep))
            response = await self._read_head(conn, method)
            peer = transport.get_extra_info("peername")
            response.peer = str(peer[0]) if peer else ""
            clock.enter("transfer")
            await self._read_body(conn, response, method)
            clock.enter("")
            if keep and self._reusable(conn, response):
                self._drop_idle()
                self._idle = idle
                kept = True
        finally:
            if not kept:
                transport.abort()
        metrics["http_version"] = response.version
        metrics["body_bytes"] = float(response.body_bytes)
        if response.content_length is not None:
            metrics["content_length"] = float(response.content_length)
        else:
            metrics.pop("content_length", None)
        last_modified = response.headers.get("last-modified")
        if last_modified:
            try:
                stamp = parsedate_to_datetime(last_modified).timestamp()
            except (TypeError, ValueError):
                stamp = None  # an unparseable date is not worth failing the check
            if stamp is not None:
                metrics["last_modified_timestamp"] = stamp
        return response

    @staticmethod
    def _reusable(conn: _Conn, response: _Response) -> bool:
        """Whether the connection is left clean for the next request."""
        headers = response.headers
        return (
            response.version == 1.1
            and "close" not in headers.get("connection", "").lower()
            and (response.content_length is not None or "transfer-encoding" in headers)
            and not conn.closed
            and not conn.buf
        )

    async def _resolve(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int
    ) -> list[tuple[int, str]]:
        return await resolve(loop, host, port, self.settings.ip_version, self.settings.ip_fallback)

    async def _connect(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: _Conn,
        addresses: list[tuple[int, str]],
        port: int,
    ) -> tuple[asyncio.Transport, float]:
        (transport, _), family, _ip = await connect_first(
            addresses,
            lambda family, ip: loop.create_connection(lambda: conn, ip, port, family=family),
        )
        return transport, ip_protocol(family)

    async def _tunnel(self, conn: _Conn, transport: asyncio.Transport, target: _Target) -> None:
        lines = [f"CONNECT {target.netloc} HTTP/1.1", f"Host: {target.netloc}"]
        if self._proxy_auth is not None:
            lines.append(f"Proxy-Authorization: {self._proxy_auth}")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace"))
        response = await self._read_head(conn, "CONNECT")
        if not 200 <= response.status <= 299:
            raise Failure(f"proxy CONNECT answered {response.status}")

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = self.settings.ssl_context(alpn=["http/1.1"])
        return self._ssl

    async def _start_tls(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: _Conn,
        transport: asyncio.Transport,
        target: _Target,
    ) -> asyncio.Transport:
        if conn.buf:
            raise Failure("unexpected data before TLS handshake")
        name = self.settings.server_name or target.host
        try:
            tls = await loop.start_tls(transport, conn, self._ssl_context(), server_hostname=name)
        except ssl.SSLError as exc:
            transport.abort()
            raise Failure(error_text(exc)) from None
        except BaseException:
            transport.abort()
            raise
        if tls is None:  # pragma: no cover - only when the loop is closing
            raise Failure("TLS handshake aborted")
        conn.transport = tls
        return tls

    # --------------------------------------------------------------------- parsing

    async def _read_head(self, conn: _Conn, method: str) -> _Response:
        while True:
            buf = conn.buf
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > _HEADER_LIMIT:
                    raise Failure("response headers too large")
                if conn.closed and not buf:
                    raise Failure(
                        error_text(conn.error)
                        if conn.error
                        else "connection closed before a response"
                    )
                await conn.more()
                end = buf.find(b"\r\n\r\n")
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            lines = head.split("\r\n")
            status_line = lines[0].split(" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
                raise Failure(f"malformed status line {lines[0][:80]!r}")
            try:
                status = int(status_line[1])
            except ValueError:
                raise Failure(f"malformed status line {lines[0][:80]!r}") from None
            if 100 <= status < 200 and status != 101:
                continue  # informational: the real answer follows
            response = _Response()
            response.status = status
            response.version = 1.0 if status_line[0] == "HTTP/1.0" else 1.1
            headers = response.headers
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    key = name.strip().lower()
                    value = value.strip()
                    headers[key] = f"{headers[key]}, {value}" if key in headers else value
            length = headers.get("content-length")
            if length is not None:
                try:
                    response.content_length = int(length.split(",")[0])
                except ValueError:
                    raise Failure(f"bad Content-Length {length!r}", status) from None
            return response

    async def _read_body(self, conn: _Conn, response: _Response, method: str) -> None:
        status = response.status
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return
        limit = self.settings.max_body_bytes
        too_big = Failure(f"body larger than max_body_bytes ({limit})", status)
        encoding = response.headers.get("content-encoding", "").lower()
        decoder = zlib.decompressobj(47) if encoding in ("gzip", "x-gzip", "deflate") else None
        chunks: list[bytes] = []
        raw = 0
        if "chunked" in response.headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await conn.line()
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise Failure("malformed chunked body", status) from None
                if size == 0:
                    while await conn.line():  # trailers
                        pass
                    break
                raw += size
                if raw > limit and decoder is None:
                    raise too_big
                chunks.append(await conn.exactly(size))
                await conn.exactly(2)
        elif response.content_length is not None:
            size = response.content_length
            if size > limit and decoder is None:
                raise too_big
            chunks.append(await conn.exactly(size))
        else:
            buf = conn.buf
            while not conn.closed:
                if len(buf) > limit and decoder is None:
                    raise too_big
                await conn.more()
            if conn.error is not None and not isinstance(conn.error, ConnectionResetError):
                raise Failure(error_text(conn.error), status)
            chunks.append(bytes(buf))
            buf.clear()
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if decoder is not None:
            try:
                body = decoder.decompress(body, limit + 1)
            except zlib.error as exc:
                raise Failure(f"bad {encoding} body: {exc}", status) from None
            if len(body) > limit:
                raise too_big
        response.body = body
        response.body_bytes = len(body)


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``http`` probe."""
    return [HttpProbe]
