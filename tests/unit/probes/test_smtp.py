"""The ``smtp`` probe against a real aiosmtpd server on loopback (TLS certificates by trustme)
and, for greetings aiosmtpd cannot give, small asyncio servers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pudimd_plugins.probes.smtp import SmtpProbe, SmtpSettings, pudimd_probe_types
from pydantic import ValidationError

from tests.helpers import free_port, run_check

pytestmark = pytest.mark.anyio


class _Sink:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"alice"
    return AuthResult(success=ok and auth_data.password == b"s3cret", handled=False)


@asynccontextmanager
async def smtpd(**kwargs: Any) -> AsyncIterator[int]:
    """Run an aiosmtpd server (in its own thread, as aiosmtpd does); yield its port."""
    port = free_port()
    controller = Controller(
        _Sink(), hostname="127.0.0.1", port=port, ident="pudimd-test-smtpd", **kwargs
    )
    await anyio.to_thread.run_sync(controller.start)
    try:
        yield port
    finally:
        await anyio.to_thread.run_sync(controller.stop)


@contextmanager
def server_tls(ca: trustme.CA) -> Iterator[ssl.SSLContext]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    yield ctx


@asynccontextmanager
async def raw_server(greeting: bytes | None) -> AsyncIterator[int]:
    """A server that sends ``greeting`` (or nothing) and then waits."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        if greeting is not None:
            writer.write(greeting)
            await writer.drain()
        await reader.read(1000)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def check(target: str, within: float = 5.0, **settings: Any) -> Any:
    return await run_check(SmtpProbe, target, within, **settings)


def test_plugin_registers_the_smtp_type() -> None:
    assert pudimd_probe_types() == [SmtpProbe]


async def test_plain_session_reads_banner_and_extensions() -> None:
    async with smtpd() as port:
        result = await check(f"127.0.0.1:{port}", ehlo_name="probe.test")
    assert result.success, result.message
    assert result.status == 220
    assert "pudimd-test-smtpd" in result.values["BANNER"]
    assert "8BITMIME" in result.values["EXTENSIONS"]
    assert result.values["CONNECTED"] is True
    assert result.metrics["tls"] == 0.0
    assert result.phases["banner"] > 0 and result.phases["ehlo"] > 0


async def test_banner_regex_match_and_mismatch() -> None:
    async with smtpd() as port:
        good = await check(f"127.0.0.1:{port}", expect_banner=r"pudimd-test-\w+")
        bad = await check(f"127.0.0.1:{port}", expect_banner=r"^Postfix")
    assert good.success, good.message
    assert not bad.success
    assert "does not match /^Postfix/" in bad.message
    assert bad.status == 220


async def test_refused_port_fails_with_reason() -> None:
    result = await check(f"127.0.0.1:{free_port()}")
    assert not result.success
    assert result.message == "connection refused"
    assert result.values["CONNECTED"] is False


async def test_server_that_never_greets_times_out_in_banner() -> None:
    async with raw_server(None) as port:
        result = await check(f"127.0.0.1:{port}", within=0.3)
    assert not result.success
    assert result.message == "timeout after 0.3s during banner"


async def test_refusing_greeting_fails_with_its_code() -> None:
    greeting = b"554-mail.test no service for you\r\n554 go away\r\n"
    async with raw_server(greeting) as port:
        result = await check(f"127.0.0.1:{port}")
    assert not result.success
    assert result.status == 554
    assert result.message == "greeting 554 go away"
    assert result.values["BANNER"] == "mail.test no service for you\ngo away"


async def test_non_smtp_answer_fails() -> None:
    async with raw_server(b"SSH-2.0-OpenSSH_9.2\r\n") as port:
        result = await check(f"127.0.0.1:{port}")
    assert not result.success
    assert result.message.startswith("not an SMTP reply")


async def test_starttls_with_trusted_certificate(ca: trustme.CA, ca_file: Path) -> None:
    with server_tls(ca) as ctx:
        async with smtpd(tls_context=ctx) as port:
            result = await check(
                f"127.0.0.1:{port}", starttls=True, ca_file=ca_file, server_name="localhost"
            )
    assert result.success, result.message
    assert result.metrics["tls"] == 1.0
    assert result.metrics["cert_expiry_timestamp"] > 0
    assert result.values["CERTIFICATE_EXPIRATION"] > 0
    assert result.phases["tls"] > 0
    # the extensions are the ones announced after the upgrade
    assert "STARTTLS" not in result.values["EXTENSIONS"]


async def test_starttls_with_untrusted_certificate_fails(ca: trustme.CA) -> None:
    with server_tls(ca) as ctx:
        async with smtpd(tls_context=ctx) as port:
            result = await check(f"127.0.0.1:{port}", starttls=True)
    assert not result.success
    assert result.message == "TLS: unable to get local issuer certificate"


async def test_starttls_not_offered_fails() -> None:
    async with smtpd() as port:
        result = await check(f"127.0.0.1:{port}", starttls=True)
    assert not result.success
    assert result.message == "server does not offer STARTTLS"


async def test_implicit_tls(ca: trustme.CA, ca_file: Path) -> None:
    with server_tls(ca) as ctx:
        async with smtpd(ssl_context=ctx) as port:
            result = await check(f"localhost:{port}", tls=True, ca_file=ca_file)
            plain = await check(f"127.0.0.1:{port}", within=1.0)
    assert result.success, result.message
    assert result.status == 220
    assert result.metrics["tls"] == 1.0
    assert not plain.success  # a plain client gets no greeting from an SMTPS port


async def test_login_after_starttls(ca: trustme.CA, ca_file: Path) -> None:
    with server_tls(ca) as ctx:
        async with smtpd(tls_context=ctx, authenticator=_authenticator) as port:
            target = f"127.0.0.1:{port}"
            tls = {"starttls": True, "ca_file": ca_file, "server_name": "localhost"}
            good = await check(target, username="alice", password="s3cret", **tls)
            bad = await check(target, username="alice", password="wrong", **tls)
    assert good.success, good.message
    assert good.phases["auth"] > 0
    assert not bad.success
    assert bad.message.startswith("authentication failed: 535")


def test_settings_refuse_contradictions(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not both"):
        SmtpSettings(tls=True, starttls=True)
    with pytest.raises(ValidationError, match="no login in clear text"):
        SmtpSettings(username="alice", password="x")
    with pytest.raises(ValidationError, match="invalid regex"):
        SmtpSettings(expect_banner="(")
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = SmtpSettings(starttls=True, username="alice", password_file=str(secret))
    assert settings.password is not None
    assert settings.password.get_secret_value() == "s3cret"
