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
from pudimd_plugins.probes._net import (
    Failure,
    PhaseClock,
    cert_expiry,
    client_ssl_context,
    error_text,
    resolve,
)

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


def split_target(target: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); raises Failure when malformed."""
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
        raise Failure(f"invalid target {target!r}: expected host:port or [ipv6]:port")
    return host, port


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
            self._ssl = client_ssl_context(
                verify=settings.verify,
                ca_file=settings.ca_file,
                cert_file=settings.cert_file,
                key_file=settings.key_file,
            )

    async def aclose(self) -> None:
        """Nothing to release: every check closes its own connection."""

    async def check(self, target: str, timeout: float) -> ProbeResult:
        start = time.perf_counter()
        clock = PhaseClock("dns", "connect", "tls", "expect")
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
        except Failure as exc:
            message = exc.message
        except OSError as exc:
            message = error_text(exc)
        clock.enter("")
        return ProbeResult(
            success=not message,
            duration=time.perf_counter() - start,
            message=message,
            phases=clock.phases,
            metrics=metrics,
        )

    async def _run(self, target: str, clock: PhaseClock, metrics: dict[str, float]) -> None:
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
                    raise Failure(error_text(exc)) from None
                metrics["tls"] = 1.0
                ssl_object = writer.get_extra_info("ssl_object")
                if ssl_object is not None:
                    expiry = cert_expiry(ssl_object)
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
                raise Failure(error_text(exc)) from None
            seen += data
            metrics["bytes_read"] = float(len(seen))
            if expect.search(seen):
                return
            if not data:
                got = bytes(seen[-60:]).decode("utf-8", "replace")
                raise Failure(f"connection closed before {shown} matched (got {got!r})")
            if len(seen) >= limit:
                raise Failure(f"read {limit} bytes without matching {shown}")

    async def _resolve(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int
    ) -> list[tuple[int, str]]:
        return await resolve(loop, host, port, self.settings.ip_version, self.settings.ip_fallback)


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``tcp`` probe."""
    return [TcpProbe]
