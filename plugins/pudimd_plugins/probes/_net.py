"""What the built-in network probes share: failures worth reporting as is, a clock that
charges time to phases, readable error texts, ``host:port`` targets, name resolution
honouring an IP-version preference, connecting to the first address that accepts, client TLS
settings and contexts, and certificate expiry.

Private to ``pudimd_plugins.probes``: a third-party probe has its own (or copies this).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import Field, FilePath, model_validator

from pudimd.settings import StrictModel

__all__ = [
    "Failure",
    "PhaseClock",
    "TlsClientSettings",
    "cert_expiry",
    "client_ssl_context",
    "connect_first",
    "error_text",
    "host_port",
    "ip_literal",
    "ip_protocol",
    "open_first",
    "resolve",
]

_T = TypeVar("_T")


class Failure(Exception):
    """A check failed for a reason worth reporting as is (with the status seen, if any)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"Failure(message={self.message!r}, status={self.status!r})"


class PhaseClock:
    """Charges elapsed time to the phase in progress (also when a check fails in it)."""

    __slots__ = ("phase", "phases", "since")

    def __init__(self, *phases: str) -> None:
        self.phases = dict.fromkeys(phases, 0.0)
        self.phase = phases[0]
        self.since = time.perf_counter()

    def enter(self, phase: str) -> None:
        """End the phase in progress and start ``phase`` (``""``: none)."""
        now = time.perf_counter()
        if self.phase in self.phases:
            self.phases[self.phase] += now - self.since
        self.phase = phase
        self.since = now


def error_text(exc: BaseException) -> str:
    """A short, lowercase reason for a network or TLS error."""
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


def ip_literal(host: str) -> int:
    """4 or 6 if ``host`` is an IP literal, else 0."""
    for family, version in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return version
    return 0


def ip_protocol(family: int) -> float:
    """The ``ip_protocol`` metric of an address family: 6.0 or 4.0."""
    return 6.0 if family == socket.AF_INET6 else 4.0


def host_port(target: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` -> (host, port); with a ``default_port`` the port may be
    left out (``host``, ``[v6]``, a bare IPv6 address).  Raises Failure when malformed."""
    text = target.strip()
    default = "" if default_port is None else str(default_port)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            host = ""
        port_text = rest[1:] if rest else default
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:  # a name, an IPv4 address or a bare IPv6 address
        host, port_text = text, default
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536 or any(c in host for c in "/ @"):
        form = "host:port or [ipv6]:port" if default_port is None else (
            "host[:port] or [ipv6][:port]"
        )
        raise Failure(f"invalid target {target!r}: expected {form}")
    return host, port


async def resolve(
    loop: asyncio.AbstractEventLoop, host: str, port: int, ip_version: str, fallback: bool
) -> list[tuple[int, str]]:
    """Addresses of ``host`` to try, in order, as (family, ip); an IP literal as is.

    ``ip_version`` ``ipv4``/``ipv6`` puts that family first (only that family without
    ``fallback``); ``any`` keeps the resolver's order."""
    literal = ip_literal(host)
    if literal:
        return [(socket.AF_INET if literal == 4 else socket.AF_INET6, host)]
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Failure(f"resolving {host!r}: {exc.strerror}") from None
    found: list[tuple[int, str]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        item = (int(family), str(sockaddr[0]))
        if item not in found:
            found.append(item)
    want = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}.get(ip_version)
    if want is not None:
        preferred = [a for a in found if a[0] == want]
        if not fallback:
            if not preferred:
                raise Failure(f"resolving {host!r}: no {ip_version} address")
            return preferred
        found = preferred + [a for a in found if a[0] != want]
    if not found:
        raise Failure(f"resolving {host!r}: no address")
    return found


async def connect_first(
    addresses: Sequence[tuple[int, str]], connect: Callable[[int, str], Awaitable[_T]]
) -> tuple[_T, int, str]:
    """``connect(family, ip)`` to each of ``addresses`` (from :func:`resolve`) in turn until
    one accepts: (what it returned, family, ip).  A timeout ends the search; when none
    accepts, the last one's error is raised."""
    error: OSError | None = None
    for family, ip in addresses:
        try:
            return await connect(family, ip), family, ip
        except OSError as exc:
            if isinstance(exc, TimeoutError):
                raise
            error = exc
    if error is None:
        raise Failure("no address to connect to")
    raise error


async def open_first(
    addresses: Sequence[tuple[int, str]], port: int, *, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, str]:
    """A stream connection to the first of ``addresses`` that accepts on ``port``: (reader,
    writer, family, ip); ``limit`` is the reader's line limit (see :func:`connect_first`)."""
    (reader, writer), family, ip = await connect_first(
        addresses,
        lambda family, ip: asyncio.open_connection(ip, port, family=family, limit=limit),
    )
    return reader, writer, family, ip


def client_ssl_context(
    *,
    verify: bool,
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    alpn: list[str] | None = None,
) -> ssl.SSLContext:
    """A TLS client context: the system's CAs (or ``ca_file``), optional client cert."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def cert_expiry(ssl_object: ssl.SSLObject) -> float | None:
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


class TlsClientSettings(StrictModel):
    """The TLS client settings the probes share: verification, the CA bundle and a client
    certificate (mutual TLS).  A probe's ``Settings`` inherits them (their docs stay in the
    probe's module docstring); ``server_name`` is the probe's own, as its meaning varies."""

    verify: bool = Field(
        default=True, description="Verify the server certificate and host name (with TLS)."
    )
    ca_file: FilePath | None = Field(
        default=None, description="PEM CA bundle to verify against (instead of the system's)."
    )
    cert_file: FilePath | None = Field(
        default=None, description="PEM client certificate (mutual TLS)."
    )
    key_file: FilePath | None = Field(
        default=None, description="PEM key of `cert_file` (if not inside it)."
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> Self:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self

    def ssl_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        """A client TLS context made from these settings (offering ``alpn``, if given)."""
        return client_ssl_context(
            verify=self.verify,
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            alpn=alpn,
        )
