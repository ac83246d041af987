"""The ``process`` probe: is a program running on this host, how many, and how heavy.

Target: the process name, as ``ps -e`` and ``pgrep`` show it (psutil's ``name()``: the
executable's file name, or the name a script was run by; ``nginx``, ``postgres``, ``sleep``),
or ``*`` for any name.  The settings narrow the selection further; all given criteria must
hold:

- ``cmdline_regex``: a regex searched in the command line (arguments joined by spaces);
- ``user``: the owner (effective user), by name or number;
- ``pidfile``: only the process whose pid is in this file.  The file missing, holding no pid,
  or naming a pid that is not running (a stale pidfile), or that is another program than the
  target names (a reused pid), is a failure saying which.

pudimd's own process is never counted, nor are zombies (exited, not yet reaped).  Processes
that exit while being inspected are left out; readings the probe may not take
(``AccessDenied``: open files of another user's process, without root) are left out of the
totals, and fail the check only when a limit depends on them.

Settings (the block under ``process:`` in a target)::

    cmdline_regex: null   # regex searched in the command line
    user: null            # user name or uid owning the processes
    pidfile: null         # path of a file holding the pid
    min_count: 1          # down when fewer processes match (0: none needed)
    max_count: null       # down when more match (0: "must not run")
    max_cpu_percent: null # down when their CPU use, summed, is above this (100 = one core)
    max_rss: null         # down when their resident memory, summed, is above this (bytes,
                          # or 512MiB, 2GB...)
    max_open_files: null  # down when their open file descriptors, summed, are above this

Result: ``message`` says how many processes match and their pids (``2 processes: 1234,
1240``), or what is wrong (``no process named 'nginx'``, ``3 processes, more than
max_count 1``, ``rss 1.2GiB > 512.0MiB``, ``stale pidfile /run/x.pid: pid 4242 is not
running``).  No status, no phases.

Metrics (totals over the matched processes): ``count``; ``cpu_percent`` (since the previous
check; the first check of a target measures over 0.2 s; a process younger than the previous
check counts its whole life); ``rss_bytes``; ``open_files`` (file descriptors: files,
sockets, pipes, as in ``/proc/PID/fd``); ``threads``; ``oldest_start_timestamp`` (Unix time)
and ``uptime_seconds`` (of the oldest process).  Without a match, only ``count`` (0).

Values (for conditions): ``COUNT``, ``PIDS`` (list of int), ``CPU_PERCENT``, ``RSS_BYTES``,
``OPEN_FILES`` (absent when some could not be read), ``THREADS``, ``UPTIME`` (seconds).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from pydantic import ByteSize, Field, model_validator

from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings, Regex

__all__ = ["ProcessProbe", "ProcessSettings", "pudimd_probe_types"]

_FIRST_SAMPLE = 0.2
"""Seconds between the two CPU samples of a target's first check."""


class ProcessSettings(PluginSettings):
    """Settings of the ``process`` probe (see the module docstring)."""

    cmdline_regex: Regex | None = Field(
        default=None, description="Regex searched in the command line (arguments joined by spaces)."
    )
    user: str | int | None = Field(
        default=None, description="Only processes of this user (name or uid; effective user)."
    )
    pidfile: Path | None = Field(
        default=None, description="Only the process whose pid this file holds."
    )
    min_count: int = Field(default=1, ge=0, description="Down when fewer processes match.")
    max_count: int | None = Field(default=None, ge=0, description="Down when more match.")
    max_cpu_percent: float | None = Field(
        default=None, ge=0, description="Down when their CPU use, summed, is above this percent."
    )
    max_rss: ByteSize | None = Field(
        default=None, description="Down when their resident memory, summed, is above this."
    )
    max_open_files: int | None = Field(
        default=None, ge=0, description="Down when their open descriptors, summed, exceed this."
    )

    @model_validator(mode="after")
    def _count_range(self) -> ProcessSettings:
        if self.max_count is not None and self.max_count < self.min_count:
            raise ValueError(f"max_count {self.max_count} is below min_count {self.min_count}")
        return self


class _Failure(Exception):
    """The selection itself failed (pidfile problems, unknown user)."""


@dataclass
class _Found:
    """What was read of the matched processes."""

    pids: list[int] = field(default_factory=list)
    cpu: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid: (start, seconds)
    rss: float = 0.0
    fds: float = 0.0
    fds_denied: list[int] = field(default_factory=list)
    threads: float = 0.0
    oldest: float | None = None


class ProcessProbe:
    """Check processes on this host; see the module docstring."""

    type = "process"
    Settings = ProcessSettings

    def __init__(self, settings: ProcessSettings) -> None:
        self.settings = settings
        self._regex = re.compile(settings.cmdline_regex) if settings.cmdline_regex else None
        self._prev: dict[int, tuple[float, float]] | None = None
        self._prev_time = 0.0

    async def aclose(self) -> None:
        """Nothing to release."""

    def _uid(self) -> int | None:
        user = self.settings.user
        if user is None:
            return None
        if isinstance(user, int) or user.isdigit():
            return int(user)
        import pwd

        try:
            return pwd.getpwnam(user).pw_uid
        except KeyError:
            raise _Failure(f"no user named {user!r}") from None

    def _candidates(self, name: str) -> list[Any]:
        """psutil.Process objects to consider (all, or the pidfile's one)."""
        import psutil

        pidfile = self.settings.pidfile
        if pidfile is None:
            return list(psutil.process_iter())
        try:
            text = pidfile.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            raise _Failure(f"pidfile {pidfile}: no such file") from None
        except OSError as exc:
            raise _Failure(f"pidfile {pidfile}: {exc.strerror or exc}") from None
        first = text.split()[0] if text else ""
        if not first.isdigit() or int(first) <= 0:
            raise _Failure(f"pidfile {pidfile}: no pid in it") from None
        pid = int(first)
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(pid)
        except psutil.NoSuchProcess:
            raise _Failure(f"stale pidfile {pidfile}: pid {pid} is not running") from None
        if name != "*":
            try:
                actual = proc.name()
            except psutil.Error:
                actual = "?"
            if actual != name:
                raise _Failure(
                    f"pidfile {pidfile}: pid {pid} is {actual!r}, not {name!r}"
                ) from None
        return [proc]

    def _collect(self, name: str) -> _Found:
        import psutil

        uid = self._uid()
        found = _Found()
        me = os.getpid()
        for proc in self._candidates(name):
            if proc.pid == me:
                continue
            try:
                with proc.oneshot():
                    if name != "*" and proc.name() != name:
                        continue
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    if uid is not None and proc.uids().effective != uid:
                        continue
                    if self._regex is not None:
                        try:
                            cmdline = " ".join(proc.cmdline())
                        except psutil.AccessDenied:
                            continue
                        if not self._regex.search(cmdline):
                            continue
                    start = proc.create_time()
                    times = proc.cpu_times()
                    rss = proc.memory_info().rss
                    threads = proc.num_threads()
                    try:
                        fds: int | None = proc.num_fds()
                    except psutil.AccessDenied:
                        fds = None
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue  # it exited while being looked at
            except psutil.AccessDenied:
                continue  # hidden from us (hidepid): as if not there
            found.pids.append(proc.pid)
            found.cpu[proc.pid] = (start, times.user + times.system)
            found.rss += rss
            found.threads += threads
            if fds is None:
                found.fds_denied.append(proc.pid)
            else:
                found.fds += fds
            found.oldest = start if found.oldest is None else min(found.oldest, start)
        return found

    def _cpu_percent(self, found: _Found, now: float) -> float:
        """Summed CPU percent of ``found`` since the previous sample (a process started after
        it: since its start)."""
        prev, since = self._prev or {}, self._prev_time
        total = 0.0
        wall_now = time.time()
        for pid, (start, seconds) in found.cpu.items():
            before = prev.get(pid)
            if before is not None and before[0] == start:
                spent, wall = seconds - before[1], now - since
            else:
                spent, wall = seconds, wall_now - start
            if wall > 0:
                total += max(0.0, spent) / wall * 100
        self._prev, self._prev_time = dict(found.cpu), now
        return total

    async def check(self, target: str, timeout: float) -> ProbeResult:
        started = time.perf_counter()
        name = target.strip() or "*"
        try:
            with anyio.fail_after(timeout):
                if self._prev is None:
                    first = await anyio.to_thread.run_sync(
                        self._collect, name, abandon_on_cancel=True
                    )
                    self._cpu_percent(first, time.monotonic())
                    await anyio.sleep(min(_FIRST_SAMPLE, timeout / 4))
                found = await anyio.to_thread.run_sync(self._collect, name, abandon_on_cancel=True)
        except TimeoutError:
            return ProbeResult.failure(f"listing processes took over {timeout:g}s")
        except _Failure as exc:
            return ProbeResult.failure(str(exc), metrics={"count": 0.0}, values={"COUNT": 0})
        cpu = self._cpu_percent(found, time.monotonic())
        return self._judge(name, found, cpu, time.perf_counter() - started)

    def _what(self, name: str) -> str:
        parts = [f"named {name!r}" if name != "*" else ""]
        if self.settings.cmdline_regex:
            parts.append(f"matching /{self.settings.cmdline_regex}/")
        if self.settings.user is not None:
            parts.append(f"of user {self.settings.user}")
        if self.settings.pidfile is not None:
            parts.append(f"from pidfile {self.settings.pidfile}")
        return " ".join(p for p in parts if p)

    def _judge(self, name: str, found: _Found, cpu: float, duration: float) -> ProbeResult:
        s = self.settings
        count = len(found.pids)
        metrics: dict[str, float] = {"count": float(count)}
        values: dict[str, Any] = {"COUNT": count, "PIDS": sorted(found.pids)}
        if count:
            assert found.oldest is not None
            uptime = max(0.0, time.time() - found.oldest)
            metrics.update(
                cpu_percent=cpu,
                rss_bytes=found.rss,
                threads=found.threads,
                oldest_start_timestamp=found.oldest,
                uptime_seconds=uptime,
            )
            values.update(CPU_PERCENT=cpu, RSS_BYTES=found.rss, THREADS=found.threads)
            values["UPTIME"] = uptime
            if not found.fds_denied:
                metrics["open_files"] = found.fds
                values["OPEN_FILES"] = found.fds
        problems: list[str] = []
        what = self._what(name)
        if count < s.min_count:
            if count == 0:
                problems.append(f"no process {what}".rstrip())
            else:
                noun = "process" if count == 1 else "processes"
                problems.append(f"{count} {noun} {what}, fewer than min_count {s.min_count}")
        if s.max_count is not None and count > s.max_count:
            shown = ", ".join(str(p) for p in sorted(found.pids)[:10])
            noun = "process" if count == 1 else "processes"
            problems.append(f"{count} {noun} {what} ({shown}), more than max_count {s.max_count}")
        if count:
            if s.max_cpu_percent is not None and cpu > s.max_cpu_percent:
                problems.append(f"cpu {cpu:.1f}% > {s.max_cpu_percent:g}%")
            if s.max_rss is not None and found.rss > s.max_rss:
                problems.append(f"rss {_bytes(found.rss)} > {_bytes(float(s.max_rss))}")
            if s.max_open_files is not None:
                if found.fds_denied:
                    denied = ", ".join(str(p) for p in found.fds_denied[:10])
                    problems.append(f"cannot count open files of pid {denied}: access denied")
                elif found.fds > s.max_open_files:
                    problems.append(f"open files {found.fds:.0f} > {s.max_open_files}")
        if problems:
            return ProbeResult.failure(
                "; ".join(problems), duration=duration, metrics=metrics, values=values
            )
        pids = ", ".join(str(p) for p in sorted(found.pids)[:10])
        more = ", ..." if count > 10 else ""
        noun = "process" if count == 1 else "processes"
        message = f"{count} {noun}: {pids}{more}" if count else f"no process {what}".rstrip()
        return ProbeResult(
            success=True, duration=duration, message=message, metrics=metrics, values=values
        )


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``process`` probe."""
    return [ProcessProbe]
