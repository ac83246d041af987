"""The ``tcp`` probe: connect to a port, optionally speak TLS, send a line, expect an answer.

Target: ``host:port`` (``[::1]:port`` for an IPv6 literal).  Every check opens a new
connection.  The steps are: resolve, connect, TLS handshake (``tls: true``), write ``send``,
then read until ``expect`` matches.  Without ``expect`` a successful connect (and handshake,
and write) is success.

Settings (the block under ``tcp:`` in a target)::

    send: null           # text written after connecting; \\r \\n \\t \\0 \\\\ and \\xNN escapes
    expect: null         # regex the bytes read must match (searched, not anchored)
    read_bytes: 65536    # give up matching ``expect`` after reading this many bytes
    tls: false           # do a TLS handshake after connecting
    verify: true         # verify the server certificate and host name (with tls)
    ca_file: null        # PEM CA bundle to verify against (instead of the system's)
    cert_file: null      # PEM client certificate (mutual TLS)
    key_file: null       # PEM key of cert_file (if not inside cert_file)
    server_name: null    # TLS SNI and certificate name, instead of the target's host
    ip_version: any      # any | ipv4 | ipv6: address family to try first
    ip_fallback: true    # with ipv4/ipv6, also try the other family's addresses

Result: ``message`` names the failure (``connection refused``, ``timeout after 2s during
connect``, ``timeout waiting for /regex/``, ``connection closed before /regex/ matched``,
the TLS verification error...).

Phases (seconds): ``dns``, ``connect``, ``tls``, ``expect`` (after ``send`` is written, until
``expect`` matches).

Metrics: ``ip_protocol`` (4 or 6), ``tls`` (1 or 0), ``cert_expiry_timestamp`` (earliest
notAfter of the server's certificate chain, Unix time; only with ``tls``), ``bytes_read``.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from typing import Any, Literal

from pydantic import Field, FilePath, field_validator, model_validator

from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings

__all__ = ["TcpProbe", "TcpSettings", "pudimd_probe_types"]

_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)", re.DOTALL)
_SIMPLE = {"r": "\r", "n": "\n", "t": "\t", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def unescape(text: str) -> bytes:
    """``text`` as UTF-8 bytes with ``\\r``, ``\\n``, ``\\t``, ``\\0``, ``\\\\`` and
    ``\\xNN`` escapes replaced; any other backslash sequence is an error."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("x") and len(code) == 3:
            return chr(int(code[1:], 16))
        if code in _SIMPLE:
            return _SIMPLE[code]
        raise ValueError(f"unknown escape \\{code} (use \\r \\n \\t \\0 \\\\ or \\xNN)")

    # \xNN stands for one byte: map through latin-1 so 0x80-0xff stay single bytes
    parts: list[bytes] = []
    pos = 0
    for match in _ESCAPE.finditer(text):
        parts.append(text[pos : match.start()].encode())
        parts.append(one(match).encode("latin-1"))
        pos = match.end()
    parts.append(text[pos:].encode())
    return b"".join(parts)


class TcpSettings(PluginSettings):
    """Settings of the ``tcp`` probe (see the module docstring)."""

    send: str | None = None
    expect: str | None = None
    read_bytes: int = Field(default=65536, gt=0)
    tls: bool = False
    verify: bool = True
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    server_name: str | None = None
    ip_version: Literal["any", "ipv4", "ipv6"] = "any"
    ip_fallback: bool = True

    @field_validator("send")
    @classmethod
    def _send_escapes(cls, value: str | None) -> str | None:
        if value is not None:
            unescape(value)
        return value

    @field_validator("expect")
    @classmethod
    def _expect_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TcpSettings:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


class _Failure(Exception):
    """A check failed for a reason worth reporting as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"_Failure(message={self.message!r})"


class _Clock:
    """Charges elapsed time to the phase in progress (also when a check fails in it)."""

    __slots__ = ("phase", "phases", "since")

    def __init__(self) -> None:
        self.phases = {"dns": 0.0, "connect": 0.0, "tls": 0.0, "expect": 0.0}
        self.phase = "dns"
        self.since = time.perf_counter()

    def enter(self, phase: str) -> None:
        """End the phase in progress and start ``phase``."""
        now = time.perf_counter()
        if self.phase in self.phases:
            self.phases[self.phase] += now - self.since
        self.phase = phase
        self.since = now


def split_target(target: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); raises _Failure when malformed."""
    host, sep, port_text = target.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""  # an unbracketed IPv6 address
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 0 < port < 65536:
        raise _Failure(f"invalid target {target!r}: expected host:port or [ipv6]:port")
    return host, port


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _cert_expiry(ssl_object: ssl.SSLObject) -> float | None:
    """Earliest notAfter of the peer's chain (the leaf alone where the chain is hidden)."""
    infos: list[dict[str, Any]] = []
    inner = getattr(ssl_object, "_sslobj", None)  # the chain has no public API before 3.13
    for name in ("get_verified_chain", "get_unverified_chain"):
        getter = getattr(inner, name, None)
        if getter is None:
            continue
        try:
            chain = getter()
        except (ssl.SSLError, ValueError):
            chain = None
        if chain:
            infos = [cert.get_info() for cert in chain]
            break
    if not infos:
        leaf = ssl_object.getpeercert()
        if leaf:
            infos = [dict(leaf)]
    stamps = [ssl.cert_time_to_seconds(i["notAfter"]) for i in infos if i.get("notAfter")]
    return float(min(stamps)) if stamps else None


class TcpProbe:
    """Check a TCP port; see the module docstring."""

    type = "tcp"
    Settings = TcpSettings

    def __init__(self, settings: TcpSettings) -> None:
        self.settings = settings
        self._send = unescape(settings.send) if settings.send is not None else None
        self._expect = re.compile(settings.expect.encode()) if settings.expect else None
        self._ssl: ssl.SSLContext | None = None
        if settings.tls:
            ctx = ssl.create_default_context(
                cafile=str(settings.ca_file) if settings.ca_file else None
            )
            if not settings.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if settings.cert_file is not None:
                key = str(settings.key_file) if settings.key_file else None
                ctx.load_cert_chain(str(settings.cert_file), key)
            self._ssl = ctx

    async def aclose(self) -> None:
        """Nothing to release: every check closes its own connection."""

    async def check(self, target: str, timeout: float) -> ProbeResult:
        start = time.perf_counter()
        clock = _Clock()
        metrics: dict[str, float] = {"tls": 0.0, "bytes_read": 0.0}
        message = ""
        try:
            async with asyncio.timeout(timeout):
                await self._run(target, clock, metrics)
        except TimeoutError:
            if clock.phase == "expect" and self._expect is not None:
                message = f"timeout waiting for /{self._expect.pattern.decode()}/"
            else:
                message = f"timeout after {timeout:g}s during {clock.phase}"
        except _Failure as exc:
            message = exc.message
        except OSError as exc:
            message = _error_text(exc)
        clock.enter("")
        return ProbeResult(
            success=not message,
            duration=time.perf_counter() - start,
            message=message,
            phases=clock.phases,
            metrics=metrics,
        )

    async def _run(self, target: str, clock: _Clock, metrics: dict[str, float]) -> None:
        host, port = split_target(target)
        loop = asyncio.get_running_loop()
        addresses = await self._resolve(loop, host, port)
        clock.enter("connect")
        writer: asyncio.StreamWriter | None = None
        try:
            error: OSError | None = None
            for family, ip in addresses:
                try:
                    reader, writer = await asyncio.open_connection(ip, port, family=family)
                except OSError as exc:
                    if isinstance(exc, TimeoutError):
                        raise
                    error = exc
                    continue
                metrics["ip_protocol"] = 6.0 if family == socket.AF_INET6 else 4.0
                break
            if writer is None:
                assert error is not None
                raise error
            if self._ssl is not None:
                clock.enter("tls")
                try:
                    await writer.start_tls(
                        self._ssl, server_hostname=self.settings.server_name or host
                    )
                except ssl.SSLError as exc:
                    raise _Failure(_error_text(exc)) from None
                metrics["tls"] = 1.0
                ssl_object = writer.get_extra_info("ssl_object")
                if ssl_object is not None:
                    expiry = _cert_expiry(ssl_object)
                    if expiry is not None:
                        metrics["cert_expiry_timestamp"] = expiry
            clock.enter("send")
            if self._send:
                writer.write(self._send)
                await writer.drain()
            if self._expect is not None:
                clock.enter("expect")
                await self._read_until_match(reader, self._expect, metrics)
        finally:
            if writer is not None:
                writer.transport.abort()

    async def _read_until_match(
        self, reader: asyncio.StreamReader, expect: re.Pattern[bytes], metrics: dict[str, float]
    ) -> None:
        limit = self.settings.read_bytes
        seen = bytearray()
        shown = f"/{expect.pattern.decode()}/"
        while True:
            try:
                data = await reader.read(limit - len(seen))
            except ssl.SSLError as exc:
                raise _Failure(_error_text(exc)) from None
            seen += data
            metrics["bytes_read"] = float(len(seen))
            if expect.search(seen):
                return
            if not data:
                got = bytes(seen[-60:]).decode("utf-8", "replace")
                raise _Failure(f"connection closed before {shown} matched (got {got!r})")
            if len(seen) >= limit:
                raise _Failure(f"read {limit} bytes without matching {shown}")

    async def _resolve(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int
    ) -> list[tuple[int, str]]:
        """Addresses to try, in order: (family, ip)."""
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise _Failure(f"resolving {host!r}: {exc.strerror}") from None
        found: list[tuple[int, str]] = []
        for family, _type, _proto, _name, sockaddr in infos:
            item = (int(family), str(sockaddr[0]))
            if item not in found:
                found.append(item)
        want = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}.get(self.settings.ip_version)
        if want is not None:
            preferred = [a for a in found if a[0] == want]
            if not self.settings.ip_fallback:
                if not preferred:
                    raise _Failure(f"resolving {host!r}: no {self.settings.ip_version} address")
                return preferred
            found = preferred + [a for a in found if a[0] != want]
        if not found:
            raise _Failure(f"resolving {host!r}: no address")
        return found


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``tcp`` probe."""
    return [TcpProbe]
