"""The ``tcp`` probe against real asyncio servers on loopback (TLS certificates by trustme)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from pudimd_plugins.probes.tcp import TcpProbe, TcpSettings, pudimd_probe_types, unescape
from pydantic import ValidationError

from tests.helpers import free_port, has_ipv6_loopback

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(
    handler: Handler, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """Run an asyncio server calling ``handler`` per connection; yield its port."""
    tasks: set[asyncio.Task[Any]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, host, 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for task in tasks:
            task.cancel()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*tasks, return_exceptions=True)


async def check(target: str, within: float = 5.0, **settings: Any) -> Any:
    probe = TcpProbe(TcpSettings(**settings))
    try:
        return await probe.check(target, within)
    finally:
        await probe.aclose()


async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 mail.test ESMTP ready\r\n")
    await writer.drain()
    await reader.read(100)


async def echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    writer.write(b"+" + line.upper())
    await writer.drain()
    await reader.read(100)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(10)


def test_plugin_registers_the_tcp_type() -> None:
    assert pudimd_probe_types() == [TcpProbe]
    assert TcpProbe.type == "tcp"
    assert TcpProbe.Settings is TcpSettings


def test_send_escapes_are_decoded() -> None:
    assert unescape(r"PING\r\n") == b"PING\r\n"
    assert unescape(r"a\x00\xffb\\n\t") == b"a\x00\xffb\\n\t"
    assert unescape("olá") == "olá".encode()


def test_settings_reject_bad_escapes_and_regexes() -> None:
    with pytest.raises(ValidationError, match="unknown escape"):
        TcpSettings(send=r"\q")
    with pytest.raises(ValidationError, match="invalid regex"):
        TcpSettings(expect="(")


async def test_connect_only_succeeds_with_phases() -> None:
    async with serving(banner) as port:
        result = await check(f"127.0.0.1:{port}")
    assert result.success, result.message
    assert result.phases["connect"] > 0
    assert result.phases["tls"] == 0
    assert result.metrics["tls"] == 0
    assert result.metrics["ip_protocol"] == 4


async def test_banner_matches_expect() -> None:
    async with serving(banner) as port:
        result = await check(f"127.0.0.1:{port}", expect=r"^220 .*ESMTP")
    assert result.success, result.message
    assert result.phases["expect"] > 0
    assert result.metrics["bytes_read"] > 0


async def test_send_then_expect() -> None:
    async with serving(echo_upper) as port:
        result = await check(f"localhost:{port}", send=r"ping\r\n", expect=r"\+PING\r\n")
    assert result.success, result.message


async def test_expect_mismatch_times_out_naming_the_regex() -> None:
    async with serving(banner) as port:
        started = time.perf_counter()
        result = await check(f"127.0.0.1:{port}", expect="^OK", within=0.3)
    assert not result.success
    assert result.message == "timeout waiting for /^OK/"
    assert time.perf_counter() - started < 2


async def test_server_closing_before_match_fails() -> None:
    async def say_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye\n")
        await writer.drain()

    async with serving(say_bye) as port:
        result = await check(f"127.0.0.1:{port}", expect="hello")
    assert not result.success
    assert result.message == "connection closed before /hello/ matched (got 'bye\\n')"


async def test_read_bytes_limit_stops_the_wait() -> None:
    async with serving(banner) as port:
        result = await check(f"127.0.0.1:{port}", expect="never", read_bytes=10)
    assert not result.success
    assert result.message == "read 10 bytes without matching /never/"


async def test_silent_server_times_out() -> None:
    async with serving(silent) as port:
        result = await check(f"127.0.0.1:{port}", expect="x", within=0.2)
    assert result.message == "timeout waiting for /x/"


async def test_refused_port_fails() -> None:
    result = await check(f"127.0.0.1:{free_port()}")
    assert not result.success
    assert result.message == "connection refused"


@pytest.mark.parametrize("target", ["nohost", "host:", "host:99999", ":80", "::1:80"])
async def test_malformed_target_fails(target: str) -> None:
    result = await check(target)
    assert not result.success
    assert result.message.startswith("invalid target")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_target_in_brackets() -> None:
    async with serving(banner, host="::1") as port:
        result = await check(f"[::1]:{port}", expect="220")
    assert result.success, result.message
    assert result.metrics["ip_protocol"] == 6


# ------------------------------------------------------------------------------ TLS


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


async def test_tls_handshake_then_expect(ca: trustme.CA, ca_file: Path) -> None:
    async with serving(echo_upper, ssl_context=server_context(ca, "127.0.0.1")) as port:
        result = await check(
            f"127.0.0.1:{port}", tls=True, ca_file=ca_file, send=r"hi\n", expect="HI"
        )
    assert result.success, result.message
    assert result.metrics["tls"] == 1
    assert result.phases["tls"] > 0
    assert result.metrics["cert_expiry_timestamp"] > time.time()


async def test_tls_unknown_ca_fails(ca: trustme.CA) -> None:
    async with serving(banner, ssl_context=server_context(ca, "127.0.0.1")) as port:
        result = await check(f"127.0.0.1:{port}", tls=True)
        unverified = await check(f"127.0.0.1:{port}", tls=True, verify=False, expect="220")
    assert not result.success
    assert result.message.startswith("TLS: ")
    assert "certificate" in result.message
    assert unverified.success, unverified.message


async def test_tls_server_name_selects_the_checked_name(ca: trustme.CA, ca_file: Path) -> None:
    async with serving(banner, ssl_context=server_context(ca, "svc.test")) as port:
        mismatch = await check(f"127.0.0.1:{port}", tls=True, ca_file=ca_file)
        named = await check(f"127.0.0.1:{port}", tls=True, ca_file=ca_file, server_name="svc.test")
    assert "mismatch" in mismatch.message
    assert named.success, named.message
