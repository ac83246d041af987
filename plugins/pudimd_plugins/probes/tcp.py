"""The ``tcp`` probe: connect to a port, optionally speak TLS, then hold a short scripted
conversation: expect a banner, send a line, upgrade to TLS (STARTTLS), expect again...

Target: ``host:port`` (``[::1]:port`` for an IPv6 literal).  Every check opens a new
connection.  The steps are: resolve, connect, TLS handshake (``tls: true``), then the
conversation: ``query_response``, or the one-step shortcut ``send`` then ``expect``.
Without either, a successful connect (and handshake) is success.

Settings (the block under ``tcp:`` in a target)::

    send: null           # text written after connecting; \\r \\n \\t \\0 \\\\ and \\xNN escapes
    expect: null         # regex the bytes read must match (searched, not anchored)
    query_response: []   # the conversation, in order (instead of send/expect; see below)
    match_lines: false   # match each expect against one line at a time (blackbox's way)
    read_bytes: 65536    # give up matching an expect after reading this many bytes
    tls: false           # do a TLS handshake after connecting
    verify: true         # verify the server certificate and host name (tls, starttls)
    ca_file: null        # PEM CA bundle to verify against (instead of the system's)
    cert_file: null      # PEM client certificate (mutual TLS)
    key_file: null       # PEM key of cert_file (if not inside cert_file)
    server_name: null    # TLS SNI and certificate name, instead of the target's host
    ip_version: any      # any | ipv4 | ipv6: address family to try first
    ip_fallback: true    # with ipv4/ipv6, also try the other family's addresses

``query_response`` is a list of steps; each step does, in this order, whichever of these
it has (at least one)::

    - expect: "^220 ([^ ]+) ESMTP"   # read until this regex matches
      send: "EHLO ${1}\\r\\n"          # then write this (escapes as in ``send``)
      starttls: true                 # then upgrade the connection to TLS (tls: false only)

A step's ``send`` may use the groups of the same step's ``expect`` match, as Go's
``Regexp.Expand`` does (blackbox_exporter's rule): ``${1}``, ``${name}``, ``$1``, ``$name``;
``$$`` is a ``$``; a group that does not exist or did not match is empty.  In a step
without ``expect``, ``send`` has no ``$`` substitution.  Each expect reads on from where the
previous one's match ended (with ``match_lines``: from the line after the matching line);
bytes left unread before a ``starttls`` are dropped.  ``send``/``expect`` is the same as
``query_response: [{send: ...}, {expect: ...}]``; setting both forms is an error.  With
``match_lines``, the bytes read are split at ``\\n`` (a ``\\r`` before it is dropped) and an
expect is searched in each line alone, so ``^`` and ``$`` anchor at the line and ``.+``
stays in it.  ``starttls`` uses the TLS settings above (``verify``, ``ca_file``...).

Result: ``message`` names the failure (``connection refused``, ``timeout after 2s during
connect``, ``timeout waiting for /regex/``, ``connection closed before /regex/ matched``,
``read 65536 bytes without matching /regex/``, the TLS verification error...); with
``query_response`` a failure in a step starts with the step's number, counted from 1
(``step 4: timeout waiting for /^:[^ ]+ 001/``).

Phases (seconds): ``dns``, ``connect``, ``tls`` (the handshake after connecting, plus any
``starttls``), ``expect`` (the time spent waiting for expects to match).

Metrics: ``ip_protocol`` (4 or 6), ``tls`` (1 once TLS is in use, by ``tls`` or
``starttls``; else 0), ``starttls`` (1 after a ``starttls`` step), ``cert_expiry_timestamp``
(earliest notAfter of the server's certificate chain, Unix time; only with TLS),
``tls_version`` (1.2, 1.3...; only with TLS), ``bytes_read`` (over the whole
conversation), ``failed_due_to_regex`` (1 when the connection closed or ``read_bytes`` ran out
before an expect matched; 0 once one matched).

Values (for conditions): ``CONNECTED`` (a connection was made), ``IP`` (the address
connected to), ``BODY`` (all the bytes read; only with an expect), ``CERTIFICATE_EXPIRATION``
(seconds until the earliest notAfter; only with TLS).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import BytesRegex, PluginSettings, StrictModel
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

if TYPE_CHECKING:
    from pudimd.blackbox import Metric

__all__ = ["TcpProbe", "TcpSettings", "TcpStep", "expand", "pudimd_probe_types", "unescape"]

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


def _check_escapes(value: str) -> str:
    unescape(value)
    return value


SendText = Annotated[str, AfterValidator(_check_escapes)]
"""Text to write, with ``unescape``'s escapes."""


class TcpStep(StrictModel):
    """One step of a ``tcp`` conversation: expect, then send, then starttls."""

    expect: BytesRegex | None = Field(
        default=None, description="Regex to read until it matches (searched, not anchored)."
    )
    send: SendText | None = Field(
        default=None,
        description="Text to write next; escapes as in `send`, `${1}`/`${name}` from this "
        "step's expect match.",
    )
    starttls: bool = Field(default=False, description="Then upgrade the connection to TLS.")

    @model_validator(mode="after")
    def _not_empty(self) -> TcpStep:
        if self.expect is None and self.send is None and not self.starttls:
            raise ValueError("a step needs expect, send or starttls")
        return self


class TcpSettings(PluginSettings, TlsClientSettings):
    """Settings of the ``tcp`` probe (see the module docstring)."""

    send: SendText | None = Field(
        default=None, description="Text written after connecting (one-step shortcut)."
    )
    expect: BytesRegex | None = Field(
        default=None, description="Regex the bytes read must match (one-step shortcut)."
    )
    query_response: list[TcpStep] = Field(
        default_factory=list,
        description="The conversation: steps of expect, send and starttls, in order.",
    )
    match_lines: bool = Field(
        default=False, description="Match each expect against one line at a time."
    )
    read_bytes: int = Field(
        default=65536, gt=0, description="Give up an expect after reading this many bytes."
    )
    tls: bool = Field(default=False, description="Do a TLS handshake after connecting.")
    server_name: str | None = Field(
        default=None, description="SNI and certificate name, instead of the target's host."
    )
    ip_version: Literal["any", "ipv4", "ipv6"] = Field(
        default="any", description="Address family to try first."
    )
    ip_fallback: bool = Field(
        default=True, description="With ipv4/ipv6, also try the other family."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TcpSettings:
        if self.query_response and (self.send is not None or self.expect is not None):
            raise ValueError(
                "set query_response or send/expect, not both (send/expect is a one-step shortcut)"
            )
        starttls = sum(step.starttls for step in self.query_response)
        if starttls and self.tls:
            raise ValueError("starttls needs tls: false (the connection is TLS already)")
        if starttls > 1:
            raise ValueError("only one step may have starttls")
        return self


def expand(template: bytes, match: re.Match[bytes]) -> bytes:
    """``template`` with ``${1}``, ``${name}``, ``$1``, ``$name`` replaced by the groups of
    ``match`` and ``$$`` by ``$``: Go's ``Regexp.Expand``, which blackbox_exporter uses."""

    def one(ref: re.Match[bytes]) -> bytes:
        if ref.group(0) == b"$$":
            return b"$"
        name = (ref.group(1) or ref.group(2)).decode()
        # Go: a number is all digits, without a leading zero, below 1e8; else a name
        if name.isdigit() and (name == "0" or name[0] != "0") and len(name) <= 8:
            number = int(name)
            group = match.group(number) if number <= (match.re.groups or 0) else None
        else:
            group = match.group(name) if name in match.re.groupindex else None
        return group or b""

    return _REFERENCE.sub(one, template)


_REFERENCE = re.compile(rb"\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)|\$\$")


class _Step:
    """A step made ready: compiled regex, unescaped send, its number for messages."""

    __slots__ = ("expect", "number", "send", "starttls")

    def __init__(self, number: int, expect: str | None, send: str | None, starttls: bool) -> None:
        self.number = number
        self.expect = re.compile(expect.encode()) if expect else None  # "": none, as in Go
        self.send = unescape(send) if send is not None else None
        self.starttls = starttls


class _Exchange:
    """One check's conversation state (a probe instance serves concurrent checks)."""

    __slots__ = ("body", "host", "metrics", "pending", "reader", "step", "values", "writer")

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        metrics: dict[str, float],
        values: dict[str, Any],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.host = host
        self.metrics = metrics
        self.values = values
        self.pending = bytearray()  # read, not yet consumed by an expect
        self.body = bytearray()  # everything read
        self.step: _Step | None = None


class TcpProbe:
    """Check a TCP port; see the module docstring."""

    type = "tcp"
    Settings = TcpSettings
    blackbox_prober = "tcp"  # serves blackbox modules on /probe (see _blackbox.py)

    @classmethod
    def from_blackbox(cls, prober: Mapping[str, Any]) -> TcpSettings:
        from pudimd_plugins.probes._blackbox import tcp_settings

        return tcp_settings(prober)

    @staticmethod
    def blackbox_metrics(result: ProbeResult) -> list[Metric]:
        from pudimd_plugins.probes._blackbox import tcp_metrics

        return tcp_metrics(result)

    def __init__(self, settings: TcpSettings) -> None:
        self.settings = settings
        if settings.query_response:
            self._numbered = True
            self._steps = [
                _Step(number, step.expect, step.send, step.starttls)
                for number, step in enumerate(settings.query_response, 1)
            ]
        else:  # the shortcut: send, then expect
            self._numbered = False
            self._steps = []
            if settings.send:
                self._steps.append(_Step(1, None, settings.send, False))
            if settings.expect:
                self._steps.append(_Step(len(self._steps) + 1, settings.expect, None, False))
        self._ssl: ssl.SSLContext | None = None
        if settings.tls or any(step.starttls for step in self._steps):
            self._ssl = settings.ssl_context()

    async def aclose(self) -> None:
        """Nothing to release: every check closes its own connection."""

    async def check(self, target: str, timeout: float) -> ProbeResult:
        start = time.perf_counter()
        clock = PhaseClock("dns", "connect", "tls", "expect")
        metrics: dict[str, float] = {"tls": 0.0, "bytes_read": 0.0}
        values: dict[str, Any] = {"CONNECTED": False}
        exchange: list[_Exchange] = []  # filled once connected
        message = ""
        try:
            async with asyncio.timeout(timeout):
                await self._run(target, clock, metrics, values, exchange)
        except TimeoutError:
            step = exchange[0].step if exchange else None
            if clock.phase == "expect" and step is not None and step.expect is not None:
                message = f"timeout waiting for /{step.expect.pattern.decode()}/"
            else:
                message = f"timeout after {timeout:g}s during {clock.phase}"
            if step is not None and self._numbered:
                message = f"step {step.number}: {message}"
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
            values=values,
        )

    async def _run(
        self,
        target: str,
        clock: PhaseClock,
        metrics: dict[str, float],
        values: dict[str, Any],
        exchange: list[_Exchange],
    ) -> None:
        host, port = host_port(target)
        loop = asyncio.get_running_loop()
        addresses = await self._resolve(loop, host, port)
        clock.enter("connect")
        reader, writer, family, ip = await open_first(addresses, port)
        try:
            metrics["ip_protocol"] = ip_protocol(family)
            values["CONNECTED"] = True
            values["IP"] = ip
            ex = _Exchange(reader, writer, host, metrics, values)
            exchange.append(ex)
            if self.settings.tls:
                clock.enter("tls")
                await self._start_tls(ex)
            for step in self._steps:
                ex.step = step
                try:
                    await self._do_step(ex, step, clock)
                except Failure as exc:
                    raise Failure(self._prefix(step) + exc.message) from None
                except OSError as exc:
                    if isinstance(exc, TimeoutError):
                        raise
                    raise Failure(self._prefix(step) + error_text(exc)) from None
            ex.step = None
            if any(step.expect is not None for step in self._steps):
                values["BODY"] = bytes(ex.body)
        finally:
            writer.transport.abort()

    def _prefix(self, step: _Step) -> str:
        return f"step {step.number}: " if self._numbered else ""

    async def _do_step(self, ex: _Exchange, step: _Step, clock: PhaseClock) -> None:
        send = step.send
        if step.expect is not None:
            clock.enter("expect")
            match = await self._expect(ex, step.expect)
            if send is not None:
                send = expand(send, match)
        if send:
            clock.enter("send")
            ex.writer.write(send)
            await ex.writer.drain()
        if step.starttls:
            clock.enter("tls")
            ex.pending.clear()  # plaintext sent before the handshake is not the TLS stream
            await self._start_tls(ex)
            ex.metrics["starttls"] = 1.0

    async def _start_tls(self, ex: _Exchange) -> None:
        assert self._ssl is not None
        try:
            await ex.writer.start_tls(
                self._ssl, server_hostname=self.settings.server_name or ex.host
            )
        except ssl.SSLError as exc:
            raise Failure(error_text(exc)) from None
        ex.metrics["tls"] = 1.0
        ssl_object = ex.writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            expiry = cert_expiry(ssl_object)
            if expiry is not None:
                ex.metrics["cert_expiry_timestamp"] = expiry
                ex.values["CERTIFICATE_EXPIRATION"] = expiry - time.time()
            version = ssl_object.version() or ""
            if version.startswith("TLSv"):  # TLSv1.3 -> 1.3
                ex.metrics["tls_version"] = float(version[4:])

    async def _expect(self, ex: _Exchange, expect: re.Pattern[bytes]) -> re.Match[bytes]:
        """Read until ``expect`` matches the unconsumed bytes (with ``match_lines``: one
        line of them); consume through the match (the line) and return the match."""
        limit = self.settings.read_bytes
        lines = self.settings.match_lines
        shown = f"/{expect.pattern.decode()}/"
        seen = len(ex.pending)  # bytes this expect has looked at
        while True:
            match = self._search(ex, expect, lines, at_end=False)
            if match is not None:
                ex.metrics["failed_due_to_regex"] = 0.0
                return match
            if seen >= limit:
                ex.metrics["failed_due_to_regex"] = 1.0
                raise Failure(f"read {limit} bytes without matching {shown}")
            try:
                data = await ex.reader.read(limit - seen)
            except ssl.SSLError as exc:
                raise Failure(error_text(exc)) from None
            if not data:
                match = self._search(ex, expect, lines, at_end=True)
                if match is not None:
                    ex.metrics["failed_due_to_regex"] = 0.0
                    return match
                ex.metrics["failed_due_to_regex"] = 1.0
                got = bytes(ex.body[-60:]).decode("utf-8", "replace")  # the last bytes read
                raise Failure(f"connection closed before {shown} matched (got {got!r})")
            seen += len(data)
            ex.pending += data
            ex.body += data
            ex.metrics["bytes_read"] = float(len(ex.body))

    @staticmethod
    def _search(
        ex: _Exchange, expect: re.Pattern[bytes], lines: bool, at_end: bool
    ) -> re.Match[bytes] | None:
        """Search the unconsumed bytes; consume what a match used up."""
        pending = ex.pending
        if not lines:
            # a snapshot: a match's groups are read from its subject, which is consumed next
            match = expect.search(bytes(pending)) if pending else None
            if match is not None:
                del pending[: match.end()]
            return match
        while pending:
            end = pending.find(b"\n")
            if end < 0:
                if not at_end:
                    return None
                end = len(pending)  # the last line, without a line ending
            line = bytes(pending[:end])
            del pending[: end + 1]
            match = expect.search(line[:-1] if line.endswith(b"\r") else line)
            if match is not None:
                return match
        return None

    async def _resolve(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int
    ) -> list[tuple[int, str]]:
        return await resolve(loop, host, port, self.settings.ip_version, self.settings.ip_fallback)


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``tcp`` probe."""
    return [TcpProbe]
