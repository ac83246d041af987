"""The ``smtp`` probe: greet a mail server, optionally upgrade to TLS and log in, then quit.

Target: ``host[:port]`` (``[::1]:port`` for an IPv6 literal; port 25, or 465 with
``tls: true``, when left out).  Every check opens a new connection and walks the start of an
SMTP session (RFC 5321): read the ``220`` greeting (which may span several lines), ``EHLO``,
``STARTTLS`` and ``EHLO`` again (``starttls: true``), ``AUTH`` (``username``), then ``QUIT``.
No mail is sent.

Settings (the block under ``smtp:`` in a target)::

    ehlo_name: null      # name given in EHLO; null: this machine's host name
    starttls: false      # upgrade with STARTTLS (fails if the server does not offer it)
    tls: false           # implicit TLS from the first byte ("SMTPS", port 465)
    verify: true         # verify the server certificate and host name (with TLS)
    ca_file: null        # PEM CA bundle to verify against (instead of the system's)
    cert_file: null      # PEM client certificate (mutual TLS)
    key_file: null       # PEM key of cert_file (if not inside cert_file)
    server_name: null    # TLS SNI and certificate name, instead of the target's host
    expect_banner: null  # regex the greeting text must match (searched, not anchored)
    username: null       # log in with AUTH PLAIN (or LOGIN) after EHLO (and STARTTLS)
    password: null       # (or password_file)
    password_file: null
    ip_version: any      # any | ipv4 | ipv6: address family to try first
    ip_fallback: true    # with ipv4/ipv6, also try the other family's addresses

Logging in over a connection that is not encrypted is refused by the probe (set ``tls`` or
``starttls``), as a mail client would, so the password never crosses the network in clear.

Result: ``status`` is the greeting's reply code (``220``, or the ``421``/``554`` of a server
that refuses the session); ``message`` names the failure (``connection refused``, ``timeout
after 2s during ehlo``, ``greeting 554 ...``, ``banner '...' does not match /regex/``,
``server does not offer STARTTLS``, the TLS verification error, ``authentication failed:
535 ...``).

Phases (seconds): ``dns``, ``connect``, ``tls`` (implicit TLS or STARTTLS handshake),
``banner`` (connected until the greeting is read), ``ehlo`` (every EHLO and the STARTTLS
command), ``auth``.

Metrics: ``ip_protocol`` (4 or 6), ``tls`` (1 or 0), ``cert_expiry_timestamp`` (earliest
notAfter of the server's certificate chain, Unix time; only with TLS).

Values: ``CONNECTED`` (bool), ``IP`` (str), ``BANNER`` (the greeting text without its reply
codes, lines joined by newlines), ``EXTENSIONS`` (list of the EHLO keywords the server
announced last, uppercase: ``["8BITMIME", "AUTH", "SIZE", "STARTTLS"]``),
``CERTIFICATE_EXPIRATION`` (seconds until ``cert_expiry_timestamp``; only with TLS).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import ssl
import time
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings, Regex, SecretFile
from pudimd_plugins.probes._net import (
    Failure,
    PhaseClock,
    TlsClientSettings,
    cert_expiry,
    error_text,
    host_port,
    ip_protocol,
    open_first,
    resolve,
)

__all__ = ["SmtpProbe", "SmtpSettings", "pudimd_probe_types"]

_LINE_LIMIT = 4096
_MAX_LINES = 200


class SmtpSettings(PluginSettings, TlsClientSettings):
    """Settings of the ``smtp`` probe (see the module docstring)."""

    ehlo_name: str | None = Field(
        default=None, description="Name given in EHLO; null: this machine's host name."
    )
    starttls: bool = Field(default=False, description="Upgrade the session with STARTTLS.")
    tls: bool = Field(default=False, description="Implicit TLS from the first byte (port 465).")
    server_name: str | None = None
    expect_banner: Regex | None = Field(
        default=None, description="Regex the greeting text must match (searched)."
    )
    username: str | None = Field(default=None, description="Log in with AUTH PLAIN or LOGIN.")
    password: SecretStr | None = None
    password_file: SecretFile | None = None
    ip_version: Literal["any", "ipv4", "ipv6"] = "any"
    ip_fallback: bool = True

    @field_validator("ehlo_name")
    @classmethod
    def _ehlo_name_token(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9.\-\[\]:_]+", value):
            raise ValueError(f"invalid EHLO name {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SmtpSettings:
        if self.tls and self.starttls:
            raise ValueError("set tls (implicit TLS) or starttls, not both")
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        if self.username is not None and not (self.tls or self.starttls):
            raise ValueError("username needs tls or starttls (no login in clear text)")
        return self


class _Session:
    """One SMTP connection: reply reading and command writing."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> tuple[int, list[str]]:
        """A (possibly multi-line) reply: its code and the text of each line."""
        lines: list[str] = []
        while len(lines) < _MAX_LINES:
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                got = exc.partial.decode("utf-8", "replace")
                if lines or got:
                    raise Failure(f"connection closed in a reply (got {got[:60]!r})") from None
                raise Failure("connection closed by server") from None
            except asyncio.LimitOverrunError:
                raise Failure(f"reply line longer than {_LINE_LIMIT} bytes") from None
            except ssl.SSLError as exc:
                raise Failure(error_text(exc)) from None
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise Failure(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), lines
        raise Failure(f"reply longer than {_MAX_LINES} lines")

    async def command(self, text: str) -> tuple[int, list[str]]:
        self.writer.write(text.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return await self.reply()


def _shown(code: int, lines: list[str]) -> str:
    return f"{code} {lines[-1] if lines else ''}".strip()[:120]


class SmtpProbe:
    """Check an SMTP server; see the module docstring."""

    type = "smtp"
    Settings = SmtpSettings

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._expect = re.compile(settings.expect_banner) if settings.expect_banner else None
        self._ssl: ssl.SSLContext | None = None
        if settings.tls or settings.starttls:
            self._ssl = settings.ssl_context()
        self._ehlo = settings.ehlo_name or socket.gethostname() or "localhost"

    async def aclose(self) -> None:
        """Nothing to release: every check closes its own connection."""

    async def check(self, target: str, timeout: float) -> ProbeResult:
        start = time.perf_counter()
        clock = PhaseClock("dns", "connect", "tls", "banner", "ehlo", "auth")
        result = ProbeResult(success=False, metrics={"tls": 0.0}, values={"CONNECTED": False})
        message = ""
        try:
            async with asyncio.timeout(timeout):
                await self._run(target, clock, result)
        except TimeoutError:
            message = f"timeout after {timeout:g}s during {clock.phase}"
        except Failure as exc:
            message = exc.message
        except OSError as exc:
            message = error_text(exc)
        clock.enter("")
        result.success = not message
        result.message = message
        result.duration = time.perf_counter() - start
        result.phases = clock.phases
        return result

    async def _run(self, target: str, clock: PhaseClock, result: ProbeResult) -> None:
        st = self.settings
        host, port = host_port(target, 465 if st.tls else 25)
        addresses = await resolve(
            asyncio.get_running_loop(), host, port, st.ip_version, st.ip_fallback
        )
        clock.enter("connect")
        reader, writer, family, ip = await open_first(addresses, port, limit=_LINE_LIMIT)
        try:
            result.metrics["ip_protocol"] = ip_protocol(family)
            result.values.update(CONNECTED=True, IP=ip)
            session = _Session(reader, writer)
            if st.tls:
                await self._start_tls(session, host, clock, result)
            await self._converse(session, host, clock, result)
        finally:
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _converse(
        self, session: _Session, host: str, clock: PhaseClock, result: ProbeResult
    ) -> None:
        clock.enter("banner")
        code, lines = await session.reply()
        result.status = code
        result.values["BANNER"] = "\n".join(lines)
        if code != 220:
            raise Failure(f"greeting {_shown(code, lines)}")
        if self._expect is not None and not self._expect.search(result.values["BANNER"]):
            raise Failure(f"banner {lines[0][:80]!r} does not match /{self._expect.pattern}/")
        clock.enter("ehlo")
        extensions = await self._ehlo_command(session, result)
        if self.settings.starttls:
            if "STARTTLS" not in extensions:
                raise Failure("server does not offer STARTTLS")
            code, lines = await session.command("STARTTLS")
            if code != 220:
                raise Failure(f"STARTTLS answered {_shown(code, lines)}")
            await self._start_tls(session, host, clock, result)
            clock.enter("ehlo")
            extensions = await self._ehlo_command(session, result)
        if self.settings.username is not None:
            clock.enter("auth")
            await self._login(session, extensions)
        clock.enter("")
        # QUIT without waiting for the 221: the session is judged, and closing (not
        # aborting) the connection lets the server read the QUIT before the FIN
        with contextlib.suppress(OSError):
            session.writer.write(b"QUIT\r\n")
            session.writer.close()

    async def _ehlo_command(self, session: _Session, result: ProbeResult) -> dict[str, str]:
        code, lines = await session.command(f"EHLO {self._ehlo}")
        if code != 250:
            raise Failure(f"EHLO answered {_shown(code, lines)}")
        extensions: dict[str, str] = {}
        for line in lines[1:]:
            keyword, _, params = line.partition(" ")
            if keyword:
                extensions[keyword.upper()] = params.strip()
        result.values["EXTENSIONS"] = sorted(extensions)
        return extensions

    async def _start_tls(
        self, session: _Session, host: str, clock: PhaseClock, result: ProbeResult
    ) -> None:
        assert self._ssl is not None
        clock.enter("tls")
        if session.reader._buffer:  # type: ignore[attr-defined]  # no public peek
            raise Failure("unexpected data before TLS handshake")
        try:
            await session.writer.start_tls(
                self._ssl, server_hostname=self.settings.server_name or host
            )
        except ssl.SSLError as exc:
            raise Failure(error_text(exc)) from None
        result.metrics["tls"] = 1.0
        ssl_object = session.writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            expiry = cert_expiry(ssl_object)
            if expiry is not None:
                result.metrics["cert_expiry_timestamp"] = expiry
                result.values["CERTIFICATE_EXPIRATION"] = expiry - time.time()

    async def _login(self, session: _Session, extensions: dict[str, str]) -> None:
        st = self.settings
        assert st.username is not None
        password = st.password.get_secret_value() if st.password is not None else ""
        mechanisms = extensions.get("AUTH", "").upper().split()
        if "AUTH" not in extensions:
            raise Failure("server does not offer AUTH")
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{st.username}\0{password}".encode()).decode()
            code, lines = await session.command(f"AUTH PLAIN {token}")
        elif "LOGIN" in mechanisms:
            code, lines = await session.command("AUTH LOGIN")
            for answer in (st.username, password):
                if code != 334:
                    break
                code, lines = await session.command(base64.b64encode(answer.encode()).decode())
        else:
            offered = " ".join(mechanisms) or "none"
            raise Failure(f"no supported AUTH mechanism (PLAIN, LOGIN); offered: {offered}")
        if code != 235:
            raise Failure(f"authentication failed: {_shown(code, lines)}")


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``smtp`` probe."""
    return [SmtpProbe]
