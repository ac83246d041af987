"""The ``ssh`` probe: connect to an SSH server and read its identification line.

Target: ``host[:port]`` (``[::1]:port`` for an IPv6 literal; port 22 when left out).  Every
check opens a new connection, reads the server's identification string (RFC 4253 section
4.2, such as ``SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3``; lines the server sends before it
are skipped), sends pudimd's own identification string and closes the connection, so the
server logs a clean disconnect rather than a timeout.  No key exchange is done: the probe
says the SSH service answers, not that logging in works.

Settings (the block under ``ssh:`` in a target)::

    expect: null         # regex the identification line must match (searched, not anchored)
    protocol_versions:   # accepted protocol versions (the "2.0" in SSH-2.0-...)
      ["2.0", "1.99"]
    identification: SSH-2.0-pudimd_<version>  # what the probe sends back ("" sends nothing)
    ip_version: any      # any | ipv4 | ipv6: address family to try first
    ip_fallback: true    # with ipv4/ipv6, also try the other family's addresses

Result: ``status`` is the protocol version (``"2.0"``); ``message`` names the failure
(``connection refused``, ``timeout after 2s during banner``, ``not an SSH server (got
'...')``, ``protocol version 1.5 not accepted``, ``identification 'SSH-2.0-...' does not
match /regex/``).

Phases (seconds): ``dns``, ``connect``, ``banner`` (connected until the identification line
is read).

Metrics: ``ip_protocol`` (4 or 6).

Values: ``CONNECTED`` (bool), ``IP`` (str), ``BANNER`` (the identification line),
``SSH_VERSION`` (protocol version, ``"2.0"``), ``SSH_SOFTWARE`` (``"OpenSSH_9.2p1"``),
``SSH_COMMENTS`` (what follows the software version, ``"Debian-2+deb12u3"``, or ``""``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any, Literal

from pydantic import Field, field_validator

import pudimd
from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings, Regex
from pudimd_plugins.probes._net import (
    Failure,
    PhaseClock,
    error_text,
    host_port,
    ip_protocol,
    open_first,
    resolve,
)

__all__ = ["SshProbe", "SshSettings", "pudimd_probe_types"]

_MAX_LINE = 255  # RFC 4253: the identification line is at most 255 bytes with CR LF
_MAX_PRELUDE = 50  # lines before the identification line we tolerate
_IDENT = re.compile(r"SSH-([^-\s]+)-(\S+)(?: (.*))?")


class SshSettings(PluginSettings):
    """Settings of the ``ssh`` probe (see the module docstring)."""

    expect: Regex | None = Field(
        default=None, description="Regex the identification line must match (searched)."
    )
    protocol_versions: list[str] = Field(
        default_factory=lambda: ["2.0", "1.99"],
        description="Accepted SSH protocol versions.",
    )
    identification: str = Field(
        default=f"SSH-2.0-pudimd_{pudimd.__version__}",
        description="Identification string sent back before closing ('' sends nothing).",
    )
    ip_version: Literal["any", "ipv4", "ipv6"] = "any"
    ip_fallback: bool = True

    @field_validator("identification")
    @classmethod
    def _identification_form(cls, value: str) -> str:
        if value and (not value.startswith("SSH-") or any(c in value for c in "\r\n")):
            raise ValueError("identification must start with 'SSH-' and be one line")
        return value


class SshProbe:
    """Read an SSH server's identification line; see the module docstring."""

    type = "ssh"
    Settings = SshSettings

    def __init__(self, settings: SshSettings) -> None:
        self.settings = settings
        self._expect = re.compile(settings.expect) if settings.expect else None

    async def aclose(self) -> None:
        """Nothing to release: every check closes its own connection."""

    async def check(self, target: str, timeout: float) -> ProbeResult:
        start = time.perf_counter()
        clock = PhaseClock("dns", "connect", "banner")
        result = ProbeResult(success=False, values={"CONNECTED": False})
        message = ""
        try:
            async with asyncio.timeout(timeout):
                await self._run(target, clock, result)
        except TimeoutError:
            message = f"timeout after {timeout:g}s during {clock.phase}"
            prelude = result.values.get("BANNER")
            if clock.phase == "banner" and prelude is not None:
                message = f"not an SSH server (got {prelude[:60]!r}, then nothing)"
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
        host, port = host_port(target, 22)
        st = self.settings
        addresses = await resolve(
            asyncio.get_running_loop(), host, port, st.ip_version, st.ip_fallback
        )
        clock.enter("connect")
        reader, writer, family, ip = await open_first(addresses, port, limit=_MAX_LINE + 1)
        try:
            result.metrics["ip_protocol"] = ip_protocol(family)
            result.values.update(CONNECTED=True, IP=ip)
            clock.enter("banner")
            line = await self._identification(reader, result)
            clock.enter("")
            self._judge(line, result)
            if st.identification:
                with contextlib.suppress(OSError):
                    writer.write(st.identification.encode("ascii", "replace") + b"\r\n")
        finally:
            writer.close()  # flushes our identification, then FIN: no waiting

    @staticmethod
    async def _identification(reader: asyncio.StreamReader, result: ProbeResult) -> str:
        """The server's ``SSH-`` line, without CR LF (the first line seen is kept in
        ``BANNER`` meanwhile, for the failure message)."""
        for _ in range(_MAX_PRELUDE):
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                got = exc.partial.decode("utf-8", "replace")
                if not got:
                    raise Failure("connection closed before the identification line") from None
                raise Failure(f"not an SSH server (got {got[:60]!r})") from None
            except asyncio.LimitOverrunError:
                raise Failure(f"line longer than {_MAX_LINE} bytes: not an SSH server") from None
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            result.values.setdefault("BANNER", line)
            if line.startswith("SSH-"):
                return line
        raise Failure(f"no identification line within {_MAX_PRELUDE} lines: not an SSH server")

    def _judge(self, line: str, result: ProbeResult) -> None:
        result.values["BANNER"] = line
        match = _IDENT.fullmatch(line)
        if match is None:
            raise Failure(f"malformed identification line {line[:80]!r}")
        version, software, comments = match.group(1), match.group(2), match.group(3) or ""
        result.status = version
        result.values.update(SSH_VERSION=version, SSH_SOFTWARE=software, SSH_COMMENTS=comments)
        if version not in self.settings.protocol_versions:
            raise Failure(f"protocol version {version} not accepted ({line[:80]!r})")
        if self._expect is not None and not self._expect.search(line):
            raise Failure(f"identification {line[:80]!r} does not match /{self._expect.pattern}/")


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``ssh`` probe."""
    return [SshProbe]
