"""The ``tcp`` probe against real asyncio servers on loopback (TLS certificates by trustme)."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from pudimd_plugins.probes.tcp import (
    TcpProbe,
    TcpSettings,
    expand,
    pudimd_probe_types,
    unescape,
)
from pydantic import ValidationError

from tests.helpers import free_port, require_ipv6_loopback, run_check

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
    return await run_check(TcpProbe, target, within, **settings)


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


async def test_ipv6_target_in_brackets() -> None:
    require_ipv6_loopback()
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


# ------------------------------------------------------------------- query_response


def test_expand_follows_go_regexp_expand() -> None:
    match = re.search(rb"(?P<host>[a-z.]+) (\d+)(x)?", b"irc.test 42")
    assert match is not None
    assert expand(b"PONG ${1} $2 ${host}", match) == b"PONG irc.test 42 irc.test"
    assert expand(b"$$1 costs $$", match) == b"$1 costs $"
    # $2x is the group named "2x" (none: empty), as in Go; unmatched and unknown are empty
    assert expand(b"[$2x][${3}][${9}][${nope}][$01]", match) == b"[][][][][]"
    assert expand(b"a $ b ${ c", match) == b"a $ b ${ c"  # malformed: kept as is


def test_query_response_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="not both"):
        TcpSettings(send="x", query_response=[{"expect": "y"}])
    with pytest.raises(ValidationError, match="a step needs expect, send or starttls"):
        TcpSettings(query_response=[{}])
    with pytest.raises(ValidationError, match=r"query_response\.0\.expect"):
        TcpSettings(query_response=[{"expect": "("}])
    with pytest.raises(ValidationError, match="unknown escape"):
        TcpSettings(query_response=[{"send": r"\q"}])
    with pytest.raises(ValidationError, match="starttls needs tls: false"):
        TcpSettings(tls=True, query_response=[{"starttls": True}])
    with pytest.raises(ValidationError, match="only one step may have starttls"):
        TcpSettings(query_response=[{"starttls": True}, {"starttls": True}])
    with pytest.raises(ValidationError, match="labels"):
        TcpSettings(query_response=[{"expect": "x", "labels": []}])


async def irc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Registers a client that sends NICK and USER, then answers the PING with PONG."""
    nick, user = await reader.readline(), await reader.readline()
    if not (nick.startswith(b"NICK ") and user.startswith(b"USER ")):
        return
    token = b"t%d" % time.monotonic_ns()
    # one write: the PING line and the start of the next line arrive together
    writer.write(b":irc.test NOTICE * :hello\r\nPING :" + token + b"\r\n:irc.test NOTICE")
    await writer.drain()
    pong = await reader.readline()
    if pong.rstrip(b"\r\n") == b"PONG " + token:
        writer.write(b" * :registering\r\n:irc.test 001 prober :Welcome\r\n")
        await writer.drain()
        await reader.read(100)
    else:
        writer.write(b" * :bad pong\r\nERROR :Closing link\r\n")
        await writer.drain()


IRC_STEPS = [
    {"send": r"NICK prober\r\n"},
    {"send": r"USER prober prober prober :prober\r\n"},
    {"expect": "PING :([^ ]+)", "send": r"PONG ${1}\r\n"},
    {"expect": "^:[^ ]+ 001"},
]


async def test_multi_step_conversation_substitutes_the_match_groups() -> None:
    async with serving(irc) as port:
        result = await check(f"127.0.0.1:{port}", query_response=IRC_STEPS, match_lines=True)
    assert result.success, result.message
    assert b":irc.test 001 prober" in result.values["BODY"]
    assert result.metrics["failed_due_to_regex"] == 0
    assert result.metrics["bytes_read"] == len(result.values["BODY"])
    assert result.phases["expect"] > 0


async def test_substitution_without_match_lines() -> None:
    steps = [
        *IRC_STEPS[:2],
        {"expect": r"PING :([^\r\n ]+)\r\n", "send": r"PONG $1\r\n"},
        {"expect": "(?m)^:[^ ]+ 001"},
    ]
    async with serving(irc) as port:
        result = await check(f"127.0.0.1:{port}", query_response=steps)
    assert result.success, result.message


async def test_without_match_lines_a_regex_can_run_past_the_line_end() -> None:
    async def ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"PING :tok\r\nNEXT\r\n")  # one write: read at once by the prober
        await writer.drain()
        pong = await reader.read(100)  # the PONG, written at once too
        writer.write(b"GOT %r\r\n" % pong)
        await writer.drain()

    steps = [{"expect": "PING :([^ ]+)", "send": r"PONG ${1}\n"}, {"expect": "GOT .*"}]
    async with serving(ping) as port:
        target = f"127.0.0.1:{port}"
        by_line = await check(target, query_response=steps, match_lines=True)
        in_bulk = await check(target, query_response=steps)
    assert by_line.success and in_bulk.success, (by_line.message, in_bulk.message)
    assert by_line.values["BODY"].endswith(b"GOT b'PONG tok\\n'\r\n")
    # ([^ ]+) took "tok\r\nNEXT\r\n", line ends and all
    assert in_bulk.values["BODY"].endswith(b"GOT b'PONG tok\\r\\nNEXT\\r\\n\\n'\r\n")


async def test_each_expect_reads_on_after_the_previous_match() -> None:
    async def two_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"alpha\nbeta\n")
        await writer.drain()

    async with serving(two_lines) as port:
        target = f"127.0.0.1:{port}"
        in_order = await check(target, query_response=[{"expect": "alpha"}, {"expect": "beta"}])
        backwards = await check(target, query_response=[{"expect": "beta"}, {"expect": "alpha"}])
        lines = await check(
            target, match_lines=True, query_response=[{"expect": "^al"}, {"expect": "^beta$"}]
        )
    assert in_order.success, in_order.message
    assert lines.success, lines.message
    assert backwards.message == (
        "step 2: connection closed before /alpha/ matched (got 'alpha\\nbeta\\n')"
    )


async def test_failing_step_times_out_naming_step_and_regex() -> None:
    async def greet_then_hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.test ESMTP ready\r\n")
        await writer.drain()
        await reader.read()  # until the prober hangs up

    async with serving(greet_then_hang) as port:
        started = time.perf_counter()
        result = await check(
            f"127.0.0.1:{port}",
            within=0.3,
            query_response=[{"expect": "^220 "}, {"send": r"EHLO x\r\n"}, {"expect": "^250 "}],
        )
    assert result.message == "step 3: timeout waiting for /^250 /"
    assert "failed_due_to_regex" in result.metrics and result.metrics["failed_due_to_regex"] == 0
    assert time.perf_counter() - started < 2


async def test_server_closing_early_fails_the_step_it_was_in() -> None:
    async def greet_and_leave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()

    steps = [{"expect": "^SSH-2.0-"}, {"send": r"SSH-2.0-pudimd\r\n"}, {"expect": "^KEX"}]
    async with serving(greet_and_leave) as port:
        result = await check(f"127.0.0.1:{port}", query_response=steps, match_lines=True)
        banner_only = await check(f"127.0.0.1:{port}", query_response=steps[:2])
    assert not result.success
    assert result.message == (
        "step 3: connection closed before /^KEX/ matched (got 'SSH-2.0-OpenSSH_9.2\\r\\n')"
    )
    assert result.metrics["failed_due_to_regex"] == 1
    assert banner_only.success, banner_only.message


def smtp_starttls(tls: ssl.SSLContext) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.test ESMTP ready\r\n")
        await writer.drain()
        if not (await reader.readline()).startswith(b"EHLO "):
            return
        writer.write(b"250-mail.test\r\n250-STARTTLS\r\n250 OK\r\n")
        await writer.drain()
        if await reader.readline() != b"STARTTLS\r\n":
            return
        writer.write(b"220 go ahead\r\n")
        await writer.drain()
        await writer.start_tls(tls)
        if (await reader.readline()).startswith(b"EHLO "):
            writer.write(b"250-mail.test\r\n250-AUTH PLAIN\r\n250 OK\r\n")
            await writer.drain()
        await reader.read(100)

    return handler


STARTTLS_STEPS = [
    {"expect": "^220 ([^ ]+) ESMTP", "send": r"EHLO ${1}\r\n"},
    {"expect": "^250-STARTTLS", "send": r"STARTTLS\r\n"},
    {"expect": "^220", "starttls": True},
    {"send": r"EHLO prober\r\n"},
    {"expect": "^250-AUTH"},
]


async def test_starttls_upgrades_mid_conversation(ca: trustme.CA, ca_file: Path) -> None:
    context = server_context(ca, "mail.test")
    async with serving(smtp_starttls(context)) as port:
        result = await check(
            f"127.0.0.1:{port}",
            query_response=STARTTLS_STEPS,
            match_lines=True,
            ca_file=ca_file,
            server_name="mail.test",
        )
    assert result.success, result.message
    assert result.metrics["tls"] == 1 and result.metrics["starttls"] == 1
    assert result.metrics["tls_version"] >= 1.2
    assert result.metrics["cert_expiry_timestamp"] > time.time()
    assert result.values["CERTIFICATE_EXPIRATION"] > 0
    assert result.phases["tls"] > 0
    assert b"250-AUTH PLAIN" in result.values["BODY"]  # read over TLS


async def test_starttls_with_an_untrusted_certificate_fails_that_step(ca: trustme.CA) -> None:
    context = server_context(ca, "127.0.0.1")
    async with serving(smtp_starttls(context)) as port:
        result = await check(f"127.0.0.1:{port}", query_response=STARTTLS_STEPS, match_lines=True)
    assert not result.success
    assert result.message.startswith("step 3: TLS: "), result.message
    assert "certificate" in result.message
    assert result.metrics["tls"] == 0
