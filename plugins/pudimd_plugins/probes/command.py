"""The ``command`` probe: run a program, judge it by its exit status (Nagios plugin rules).

Target: the program to run, a path (``/usr/lib/nagios/plugins/check_disk``) or a name looked
up on ``PATH`` (``check_ping``).  Its arguments go in ``args``: no shell is involved, so
nothing in them is expanded or needs quoting.  With ``shell: true`` the target is a command
line for ``/bin/sh -c`` instead (pipes, ``$VARS``, globs), and ``args`` become ``$1``,
``$2``...

The program runs with stdin from ``/dev/null``, in a session and process group of its own.
When it runs out of time (or the check is cancelled) the whole group gets SIGTERM, then
SIGKILL after ``kill_grace``, so the children and grandchildren it started are killed too.
When it exits on its own, whatever it left running in its group is stopped the same way: a
check is not a way to start daemons.  (A process that leaves the group with ``setsid`` is out
of reach.)  To leave time for that, the program gets ``timeout`` minus the grace period (the
grace being at most a quarter of ``timeout``).

Settings (the block under ``command:`` in a target)::

    args: []             # arguments, each passed as is (no shell)
    shell: false         # the target is a /bin/sh command line
    env: {}              # variables added to (or replacing) the daemon's environment
    cwd: null            # working directory (default: the daemon's)
    max_output: 4096     # bytes of stdout (and of stderr) kept; the rest is dropped, marked
    nagios: true         # exit 0/1/2/3 = OK/WARNING/CRITICAL/UNKNOWN; false: 0 = up, else down
    kill_grace: 1s       # between SIGTERM and SIGKILL when the group must be stopped

Result, with ``nagios: true`` (the Nagios plugin API): exit 0 (OK) is up; 1 (WARNING) is up
but ``degraded``; 2 (CRITICAL) is down; 3 (UNKNOWN) is down with a message saying UNKNOWN;
any other status, or death by a signal, is down.  With ``nagios: false``: 0 is up, anything
else down.  ``status`` is the exit status (``-N`` when killed by signal N).  ``message`` is
the first line of output (the plugin's status text, without perfdata), else the first line of
stderr; on failure it is prefixed with the reason when the text does not say it
(``exit status 127: ...``, ``UNKNOWN: ...``, ``killed by SIGSEGV``, ``timeout: still running
after 9s, process group killed``); a missing or non-executable program fails saying so.

Values (for conditions): ``EXIT_CODE`` (int, ``None`` after a timeout), ``BODY`` (stdout as
text, truncated to ``max_output`` bytes with a ``[... N more bytes]`` marker), ``STDERR``
(stderr, likewise), ``NAGIOS_STATE`` (``OK``, ``WARNING``, ``CRITICAL``, ``UNKNOWN``; with
``nagios`` only), and ``PERF_<LABEL>`` for each perfdata value (the normalised value, label
upper-cased with non-alphanumerics turned to ``_``).

Metrics: ``exit_code``; ``stdout_bytes`` and ``stderr_bytes`` (all the bytes written, also
past ``max_output``); and the performance data.  Perfdata is parsed as the Nagios plugin
guidelines define it: after the first ``|`` of the first line, and after the ``|`` of a later
line of long output up to the end of the output; items are
``'label'=value[UOM];[warn];[crit];[min];[max]``, separated by spaces, the label quoted with
``'`` when it has spaces or ``=`` (``''`` for a quote inside).  Each becomes
``perf_<label>`` (the label as written, e.g. ``perf_/var`` or ``perf_time``), with the unit
normalised: ``s``, ``ms``, ``us``, ``ns`` to seconds; ``B``, ``KB``, ``MB``, ``GB``, ``TB``,
``PB`` (any case; also ``KiB``...) to bytes, in powers of 1024 as the monitoring-plugins
write them; ``%``, ``c`` (a counter) and no unit (or an unknown one) as they are.  The
thresholds, when plain numbers, go in ``perf_<label>_warn`` and ``perf_<label>_crit`` (ranges
such as ``10:20`` or ``@5`` are left out), ``min`` and ``max`` in ``perf_<label>_min`` and
``perf_<label>_max``, in the same unit.  An item with value ``U`` (unknown) or that does not
parse is skipped.  Perfdata past ``max_output`` is lost.

No phases.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import anyio
from pydantic import ByteSize, Field

from pudimd.durations import Duration, format_duration
from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings
from pudimd_plugins.probes._net import error_text

__all__ = [
    "CommandProbe",
    "CommandSettings",
    "PerfItem",
    "parse_perfdata",
    "perf_metrics",
    "pudimd_probe_types",
    "split_output",
    "stop_group",
]

_NAGIOS_STATES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
_LINGER = 0.1
"""Seconds to wait for the output pipes to close after the program exits (a background child
may hold them open: it is then stopped with the group)."""
_FINAL_DRAIN = 0.5
"""Seconds to wait for the pipes to close once the group is stopped."""
_REAP = 5.0
"""Seconds to wait for the program to be reaped after SIGKILL."""


class CommandSettings(PluginSettings):
    """Settings of the ``command`` probe (see the module docstring)."""

    args: list[str] = Field(
        default_factory=list, description="Arguments, each passed as is (no shell)."
    )
    shell: bool = Field(
        default=False,
        description="Run the target as a /bin/sh command line; args become $1, $2...",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables added to (or replacing) the daemon's.",
    )
    cwd: Path | None = Field(
        default=None, description="Working directory of the program (default: the daemon's)."
    )
    max_output: ByteSize = Field(
        default=ByteSize(4096),
        gt=0,
        description="Bytes of stdout, and of stderr, kept; the rest is dropped and marked.",
    )
    nagios: bool = Field(
        default=True,
        description=(
            "Nagios plugin exit codes: 0 OK (up), 1 WARNING (up, degraded), 2 CRITICAL "
            "(down), 3 UNKNOWN (down); false: 0 is up, anything else down."
        ),
    )
    kill_grace: Duration = Field(
        default=timedelta(seconds=1),
        description="Time between SIGTERM and SIGKILL when the process group is stopped.",
    )


# --- perfdata ---------------------------------------------------------------------------

_PERF_ITEM = re.compile(
    r"""\s*(?:'((?:[^']|'')+)'|([^'=\s][^=\s]*))=(\S*)""",
)
_TOKEN = re.compile(r"\S*\s*")
_NUMBER = re.compile(r"^([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(.*)$")
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_BYTE_UNITS = {
    "b": 1.0,
    "kb": 1024.0,
    "mb": 1024.0**2,
    "gb": 1024.0**3,
    "tb": 1024.0**4,
    "pb": 1024.0**5,
    "kib": 1024.0,
    "mib": 1024.0**2,
    "gib": 1024.0**3,
    "tib": 1024.0**4,
    "pib": 1024.0**5,
}


def _scale(unit: str) -> float:
    if unit in _TIME_UNITS:
        return _TIME_UNITS[unit]
    return _BYTE_UNITS.get(unit.lower(), 1.0)


def _plain_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class PerfItem(NamedTuple):
    """One performance data item, its numbers normalised to seconds or bytes."""

    label: str
    value: float
    unit: str
    warn: float | None = None
    crit: float | None = None
    min: float | None = None
    max: float | None = None


def parse_perfdata(text: str) -> list[PerfItem]:
    """The items of Nagios performance data (the part after ``|``), see the module
    docstring; thresholds only when plain numbers; items that do not parse are skipped."""
    items: list[PerfItem] = []
    pos = 0
    while pos < len(text):
        match = _PERF_ITEM.match(text, pos)
        if match is None:  # a token that is not label=value: skip it
            skip = _TOKEN.match(text, pos)
            pos = skip.end() if skip is not None and skip.end() > pos else pos + 1
            continue
        pos = match.end()
        label = match.group(1).replace("''", "'") if match.group(1) else match.group(2)
        fields = match.group(3).split(";")
        number = _NUMBER.match(fields[0])
        if number is None:
            continue  # "U" (unknown) or garbage
        unit = number.group(2)
        factor = _scale(unit)
        extra = [_plain_number(raw.strip()) for raw in fields[1:5]]
        extra += [None] * (4 - len(extra))
        items.append(
            PerfItem(
                label,
                float(number.group(1)) * factor,
                unit,
                *(None if x is None else x * factor for x in extra),
            )
        )
    return items


def perf_metrics(items: list[PerfItem]) -> dict[str, float]:
    """``perf_<label>`` and ``perf_<label>_warn``/``_crit``/``_min``/``_max`` of ``items``."""
    metrics: dict[str, float] = {}
    for item in items:
        name = f"perf_{item.label}"
        metrics[name] = item.value
        for suffix in ("warn", "crit", "min", "max"):
            value = getattr(item, suffix)
            if value is not None:
                metrics[f"{name}_{suffix}"] = value
    return metrics


def split_output(text: str) -> tuple[str, str]:
    """(status text, perfdata) of a plugin's output, per the Nagios plugin API: the
    perfdata of the first line after its ``|``, and of the long output from the first later
    line with a ``|`` to the end."""
    lines = text.splitlines()
    if not lines:
        return "", ""
    first, _, perf = lines[0].partition("|")
    parts = [perf.strip()] if perf.strip() else []
    for index, line in enumerate(lines[1:], start=1):
        if "|" in line:
            parts.append(line.partition("|")[2].strip())
            parts.extend(rest.strip() for rest in lines[index + 1 :] if rest.strip())
            break
    return first.strip(), " ".join(parts)


def _placeholder(label: str) -> str:
    return "PERF_" + (re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_").upper() or "_")


# --- running ----------------------------------------------------------------------------


class _Capture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    __slots__ = ("data", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.data)

    def text(self) -> str:
        shown = bytes(self.data).decode("utf-8", "replace")
        if self.truncated:
            shown += f"\n[... {self.total - len(self.data)} more bytes]"
        return shown

    def complete_text(self) -> str:
        """The kept text without a last line cut short by the limit (for perfdata)."""
        data = bytes(self.data)
        if self.truncated:
            data = data[: data.rfind(b"\n") + 1]
        return data.decode("utf-8", "replace")


class _Protocol(asyncio.SubprocessProtocol):
    """Captures stdout and stderr, and says when the program exited (asyncio's
    ``Process.wait()`` also waits for the pipes, which a background child may hold open)."""

    def __init__(self, limit: int) -> None:
        self.out = _Capture(limit)
        self.err = _Capture(limit)
        self.exited = asyncio.Event()
        self.pipes_closed = asyncio.Event()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        (self.out if fd == 1 else self.err).feed(chunk)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open:
            self.pipes_closed.set()

    def process_exited(self) -> None:
        self.exited.set()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def stop_group(pgid: int, exited: asyncio.Event, grace: float) -> None:
    """Stop process group ``pgid`` (led by the program, whose exit sets ``exited``):
    SIGTERM, up to ``grace`` seconds for the group to go, then SIGKILL; returns once the
    leader is reaped.  Does nothing when the group is already gone."""
    if exited.is_set() and not _group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await exited.wait()
        # nothing signals that a process group emptied: poll
        while _group_alive(pgid):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    _signal_group(pgid, signal.SIGKILL)
    with anyio.move_on_after(_REAP):
        await exited.wait()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class CommandProbe:
    """Run a program and judge its exit status; see the module docstring."""

    type = "command"
    Settings = CommandSettings

    def __init__(self, settings: CommandSettings) -> None:
        self.settings = settings
        self._env: dict[str, str] | None = None
        if settings.env:
            self._env = {**os.environ, **settings.env}

    async def aclose(self) -> None:
        """Nothing to release: every check stops its own processes."""

    def _argv(self, target: str) -> list[str] | str:
        """The argv to run, or a reason why the program cannot be run."""
        if self.settings.shell:
            return ["/bin/sh", "-c", target, "sh", *self.settings.args]
        program = target.strip()
        if not program:
            return "empty target: expected a program path or name"
        hint = " (put its arguments in args, or set shell: true)" if " " in program else ""
        if "/" not in program:
            path_var = (self._env or os.environ).get("PATH", os.defpath)
            found = shutil.which(program, path=path_var)
            if found is None:
                return f"program {program!r} not found on PATH{hint}"
            return [found, *self.settings.args]
        path = Path(program)
        if self.settings.cwd is not None and not path.is_absolute():
            path = self.settings.cwd / path
        if not path.exists():
            return f"{program}: no such file{hint}"
        if path.is_dir():
            return f"{program}: is a directory"
        if not os.access(path, os.X_OK):
            return f"{program}: not executable"
        return [program, *self.settings.args]

    async def check(self, target: str, timeout: float) -> ProbeResult:
        started = time.perf_counter()
        argv = self._argv(target)
        if isinstance(argv, str):
            return ProbeResult.failure(argv)
        grace = min(self.settings.kill_grace.total_seconds(), timeout / 4)
        limit = timeout - grace
        loop = asyncio.get_running_loop()
        size = int(self.settings.max_output)
        try:
            transport, proto = await loop.subprocess_exec(
                lambda: _Protocol(size),
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=self._env,
                cwd=self.settings.cwd,
            )
        except OSError as exc:
            if self.settings.cwd is not None and not self.settings.cwd.is_dir():
                return ProbeResult.failure(f"cwd {str(self.settings.cwd)!r}: no such directory")
            return ProbeResult.failure(f"{argv[0]}: {error_text(exc)}")
        timed_out = True
        try:
            with anyio.move_on_after(limit):
                await proto.exited.wait()
                with anyio.move_on_after(_LINGER):
                    await proto.pipes_closed.wait()
            timed_out = not proto.exited.is_set()
        finally:
            with anyio.CancelScope(shield=True):
                await stop_group(transport.get_pid(), proto.exited, grace)
                with anyio.move_on_after(_FINAL_DRAIN):
                    await proto.pipes_closed.wait()
                transport.close()
        return self._result(
            transport.get_returncode(),
            proto.out,
            proto.err,
            timed_out,
            limit,
            time.perf_counter() - started,
        )

    def _result(
        self,
        code: int | None,
        out: _Capture,
        err: _Capture,
        timed_out: bool,
        limit: float,
        duration: float,
    ) -> ProbeResult:
        stdout = out.text()
        text, perf = split_output(out.complete_text())
        if not text:
            text = next((line.strip() for line in err.text().splitlines() if line.strip()), "")
        metrics = {"stdout_bytes": float(out.total), "stderr_bytes": float(err.total)}
        values: dict[str, Any] = {
            "EXIT_CODE": None if timed_out else code,
            "BODY": stdout,
            "STDERR": err.text(),
        }
        items = parse_perfdata(perf) if perf else []
        metrics.update(perf_metrics(items))
        for item in items:
            values[_placeholder(item.label)] = item.value
        if timed_out or code is None:
            shown = format_duration(timedelta(seconds=limit))
            message = f"timeout: still running after {shown}, process group killed"
            if text:
                message += f" (last output: {text})"
            return ProbeResult.failure(
                message, duration=duration, metrics=metrics, values=values
            )
        metrics["exit_code"] = float(code)
        common: dict[str, Any] = {
            "duration": duration,
            "status": code,
            "metrics": metrics,
            "values": values,
        }
        if code < 0:
            message = f"killed by {_signal_name(-code)}" + (f": {text}" if text else "")
            return ProbeResult.failure(message, **common)
        if not self.settings.nagios:
            if code == 0:
                return ProbeResult(success=True, message=text, **common)
            return ProbeResult.failure(
                f"exit status {code}" + (f": {text}" if text else ""), **common
            )
        state = _NAGIOS_STATES.get(code)
        if state is not None:
            values["NAGIOS_STATE"] = state
        if code in (0, 1):
            return ProbeResult(
                success=True, degraded=code == 1, message=text or state or "", **common
            )
        if code == 2:
            return ProbeResult.failure(text or "CRITICAL (exit status 2)", **common)
        if code == 3:
            if "UNKNOWN" not in text.upper():
                text = f"UNKNOWN: {text}" if text else "UNKNOWN (exit status 3)"
            return ProbeResult.failure(text, **common)
        return ProbeResult.failure(f"exit status {code}" + (f": {text}" if text else ""), **common)


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``command`` probe."""
    return [CommandProbe]
