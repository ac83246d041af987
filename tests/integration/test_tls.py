"""The ``tls`` probe against a real nginx serving certificates this module makes (trustme),
OCSP responses it signs (cryptography; nginx staples them from ``ssl_stapling_file``), an
aiosmtpd server (SMTP STARTTLS), the machine's PostgreSQL, and small loopback servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from pudimd_plugins.probes.tls import TlsProbe, TlsSettings, name_covered, pudimd_probe_types
from pydantic import ValidationError

from tests.helpers import free_port, missing, run_check
from tests.nginx import run_nginx

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Site:
    """nginx's ports, one server block each, and the CA file that trusts them."""

    ports: dict[str, int]
    ca_file: Path
    other_ca_file: Path


def _write_leaf(leaf: trustme.LeafCert, folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    return cert, key


def _ocsp_response(leaf: trustme.LeafCert, ca: trustme.CA, status: ocsp.OCSPCertStatus) -> bytes:
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    now = datetime.now(UTC)
    revoked = status == ocsp.OCSPCertStatus.REVOKED
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=cert,
            issuer=issuer,
            algorithm=hashes.SHA256(),
            cert_status=status,
            this_update=now - timedelta(hours=1),
            next_update=now + timedelta(days=1),
            revocation_time=now - timedelta(hours=2) if revoked else None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
    )
    response = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]  # any CA key type
    return response.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("nginx-tls")
    ca, other_ca = trustme.CA(), trustme.CA()
    ca_file, other_ca_file = tmp / "ca.pem", tmp / "other-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other_ca.cert_pem.write_to_path(str(other_ca_file))
    now = datetime.now(UTC)
    leaves = {
        "valid": ca.issue_cert("localhost", "127.0.0.1"),
        "soon": ca.issue_cert("localhost", not_after=now + timedelta(days=5)),
        "expired": ca.issue_cert(
            "localhost", not_before=now - timedelta(days=30), not_after=now - timedelta(days=2)
        ),
        "wrong_name": ca.issue_cert("other.example", "*.other.example"),
        "unknown_ca": other_ca.issue_cert("localhost"),
    }
    files = {name: _write_leaf(leaf, tmp, name) for name, leaf in leaves.items()}
    # other_ca's own certificate, served as a leaf: self-signed
    self_cert, self_key = tmp / "self.pem", tmp / "self.key"
    other_ca.cert_pem.write_to_path(str(self_cert))
    other_ca.private_key_pem.write_to_path(str(self_key))
    files["self_signed"] = (self_cert, self_key)
    (tmp / "good.der").write_bytes(
        _ocsp_response(leaves["valid"], ca, ocsp.OCSPCertStatus.GOOD)
    )
    (tmp / "revoked.der").write_bytes(
        _ocsp_response(leaves["valid"], ca, ocsp.OCSPCertStatus.REVOKED)
    )
    servers = {
        "valid": ("valid", "ssl_protocols TLSv1.2 TLSv1.3;"),
        "tls12": ("valid", "ssl_protocols TLSv1.2;"),
        "stapled": ("valid", f"ssl_stapling on; ssl_stapling_file {tmp}/good.der;"),
        "revoked": ("valid", f"ssl_stapling on; ssl_stapling_file {tmp}/revoked.der;"),
        "soon": ("soon", ""),
        "expired": ("expired", ""),
        "wrong_name": ("wrong_name", ""),
        "unknown_ca": ("unknown_ca", ""),
        "self_signed": ("self_signed", ""),
    }
    ports = {name: free_port() for name in servers}
    blocks = []
    for name, (cert_name, extra) in servers.items():
        cert, key = files[cert_name]
        blocks.append(
            f"""
    server {{
        listen 127.0.0.1:{ports[name]} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_trusted_certificate {ca_file};
        {extra}
        location / {{ return 200 "ok"; }}
    }}"""
        )
    with run_nginx(tmp, "\n".join(blocks), ports["valid"]):
        yield Site(ports, ca_file, other_ca_file)


async def check(target: str, within: float = 5.0, **settings: Any) -> Any:
    return await run_check(TlsProbe, target, within, **settings)


def test_plugin_registers_the_tls_type() -> None:
    assert pudimd_probe_types() == [TlsProbe]
    assert TlsProbe.type == "tls"
    assert TlsProbe.Settings is TlsSettings


def test_settings_validation() -> None:
    with pytest.raises(ValidationError):
        TlsSettings(starttls="gopher")
    with pytest.raises(ValidationError):
        TlsSettings(min_version="SSLv3")


def test_name_matching_follows_rfc_6125() -> None:
    assert name_covered("www.example.com", ["*.example.com"], [])
    assert name_covered("WWW.Example.com.", ["www.example.com"], [])
    assert not name_covered("a.b.example.com", ["*.example.com"], [])
    assert not name_covered("example.com", ["*.example.com"], [])
    assert not name_covered("x.com", ["*.com"], [])
    assert name_covered("::1", [], ["0:0::1"])
    assert not name_covered("127.0.0.1", ["127.0.0.1"], [])


async def test_valid_certificate_reports_facts(site: Site) -> None:
    result = await check(f"localhost:{site.ports['valid']}", ca_file=site.ca_file)
    assert result.success, result.message
    assert result.values["CONNECTED"] is True
    assert result.values["TLS_VERSION"] == "TLSv1.3"
    assert result.metrics["tls_version"] == 1.3
    assert result.values["CIPHER"].startswith("TLS_")
    assert result.values["SANS"] == ["localhost", "127.0.0.1"]
    assert result.values["CHAIN_VALID"] is True
    assert result.values["HOSTNAME_MATCH"] is True
    assert result.metrics["chain_valid"] == result.metrics["hostname_match"] == 1
    assert result.metrics["ocsp_stapled"] == 0
    assert result.values["OCSP_STAPLED"] is False
    # trustme certificates live for years
    assert result.metrics["cert_expiry_days"] > 300
    assert result.values["CERTIFICATE_EXPIRATION"] == pytest.approx(
        result.metrics["cert_expiry_timestamp"] - time.time(), abs=5
    )
    assert result.phases["tls"] > 0
    assert result.metrics["ip_protocol"] == 4


async def test_ip_address_target_is_matched_against_ip_sans(site: Site) -> None:
    result = await check(f"127.0.0.1:{site.ports['valid']}", ca_file=site.ca_file)
    assert result.success, result.message


async def test_unknown_ca_fails_but_reports_facts(site: Site) -> None:
    result = await check(f"localhost:{site.ports['unknown_ca']}", ca_file=site.ca_file)
    assert not result.success
    assert result.message.startswith("unknown CA: no trusted issuer for ")
    assert result.values["CHAIN_VALID"] is False
    assert result.values["HOSTNAME_MATCH"] is True
    assert result.metrics["cert_expiry_days"] > 300


async def test_system_cas_do_not_trust_a_private_ca(site: Site) -> None:
    result = await check(f"localhost:{site.ports['valid']}")
    assert not result.success
    assert result.message.startswith("unknown CA:")


async def test_verify_false_accepts_an_untrusted_certificate(site: Site) -> None:
    result = await check(f"localhost:{site.ports['unknown_ca']}", verify=False)
    assert result.success, result.message
    assert result.metrics["chain_valid"] == 0


async def test_self_signed_certificate_is_named(site: Site) -> None:
    result = await check(f"localhost:{site.ports['self_signed']}", ca_file=site.ca_file)
    assert not result.success
    assert result.message.startswith("self-signed certificate (")


async def test_expired_certificate_fails_with_its_date(site: Site) -> None:
    result = await check(f"localhost:{site.ports['expired']}", ca_file=site.ca_file)
    assert not result.success
    assert result.message.startswith("certificate expired on ")
    assert "UTC" in result.message
    assert result.metrics["cert_expiry_days"] < -1
    assert result.values["CERTIFICATE_EXPIRATION"] < 0


async def test_expired_certificate_fails_even_unverified(site: Site) -> None:
    result = await check(f"localhost:{site.ports['expired']}", verify=False)
    assert not result.success
    assert result.message.startswith("certificate expired on ")
    # unless expiry is not checked at all
    result = await check(f"localhost:{site.ports['expired']}", verify=False, min_days_left=None)
    assert result.success, result.message


async def test_min_days_left_and_degraded_days_left(site: Site) -> None:
    target = f"localhost:{site.ports['soon']}"
    result = await check(target, ca_file=site.ca_file, min_days_left=7)
    assert not result.success
    assert result.message.startswith("certificate expires in 5.0 days, on ")
    assert result.message.endswith("; minimum 7)")
    result = await check(target, ca_file=site.ca_file, degraded_days_left=14)
    assert result.success, result.message
    assert result.degraded is True
    result = await check(target, ca_file=site.ca_file, degraded_days_left=3)
    assert result.degraded is False


async def test_hostname_mismatch_names_both_sides(site: Site) -> None:
    result = await check(f"localhost:{site.ports['wrong_name']}", ca_file=site.ca_file)
    assert not result.success
    assert result.message == (
        "hostname mismatch: certificate for other.example, *.other.example "
        "does not cover 'localhost'"
    )
    assert result.values["CHAIN_VALID"] is True
    assert result.values["HOSTNAME_MATCH"] is False


async def test_server_name_sets_the_name_to_verify(site: Site) -> None:
    result = await check(
        f"127.0.0.1:{site.ports['wrong_name']}",
        ca_file=site.ca_file,
        server_name="www.other.example",
    )
    assert result.success, result.message


async def test_expect_names_must_all_be_covered(site: Site) -> None:
    result = await check(
        f"localhost:{site.ports['wrong_name']}",
        verify=False,
        expect_names=["a.other.example", "mail.example"],
    )
    assert not result.success
    assert result.message == "certificate does not cover 'mail.example'"


async def test_min_version_fails_an_older_protocol(site: Site) -> None:
    target = f"localhost:{site.ports['tls12']}"
    result = await check(target, ca_file=site.ca_file, min_version="TLSv1.3")
    assert not result.success
    assert result.message == "protocol TLSv1.2 is older than the minimum TLSv1.3"
    assert result.metrics["tls_version"] == 1.2
    result = await check(target, ca_file=site.ca_file, min_version="TLSv1.2")
    assert result.success, result.message


async def test_ocsp_staple_is_reported(site: Site) -> None:
    result = await check(
        f"localhost:{site.ports['stapled']}", ca_file=site.ca_file, require_ocsp_stapling=True
    )
    assert result.success, result.message
    assert result.metrics["ocsp_stapled"] == 1
    assert result.values["OCSP_STATUS"] == "good"


async def test_missing_ocsp_staple_fails_when_required(site: Site) -> None:
    result = await check(
        f"localhost:{site.ports['valid']}", ca_file=site.ca_file, require_ocsp_stapling=True
    )
    assert not result.success
    assert result.message == "no OCSP staple"


async def test_revoked_ocsp_staple_fails(site: Site) -> None:
    result = await check(f"localhost:{site.ports['revoked']}", ca_file=site.ca_file)
    assert not result.success
    assert result.message == "certificate revoked (OCSP staple)"
    assert result.values["OCSP_STATUS"] == "revoked"


async def test_several_problems_are_all_named(site: Site) -> None:
    result = await check(
        f"localhost:{site.ports['tls12']}", min_version="TLSv1.3", require_ocsp_stapling=True
    )
    assert not result.success
    reasons = result.message.split("; ")
    assert reasons[0].startswith("unknown CA:")
    assert reasons[1:] == ["protocol TLSv1.2 is older than the minimum TLSv1.3", "no OCSP staple"]


async def test_refused_port_fails_with_reason() -> None:
    result = await check(f"127.0.0.1:{free_port()}")
    assert not result.success
    assert result.message == "connection refused"
    assert result.values["CONNECTED"] is False


async def test_plain_text_server_fails_the_handshake() -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()

    async with serving(http) as port:
        result = await check(f"127.0.0.1:{port}")
    assert not result.success
    assert result.message.startswith("TLS: "), result.message


async def test_silent_server_times_out_in_the_tls_phase() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async with serving(silent) as port:
        started = time.perf_counter()
        result = await check(f"127.0.0.1:{port}", within=0.3)
    assert time.perf_counter() - started < 2
    assert not result.success
    assert result.message == "timeout after 0.3s during tls"


# STARTTLS


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
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
        except asyncio.CancelledError:
            pass  # the test is over: end quietly (asyncio logs a cancelled handler)
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for task in tasks:
            task.cancel()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


async def _upgrade(writer: asyncio.StreamWriter, ctx: ssl.SSLContext) -> None:
    await writer.start_tls(ctx)
    await asyncio.sleep(1)


async def test_starttls_smtp_with_aiosmtpd(ca_file: Path, server_context: ssl.SSLContext) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, tls_context=server_context)
    controller.start()
    try:
        result = await check(f"localhost:{port}", starttls="smtp", ca_file=ca_file)
        await asyncio.sleep(0.3)
    finally:
        controller.stop()
    assert result.success, result.message
    assert result.phases["starttls"] > 0
    assert result.values["SANS"] == ["localhost", "127.0.0.1"]


async def test_smtp_server_without_starttls_fails_clearly() -> None:
    async def plain_smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-mail.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        await writer.drain()
        await reader.read(100)

    async with serving(plain_smtp) as port:
        result = await check(f"127.0.0.1:{port}", starttls="smtp")
    assert not result.success
    assert result.message == "SMTP server does not offer STARTTLS"


async def test_starttls_imap(ca_file: Path, server_context: ssl.SSLContext) -> None:
    async def imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
        line = await reader.readline()
        assert line == b"a001 STARTTLS\r\n"
        writer.write(b"a001 OK Begin TLS negotiation now\r\n")
        await writer.drain()
        await _upgrade(writer, server_context)

    async with serving(imap) as port:
        result = await check(f"localhost:{port}", starttls="imap", ca_file=ca_file)
    assert result.success, result.message


async def test_imap_server_refusing_starttls_fails() -> None:
    async def imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK ready\r\n")
        await reader.readline()
        writer.write(b"a001 BAD unknown command\r\n")
        await writer.drain()
        await reader.read(100)

    async with serving(imap) as port:
        result = await check(f"localhost:{port}", starttls="imap")
    assert not result.success
    assert result.message == "IMAP server refused STARTTLS: 'BAD unknown command'"


async def test_starttls_postgres_ssl_request(
    ca_file: Path, server_context: ssl.SSLContext
) -> None:
    async def postgres(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readexactly(8)
        assert request == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
        writer.write(b"S")
        await writer.drain()
        await _upgrade(writer, server_context)

    async with serving(postgres) as port:
        result = await check(f"localhost:{port}", starttls="postgres", ca_file=ca_file)
    assert result.success, result.message


async def test_postgres_without_ssl_is_reported() -> None:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(1)
        if sock.connect_ex(("127.0.0.1", 5432)) != 0:
            missing("PostgreSQL on 127.0.0.1:5432")
    result = await check("127.0.0.1:5432", starttls="postgres")
    # the machine's PostgreSQL has ssl off; if it is ever turned on, its certificate is
    # not one our CA issued
    assert not result.success
    assert result.message.startswith(
        ("PostgreSQL server refused SSL", "unknown CA:", "self-signed certificate")
    ), result.message
