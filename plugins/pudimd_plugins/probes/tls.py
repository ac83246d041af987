"""The ``tls`` probe: a TLS handshake with a server, and what its certificate chain says.

Target: ``host:port`` (``[::1]:port`` for an IPv6 literal), any TCP port.  With
``starttls`` the probe first speaks the protocol's plain-text upgrade: ``smtp`` (greeting,
``EHLO``, ``STARTTLS``), ``imap`` (``a001 STARTTLS``), ``pop3`` (``STLS``), ``ftp``
(``AUTH TLS``) or ``postgres`` (an ``SSLRequest`` answered ``S``).

The handshake is done by pyOpenSSL, driven over memory buffers on the event loop's own
connection (nothing blocks the loop, nothing runs in a thread).  Python's ``ssl`` module
cannot ask for an OCSP staple, does not give the chain before 3.13, and aborts the handshake
on the first verification error; pyOpenSSL does all three, so one handshake reports every
fact (expiry, chain, names, staple) even when verification fails or ``verify`` is off.
Certificates are read with ``cryptography``.  Both are imported when a probe is made.

Settings (the block under ``tls:`` in a target)::

    starttls: none            # none | smtp | imap | pop3 | ftp | postgres
    verify: true              # fail when the chain is not trusted or the name not covered
    ca_file: null             # PEM CA bundle to verify against (instead of the system's)
    cert_file: null           # PEM client certificate (mutual TLS)
    key_file: null            # PEM key of cert_file (if not inside cert_file)
    server_name: null         # SNI and name to verify, instead of the target's host
    expect_names: []          # names the certificate must also cover (checked even unverified)
    min_days_left: 0          # fail when a certificate expires sooner (null: never)
    degraded_days_left: null  # degraded (still up) when one expires sooner, e.g. 14
    min_version: null         # TLSv1 | TLSv1.1 | TLSv1.2 | TLSv1.3: fail on an older one
    require_ocsp_stapling: false  # fail when the server staples no OCSP response
    ip_version: any           # any | ipv4 | ipv6: address family to try first
    ip_fallback: true         # with ipv4/ipv6, also try the other family's addresses

``min_days_left`` and ``expect_names`` apply with ``verify: false`` too.  "Expires sooner"
looks at every certificate the server sent and the verified chain up to the trusted root.
``degraded_if: ["[CERTIFICATE_EXPIRATION] < 336h"]`` on a target does the same as
``degraded_days_left: 14``.

Result: ``message`` says what failed, several reasons joined by ``; ``: ``certificate
expired on 2024-05-01 12:00:00 UTC (CN=...)``, ``self-signed certificate (...)``,
``unknown CA: no trusted issuer for ... (issuer ...)``, ``hostname mismatch: certificate
for a.example, b.example does not cover 'c.example'``, ``certificate expires in 3.1 days,
on ... (minimum 7)``, ``protocol TLSv1.2 is older than the minimum TLSv1.3``, ``no OCSP
staple``, ``certificate revoked (OCSP staple)``, ``TLS: tlsv1 alert protocol version``,
``PostgreSQL server refused SSL``, ``SMTP server does not offer STARTTLS``, ``connection
refused``, ``timeout after 5s during tls``...

Phases (seconds): ``dns``, ``connect``, ``starttls``, ``tls``.

Metrics: ``ip_protocol`` (4 or 6), ``tls_version`` (1.0, 1.1, 1.2, 1.3),
``cert_expiry_timestamp`` (earliest notAfter, Unix time), ``cert_expiry_days`` (days left
until then, negative when expired), ``chain_valid``, ``hostname_match``, ``ocsp_stapled``
(each 1 or 0), ``chain_length`` (certificates the server sent).

Values (for conditions): ``CONNECTED``, ``IP``, ``TLS_VERSION`` (``TLSv1.3``), ``CIPHER``,
``SUBJECT`` and ``ISSUER`` of the leaf (RFC 4514), ``SANS`` (its DNS names and IP
addresses), ``SERIAL`` (hex), ``CERTIFICATE_EXPIRATION`` (seconds left, float),
``CHAIN_VALID``, ``HOSTNAME_MATCH``, ``OCSP_STAPLED`` (bools), ``OCSP_STATUS`` (``good``,
``revoked``, ``unknown``; with a staple).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, FilePath, model_validator

from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings
from pudimd_plugins.probes._net import (
    Failure,
    PhaseClock,
    error_text,
    host_port,
    ip_literal,
    ip_protocol,
    open_first,
    resolve,
)

if TYPE_CHECKING:
    from cryptography import x509
    from OpenSSL import SSL

__all__ = ["TlsProbe", "TlsSettings", "name_covered", "pudimd_probe_types"]

_VERSIONS = {"TLSv1": 1.0, "TLSv1.1": 1.1, "TLSv1.2": 1.2, "TLSv1.3": 1.3}
_POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # 0x04d2162f
_EXPIRED, _NOT_YET_VALID = 10, 9
_SELF_SIGNED, _SELF_SIGNED_IN_CHAIN = 18, 19
_UNKNOWN_ISSUER = {2, 20, 21}
_REVOKED = 23
_DAY = 86400.0


class TlsSettings(PluginSettings):
    """Settings of the ``tls`` probe (see the module docstring)."""

    starttls: Literal["none", "smtp", "imap", "pop3", "ftp", "postgres"] = Field(
        default="none", description="Plain-text protocol to upgrade from before the handshake."
    )
    verify: bool = Field(
        default=True, description="Fail when the chain is untrusted or the name not covered."
    )
    ca_file: FilePath | None = Field(
        default=None, description="PEM CA bundle to verify against (instead of the system's)."
    )
    cert_file: FilePath | None = Field(
        default=None, description="PEM client certificate (mutual TLS)."
    )
    key_file: FilePath | None = Field(default=None, description="PEM key of cert_file.")
    server_name: str | None = Field(
        default=None, description="SNI and name to verify, instead of the target's host."
    )
    expect_names: list[str] = Field(
        default_factory=list, description="Names the certificate must also cover."
    )
    min_days_left: float | None = Field(
        default=0, description="Fail when a certificate expires sooner (null: never)."
    )
    degraded_days_left: float | None = Field(
        default=None, description="Degraded when a certificate expires sooner."
    )
    min_version: Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"] | None = Field(
        default=None, description="Fail when the negotiated protocol is older."
    )
    require_ocsp_stapling: bool = Field(
        default=False, description="Fail when the server staples no OCSP response."
    )
    ip_version: Literal["any", "ipv4", "ipv6"] = "any"
    ip_fallback: bool = True

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsSettings:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


@dataclass(slots=True)
class _Handshake:
    """What the callbacks of one handshake saw."""

    verify_errors: list[tuple[int, int, x509.Certificate]] = field(default_factory=list)
    ocsp: bytes = b""


def name_covered(name: str, dns_names: list[str], ips: list[str]) -> bool:
    """Whether a certificate for ``dns_names`` (wildcards in the leftmost label only) and
    ``ips`` covers host ``name`` (RFC 6125; the subject's CN is not consulted)."""
    if ip_literal(name):
        wanted = ipaddress.ip_address(name)
        return any(ipaddress.ip_address(ip) == wanted for ip in ips)
    host = name.rstrip(".").lower()
    for pattern in dns_names:
        pattern = pattern.rstrip(".").lower()
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host:
            label, rest = host.split(".", 1)
            if label and rest == pattern[2:] and "." in rest:
                return True
    return False


def _alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "no subject"


def _verify_error_text(errnum: int, cert: x509.Certificate) -> str:
    who = _subject(cert)
    if errnum == _EXPIRED:
        return f"certificate expired on {_when(cert.not_valid_after_utc)} ({who})"
    if errnum == _NOT_YET_VALID:
        return f"certificate not valid before {_when(cert.not_valid_before_utc)} ({who})"
    if errnum == _SELF_SIGNED:
        return f"self-signed certificate ({who})"
    if errnum == _SELF_SIGNED_IN_CHAIN:
        return f"untrusted self-signed certificate in the chain ({who})"
    if errnum in _UNKNOWN_ISSUER:
        issuer = cert.issuer.rfc4514_string()
        return f"unknown CA: no trusted issuer for {who} (issuer {issuer})"
    if errnum == _REVOKED:
        return f"certificate revoked ({who})"
    return f"certificate verification failed (OpenSSL X509 error {errnum}) for {who}"


def _ssl_error_text(exc: Exception) -> str:
    parts = exc.args[0] if exc.args else None
    if isinstance(parts, list):
        reasons = [str(p[-1]) for p in parts if isinstance(p, tuple) and p and p[-1]]
        if reasons:
            return "TLS: " + "; ".join(dict.fromkeys(reasons))
    return f"TLS: {exc}"


class TlsProbe:
    """Check a TLS server and its certificate; see the module docstring."""

    type = "tls"
    Settings = TlsSettings

    def __init__(self, settings: TlsSettings) -> None:
        from OpenSSL import SSL

        self.settings = settings
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        if settings.ca_file is not None:
            ctx.load_verify_locations(str(settings.ca_file))
        else:
            ctx.set_default_verify_paths()
        if settings.cert_file is not None:
            ctx.use_certificate_chain_file(str(settings.cert_file))
            ctx.use_privatekey_file(str(settings.key_file or settings.cert_file))
        # verify always, to report chain_valid, but let the handshake go on past errors:
        # the callback records them and the probe decides
        ctx.set_verify(SSL.VERIFY_PEER, _on_verify)
        ctx.set_ocsp_client_callback(_on_ocsp)
        self._ctx = ctx

    async def aclose(self) -> None:
        """Nothing to release: every check closes its own connection."""

    async def check(self, target: str, timeout: float) -> ProbeResult:
        start = time.perf_counter()
        clock = PhaseClock("dns", "connect", "starttls", "tls")
        metrics: dict[str, float] = {}
        values: dict[str, Any] = {"CONNECTED": False}
        message = ""
        degraded = False
        try:
            async with asyncio.timeout(timeout):
                message, degraded = await self._run(target, clock, metrics, values)
        except TimeoutError:
            message = f"timeout after {timeout:g}s during {clock.phase}"
        except Failure as exc:
            message = exc.message
        except OSError as exc:
            message = error_text(exc)
        clock.enter("")
        return ProbeResult(
            success=not message,
            degraded=degraded and not message,
            duration=time.perf_counter() - start,
            message=message,
            phases=clock.phases,
            metrics=metrics,
            values=values,
        )

    async def _run(
        self, target: str, clock: PhaseClock, metrics: dict[str, float], values: dict[str, Any]
    ) -> tuple[str, bool]:
        from OpenSSL import SSL

        settings = self.settings
        host, port = host_port(target)
        loop = asyncio.get_running_loop()
        addresses = await resolve(loop, host, port, settings.ip_version, settings.ip_fallback)
        clock.enter("connect")
        reader, writer, family, ip = await open_first(addresses, port)
        try:
            metrics["ip_protocol"] = ip_protocol(family)
            values["IP"] = ip
            values["CONNECTED"] = True
            if settings.starttls != "none":
                clock.enter("starttls")
                await _STARTTLS[settings.starttls](reader, writer)
            clock.enter("tls")
            name = settings.server_name or host
            state = _Handshake()
            conn = SSL.Connection(self._ctx, None)
            conn.set_app_data(state)
            conn.set_connect_state()
            if not ip_literal(name):
                conn.set_tlsext_host_name(name.encode("idna"))
            conn.request_ocsp()
            await _handshake(conn, reader, writer)
            clock.enter("")
            return self._judge(conn, state, name, metrics, values)
        finally:
            writer.transport.abort()

    def _judge(
        self,
        conn: SSL.Connection,
        state: _Handshake,
        name: str,
        metrics: dict[str, float],
        values: dict[str, Any],
    ) -> tuple[str, bool]:
        """Record the facts of a completed handshake; (failure reasons, degraded)."""
        from cryptography.x509 import ocsp

        settings = self.settings
        problems: list[str] = []
        version = conn.get_protocol_version_name()
        values["TLS_VERSION"] = version
        values["CIPHER"] = conn.get_cipher_name()
        if version in _VERSIONS:
            metrics["tls_version"] = _VERSIONS[version]
        served = conn.get_peer_cert_chain(as_cryptography=True) or []
        verified = conn.get_verified_chain(as_cryptography=True) or []
        metrics["chain_length"] = float(len(served))
        if not served:
            return "TLS: the server sent no certificate", False
        leaf = served[0]
        dns, ips = _alt_names(leaf)
        values.update(
            SUBJECT=leaf.subject.rfc4514_string(),
            ISSUER=leaf.issuer.rfc4514_string(),
            SANS=dns + ips,
            SERIAL=format(leaf.serial_number, "x"),
        )
        chain_valid = not state.verify_errors
        hostname_match = name_covered(name, dns, ips)
        metrics["chain_valid"] = float(chain_valid)
        metrics["hostname_match"] = float(hostname_match)
        values["CHAIN_VALID"] = chain_valid
        values["HOSTNAME_MATCH"] = hostname_match
        if settings.verify:
            problems.extend(_verify_error_text(n, c) for n, _depth, c in state.verify_errors)
            if not hostname_match:
                covered = ", ".join(dns + ips) or "no names"
                problems.append(
                    f"hostname mismatch: certificate for {covered} does not cover {name!r}"
                )
        problems.extend(
            f"certificate does not cover {wanted!r}"
            for wanted in settings.expect_names
            if not name_covered(wanted, dns, ips)
        )

        # expiry: the earliest notAfter of what was sent and what it was verified against
        earliest = min((*served, *verified), key=lambda c: c.not_valid_after_utc)
        expiry = earliest.not_valid_after_utc
        left = expiry.timestamp() - time.time()
        days = left / _DAY
        metrics["cert_expiry_timestamp"] = expiry.timestamp()
        metrics["cert_expiry_days"] = days
        values["CERTIFICATE_EXPIRATION"] = left
        if settings.min_days_left is not None and days < settings.min_days_left:
            if left < 0:
                problems.append(_verify_error_text(_EXPIRED, earliest))
            else:
                problems.append(
                    f"certificate expires in {days:.1f} days, on {_when(expiry)} "
                    f"({_subject(earliest)}; minimum {settings.min_days_left:g})"
                )
        degraded = settings.degraded_days_left is not None and days < settings.degraded_days_left

        if settings.min_version is not None and (
            _VERSIONS.get(version, 0.0) < _VERSIONS[settings.min_version]
        ):
            problems.append(f"protocol {version} is older than the minimum {settings.min_version}")

        stapled = bool(state.ocsp)
        metrics["ocsp_stapled"] = float(stapled)
        values["OCSP_STAPLED"] = stapled
        if stapled:
            try:
                response = ocsp.load_der_ocsp_response(state.ocsp)
                if response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
                    status = response.certificate_status.name.lower()
                else:
                    status = response.response_status.name.lower()
            except ValueError:
                status = "malformed"
            values["OCSP_STATUS"] = status
            if status == "revoked":
                problems.append("certificate revoked (OCSP staple)")
            elif settings.require_ocsp_stapling and status != "good":
                problems.append(f"OCSP staple status is {status}")
        elif settings.require_ocsp_stapling:
            problems.append("no OCSP staple")
        return "; ".join(dict.fromkeys(problems)), degraded


def _on_verify(
    conn: SSL.Connection, cert: Any, errnum: int, depth: int, ok: int
) -> bool:
    """Record a verification error and carry on (the probe judges after the handshake)."""
    if errnum:
        state: _Handshake = conn.get_app_data()
        state.verify_errors.append((errnum, depth, cert.to_cryptography()))
    return True


def _on_ocsp(conn: SSL.Connection, data: bytes, _extra: Any) -> bool:
    """Keep the stapled OCSP response (empty when none) for the probe to judge."""
    state: _Handshake = conn.get_app_data()
    state.ocsp = bytes(data)
    return True


async def _flush(conn: SSL.Connection, writer: asyncio.StreamWriter) -> None:
    from OpenSSL import SSL

    while True:
        try:
            chunk = conn.bio_read(65536)
        except SSL.WantReadError:
            break
        if not chunk:
            break
        writer.write(chunk)
    await writer.drain()


async def _handshake(
    conn: SSL.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Drive the client handshake of ``conn`` (memory BIOs) over the connection."""
    from OpenSSL import SSL

    while True:
        try:
            conn.do_handshake()
            done = True
        except SSL.WantReadError:
            done = False
        except SSL.Error as exc:
            with contextlib.suppress(OSError):
                await _flush(conn, writer)  # our alert, if any
            raise Failure(_ssl_error_text(exc)) from None
        await _flush(conn, writer)
        if done:
            return
        data = await reader.read(65536)
        if not data:
            raise Failure("connection closed during the TLS handshake")
        conn.bio_write(data)


# STARTTLS dialogues: each leaves the connection ready for the client's first TLS byte.


async def _line(reader: asyncio.StreamReader, protocol: str) -> str:
    data = await reader.readline()
    if not data:
        raise Failure(f"connection closed during {protocol} STARTTLS")
    return data.decode("utf-8", "replace").rstrip("\r\n")


async def _reply(reader: asyncio.StreamReader, protocol: str) -> tuple[int, list[str]]:
    """An SMTP/FTP reply: ``ddd-text`` lines continue, a ``ddd text`` line ends it."""
    lines: list[str] = []
    while True:
        line = await _line(reader, protocol)
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            break
    try:
        code = int(lines[-1][:3])
    except ValueError:
        raise Failure(f"{protocol} server sent {lines[-1][:60]!r}, not a reply") from None
    return code, [line[4:] for line in lines]


async def _send(writer: asyncio.StreamWriter, text: str) -> None:
    writer.write(text.encode() + b"\r\n")
    await writer.drain()


async def _starttls_smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    code, lines = await _reply(reader, "SMTP")
    if code != 220:
        raise Failure(f"SMTP server greeting: {code} {lines[-1]}")
    await _send(writer, "EHLO pudimd")
    code, lines = await _reply(reader, "SMTP")
    if code != 250:
        raise Failure(f"SMTP server refused EHLO: {code} {lines[-1]}")
    if not any(line.upper().split(" ")[0] == "STARTTLS" for line in lines[1:]):
        raise Failure("SMTP server does not offer STARTTLS")
    await _send(writer, "STARTTLS")
    code, lines = await _reply(reader, "SMTP")
    if code != 220:
        raise Failure(f"SMTP server refused STARTTLS: {code} {lines[-1]}")


async def _starttls_imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    greeting = await _line(reader, "IMAP")
    if not greeting.upper().startswith("* OK"):
        raise Failure(f"IMAP server greeting: {greeting[:80]!r}")
    await _send(writer, "a001 STARTTLS")
    while True:
        line = await _line(reader, "IMAP")
        if line.lower().startswith("a001 "):
            break
    if not line[5:].upper().startswith("OK"):
        raise Failure(f"IMAP server refused STARTTLS: {line[5:80]!r}")


async def _starttls_pop3(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    greeting = await _line(reader, "POP3")
    if not greeting.startswith("+OK"):
        raise Failure(f"POP3 server greeting: {greeting[:80]!r}")
    await _send(writer, "STLS")
    line = await _line(reader, "POP3")
    if not line.startswith("+OK"):
        raise Failure(f"POP3 server refused STLS: {line[:80]!r}")


async def _starttls_ftp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    code, lines = await _reply(reader, "FTP")
    if code != 220:
        raise Failure(f"FTP server greeting: {code} {lines[-1]}")
    await _send(writer, "AUTH TLS")
    code, lines = await _reply(reader, "FTP")
    if code != 234:
        raise Failure(f"FTP server refused AUTH TLS: {code} {lines[-1]}")


async def _starttls_postgres(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(_POSTGRES_SSL_REQUEST)
    await writer.drain()
    answer = await reader.read(1)
    if answer == b"S":
        return
    if answer == b"N":
        raise Failure("PostgreSQL server refused SSL (it answered N to SSLRequest: ssl is off)")
    if not answer:
        raise Failure("connection closed during PostgreSQL STARTTLS")
    raise Failure(f"unexpected answer {answer!r} to PostgreSQL SSLRequest")


_STARTTLS = {
    "smtp": _starttls_smtp,
    "imap": _starttls_imap,
    "pop3": _starttls_pop3,
    "ftp": _starttls_ftp,
    "postgres": _starttls_postgres,
}


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``tls`` probe."""
    return [TlsProbe]
