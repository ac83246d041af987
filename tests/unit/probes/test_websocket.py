"""The ``websocket`` probe against a real aiohttp WebSocket server on loopback (TLS
certificates by trustme)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import WSMsgType, web
from pudimd_plugins.probes.websocket import (
    WebsocketProbe,
    WebsocketSettings,
    pudimd_probe_types,
)
from pydantic import ValidationError

from tests.helpers import free_port, run_check

pytestmark = pytest.mark.anyio


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("chat.v2",))
    await ws.prepare(request)
    seen = request.headers.get("X-Probe", "")
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(f"echo: {msg.data}{seen}")
    return ws


async def greet(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str("welcome")
    await ws.send_bytes(b"\x00\x01binary")
    await ws.send_str("status: ok")
    async for _ in ws:
        pass
    return ws


async def silent(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for _ in ws:
        pass
    return ws


async def hang_up(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close(code=1011, message=b"going away")
    return ws


async def forbidden(request: web.Request) -> web.Response:
    return web.Response(status=403, text="no")


@asynccontextmanager
async def serving(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/greet", greet)
    app.router.add_get("/silent", silent)
    app.router.add_get("/hangup", hang_up)
    app.router.add_get("/forbidden", forbidden)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def check(target: str, within: float = 5.0, **settings: Any) -> Any:
    return await run_check(WebsocketProbe, target, within, **settings)


def test_plugin_registers_the_websocket_type() -> None:
    assert pudimd_probe_types() == [WebsocketProbe]


async def test_echo_answer_matches() -> None:
    async with serving() as port:
        result = await check(
            f"ws://127.0.0.1:{port}/echo",
            send="ping",
            expect=r"^echo: ping!$",
            headers={"X-Probe": "!"},
            subprotocols=["chat.v1", "chat.v2"],
        )
    assert result.success, result.message
    assert result.status == 101
    assert result.values["BODY"] == "echo: ping!"
    assert result.values["CONNECTED"] is True
    assert result.values["SUBPROTOCOL"] == "chat.v2"
    assert result.values["IP"] == "127.0.0.1"
    assert result.metrics["messages"] == 1.0
    assert result.metrics["tls"] == 0.0
    assert result.phases["connect"] > 0
    assert result.phases["handshake"] > 0
    assert result.phases["message"] > 0


async def test_connect_only_without_expect() -> None:
    async with serving() as port:
        result = await check(f"ws://localhost:{port}/silent")
    assert result.success, result.message
    assert result.phases["dns"] > 0  # a name is resolved on every check
    assert "BODY" not in result.values


async def test_wrong_answer_fails_at_once() -> None:
    async with serving() as port:
        result = await check(f"ws://127.0.0.1:{port}/echo", send="ping", expect="pong")
    assert not result.success
    assert result.message == "message 'echo: ping' does not match /pong/"
    assert result.values["BODY"] == "echo: ping"


async def test_expect_may_match_a_later_message() -> None:
    async with serving() as port:
        first_only = await check(f"ws://127.0.0.1:{port}/greet", expect="status: ok")
        within_three = await check(
            f"ws://127.0.0.1:{port}/greet", expect="status: ok", max_messages=3
        )
        within_two = await check(f"ws://127.0.0.1:{port}/greet", expect="status", max_messages=2)
    assert not first_only.success
    assert within_three.success, within_three.message
    assert within_three.metrics["messages"] == 3.0
    assert not within_two.success
    assert within_two.message.startswith("none of 2 messages matches /status/")
    assert "binary" in within_two.values["BODY"]


async def test_refused_upgrade_reports_http_status() -> None:
    async with serving() as port:
        result = await check(f"ws://127.0.0.1:{port}/forbidden")
    assert not result.success
    assert result.status == 403
    assert result.message == "upgrade refused: HTTP 403"
    assert result.values["CONNECTED"] is False


async def test_missing_subprotocol_fails() -> None:
    async with serving() as port:
        result = await check(f"ws://127.0.0.1:{port}/silent", subprotocols=["mqtt"])
    assert not result.success
    assert result.message == "server chose none of the subprotocols mqtt"


async def test_server_closing_before_answer_fails() -> None:
    async with serving() as port:
        result = await check(f"ws://127.0.0.1:{port}/hangup", expect="anything")
    assert not result.success
    assert result.message == "closed by server (code 1011) before /anything/ matched"


async def test_silent_server_times_out_waiting_for_expect() -> None:
    async with serving() as port:
        result = await check(f"ws://127.0.0.1:{port}/silent", within=0.3, expect="hello")
    assert not result.success
    assert result.message == "timeout waiting for /hello/"
    assert result.phases["message"] > 0.2


async def test_refused_port_fails_with_reason() -> None:
    result = await check(f"ws://127.0.0.1:{free_port()}/")
    assert not result.success
    assert result.message == "connection refused"


async def test_wss_with_trusted_certificate(ca: trustme.CA, ca_file: Path) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    async with serving(ctx) as port:
        result = await check(
            f"wss://localhost:{port}/echo", send="hi", expect="echo: hi", ca_file=ca_file
        )
    assert result.success, result.message
    assert result.metrics["tls"] == 1.0
    assert result.metrics["cert_expiry_timestamp"] > 0
    assert result.values["CERTIFICATE_EXPIRATION"] > 0


async def test_wss_with_untrusted_certificate_fails(ca: trustme.CA) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    async with serving(ctx) as port:
        result = await check(f"wss://localhost:{port}/echo")
        unverified = await check(f"wss://localhost:{port}/echo", verify=False)
    assert not result.success
    assert result.message == "TLS: unable to get local issuer certificate"
    assert unverified.success, unverified.message


async def test_wss_with_wrong_server_name_fails(ca: trustme.CA, ca_file: Path) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    async with serving(ctx) as port:
        result = await check(
            f"wss://localhost:{port}/echo", ca_file=ca_file, server_name="other.test"
        )
    assert not result.success
    assert result.message.startswith("TLS: Hostname mismatch")


async def test_invalid_url_fails() -> None:
    result = await check("http://127.0.0.1/")
    assert not result.success
    assert result.message == "invalid URL 'http://127.0.0.1/': expected ws:// or wss://"


async def test_instance_is_reused_across_checks() -> None:
    probe = WebsocketProbe(WebsocketSettings(send="a", expect="echo: a"))
    try:
        async with serving() as port:
            results = [await probe.check(f"ws://127.0.0.1:{port}/echo", 5.0) for _ in range(3)]
    finally:
        await probe.aclose()
    assert [r.success for r in results] == [True, True, True]


def test_settings_validate_regex() -> None:
    with pytest.raises(ValidationError, match="invalid regex"):
        WebsocketSettings(expect="(")
    with pytest.raises(ValidationError, match="greater than 0"):
        WebsocketSettings(max_messages=0)
