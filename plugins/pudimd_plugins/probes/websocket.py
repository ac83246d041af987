"""The ``websocket`` probe: open a WebSocket, optionally send a message and expect an answer.

Target: a ``ws://`` or ``wss://`` URL.  Every check opens a new connection (DNS resolved
anew), does the HTTP upgrade handshake, writes ``send`` as a text message, then reads
messages until one matches ``expect``, and closes the WebSocket politely (close frame).
Without ``expect`` a successful handshake (and write) is success.

``expect`` is tried on each message received, in order, up to ``max_messages`` of them:
with the default ``1`` the *first* message must match (a wrong answer fails at once);
with more, any of the first ``max_messages`` may (servers that first send a welcome or a
heartbeat).  Waiting for messages stops at the check's timeout.  Binary messages are
decoded as UTF-8 (undecodable bytes replaced) before matching.

Settings (the block under ``websocket:`` in a target)::

    headers: {}          # extra request headers of the upgrade request (Origin, Authorization...)
    subprotocols: []     # offered subprotocols (Sec-WebSocket-Protocol); when set, the
                         # server must choose one of them
    send: null           # text message sent once the WebSocket is open
    expect: null         # regex a received message must match (searched, not anchored)
    max_messages: 1      # how many received messages expect is tried on
    verify: true         # verify the server certificate and host name (wss)
    ca_file: null        # PEM CA bundle to verify against (instead of the system's)
    cert_file: null      # PEM client certificate (mutual TLS)
    key_file: null       # PEM key of cert_file (if not inside cert_file)
    server_name: null    # TLS SNI and certificate name, instead of the URL's host

Result: ``status`` is the HTTP status of the upgrade (``101``, or the ``403``/``404``... of
a refused one); ``message`` names the failure (``connection refused``, ``timeout after 2s
during handshake``, ``upgrade refused: HTTP 403``, ``timeout waiting for /regex/``,
``message 'hello' does not match /regex/``, ``closed by server (code 1000) before /regex/
matched``, the TLS verification error...).

Phases (seconds): ``dns``, ``connect`` (TCP and, for wss, TLS), ``handshake`` (upgrade
request to ``101``), ``message`` (message sent until ``expect`` matched).

Metrics: ``tls`` (1 or 0), ``cert_expiry_timestamp`` (earliest notAfter of the server's
certificate chain, Unix time; only over wss), ``messages`` (messages received).

Values: ``CONNECTED`` (bool: the WebSocket opened), ``IP`` (str), ``BODY`` (the last message
received, str), ``SUBPROTOCOL`` (the subprotocol the server chose, or ``""``),
``CERTIFICATE_EXPIRATION`` (seconds until ``cert_expiry_timestamp``; only over wss).
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field

from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings, Regex
from pudimd_plugins.probes._net import (
    Failure,
    PhaseClock,
    TlsClientSettings,
    cert_expiry,
    error_text,
)

if TYPE_CHECKING:
    from types import SimpleNamespace

    import aiohttp

__all__ = ["WebsocketProbe", "WebsocketSettings", "pudimd_probe_types"]

_CLOCK: contextvars.ContextVar[PhaseClock | None] = contextvars.ContextVar(
    "pudimd_websocket_clock", default=None
)


class WebsocketSettings(PluginSettings, TlsClientSettings):
    """Settings of the ``websocket`` probe (see the module docstring)."""

    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers of the upgrade request."
    )
    subprotocols: list[str] = Field(
        default_factory=list, description="Offered subprotocols; the server must choose one."
    )
    send: str | None = Field(default=None, description="Text message sent once open.")
    expect: Regex | None = Field(
        default=None, description="Regex a received message must match (searched)."
    )
    max_messages: int = Field(
        default=1, gt=0, description="How many received messages expect is tried on."
    )
    server_name: str | None = None


async def _enter(phase: str) -> None:
    clock = _CLOCK.get()
    if clock is not None:
        clock.enter(phase)


async def _on_dns_start(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object
) -> None:
    await _enter("dns")


async def _on_dns_end(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object) -> None:
    await _enter("connect")


async def _on_connected(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object
) -> None:
    await _enter("handshake")


class WebsocketProbe:
    """Check a WebSocket endpoint; see the module docstring."""

    type = "websocket"
    Settings = WebsocketSettings

    def __init__(self, settings: WebsocketSettings) -> None:
        self.settings = settings
        self._expect = re.compile(settings.expect) if settings.expect else None
        self._ssl: ssl.SSLContext | None = None  # made on first wss use
        self._session: aiohttp.ClientSession | None = None  # made on first check

    async def aclose(self) -> None:
        """Close the HTTP client session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            trace = aiohttp.TraceConfig()
            trace.on_dns_resolvehost_start.append(_on_dns_start)
            trace.on_dns_resolvehost_end.append(_on_dns_end)
            trace.on_connection_create_end.append(_on_connected)
            connector = aiohttp.TCPConnector(use_dns_cache=False, force_close=True)
            self._session = aiohttp.ClientSession(
                connector=connector, trace_configs=[trace], cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = self.settings.ssl_context()
        return self._ssl

    async def check(self, target: str, timeout: float) -> ProbeResult:
        start = time.perf_counter()
        clock = PhaseClock("dns", "connect", "handshake", "message")
        clock.enter("connect")
        result = ProbeResult(
            success=False, metrics={"tls": 0.0, "messages": 0.0}, values={"CONNECTED": False}
        )
        message = ""
        token = _CLOCK.set(clock)
        try:
            async with asyncio.timeout(timeout):
                await self._run(target, clock, result)
        except TimeoutError:
            if clock.phase == "message" and self._expect is not None:
                message = f"timeout waiting for /{self._expect.pattern}/"
            else:
                message = f"timeout after {timeout:g}s during {clock.phase}"
        except Failure as exc:
            message = exc.message
            if exc.status is not None:
                result.status = exc.status
        finally:
            _CLOCK.reset(token)
        clock.enter("")
        result.success = not message
        result.message = message
        result.duration = time.perf_counter() - start
        result.phases = clock.phases
        return result

    async def _run(self, target: str, clock: PhaseClock, result: ProbeResult) -> None:
        import aiohttp

        parts = urlsplit(target.strip())
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise Failure(f"invalid URL {target!r}: expected ws:// or wss://")
        st = self.settings
        tls = parts.scheme == "wss"
        try:
            ws = await self._client().ws_connect(
                target.strip(),
                protocols=st.subprotocols,
                headers=st.headers,
                ssl=self._ssl_context() if tls else True,
                server_hostname=st.server_name if tls else None,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0),
                autoclose=True,
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise Failure(f"upgrade refused: HTTP {exc.status}", exc.status) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise Failure(error_text(exc.certificate_error)) from None
        except aiohttp.ClientConnectorError as exc:
            raise Failure(error_text(exc.os_error)) from None
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise Failure(error_text(exc)) from None
        try:
            await self._converse(ws, tls, clock, result)
        except asyncio.CancelledError:
            ws._response.close()  # timed out: drop the connection (no public abort)
            raise
        except BaseException:
            await ws.close()
            raise
        await ws.close()  # a close frame, and the server's, within the check's timeout

    async def _converse(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        tls: bool,
        clock: PhaseClock,
        result: ProbeResult,
    ) -> None:
        import aiohttp

        result.status = 101
        peer = ws.get_extra_info("peername")
        result.values.update(CONNECTED=True, SUBPROTOCOL=ws.protocol or "")
        if peer:
            result.values["IP"] = str(peer[0])
        if tls:
            result.metrics["tls"] = 1.0
            ssl_object = ws.get_extra_info("ssl_object")
            expiry = cert_expiry(ssl_object) if ssl_object is not None else None
            if expiry is not None:
                result.metrics["cert_expiry_timestamp"] = expiry
                result.values["CERTIFICATE_EXPIRATION"] = expiry - time.time()
        if self.settings.subprotocols and not ws.protocol:
            offered = ", ".join(self.settings.subprotocols)
            raise Failure(f"server chose none of the subprotocols {offered}", 101)
        clock.enter("message")
        try:
            if self.settings.send is not None:
                await ws.send_str(self.settings.send)
            if self._expect is None:
                return
            shown = f"/{self._expect.pattern}/"
            for _ in range(self.settings.max_messages):
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    text = str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    text = bytes(msg.data).decode("utf-8", "replace")
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise Failure(f"error before {shown} matched: {error_text(msg.data)}", 101)
                else:  # CLOSE, CLOSING, CLOSED
                    code = ws.close_code
                    raise Failure(f"closed by server (code {code}) before {shown} matched", 101)
                result.metrics["messages"] += 1
                result.values["BODY"] = text
                if self._expect.search(text):
                    return
            got = str(result.values["BODY"])[:60]
            if self.settings.max_messages == 1:
                raise Failure(f"message {got!r} does not match {shown}", 101)
            raise Failure(
                f"none of {self.settings.max_messages} messages matches {shown} "
                f"(last: {got!r})",
                101,
            )
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise Failure(error_text(exc), 101) from None


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``websocket`` probe."""
    return [WebsocketProbe]
