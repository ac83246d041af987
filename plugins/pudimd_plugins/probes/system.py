"""The ``system`` probe: CPU, memory, swap, disks, load, network and temperatures of this host.

Target: a label for the host, e.g. ``localhost``.  Only the machine pudimd runs on is
measured, whatever the label says (use ``command`` with ``ssh``, or a pudimd on the other
host, for remote ones).  Readings come from psutil, in a worker thread.

Each check is down when a reading is beyond a limit set in the settings; with no limit set,
it is up as long as the readings can be taken.  For a "works but unhealthy" level, use
``degraded_if`` conditions on the values below (``[CPU_PERCENT] > 80``).

Settings (the block under ``system:`` in a target; every limit defaults to none)::

    max_cpu_percent: null      # busy CPU, all cores, since the previous check
    max_memory_percent: null   # memory in use (psutil's virtual_memory().percent)
    max_swap_percent: null     # swap in use
    max_load1: null            # load averages...
    max_load5: null
    max_load15: null
    load_per_cpu: false        # ...divided by the number of CPUs before comparing
    max_disk_percent: null     # space used on any of the mounts
    min_disk_free: null        # bytes free on each mount (as 10GiB, 500MB or a number)
    max_temperature: null      # degrees Celsius, any sensor
    mounts: null               # paths to check; null: every real filesystem mounted
    interfaces: null           # network interfaces reported one by one; null: all but lo

``mounts: null`` picks the mounted filesystems that hold files (``ext4``, ``xfs``, ``btrfs``,
``zfs``, ``overlay``, network filesystems...), leaving out virtual ones (``proc``, ``sysfs``,
``tmpfs``, ``devtmpfs``, ``cgroup``, ``squashfs`` snaps...) and mount points that are not
directories.  A path given in ``mounts`` is checked whatever its filesystem, and need not be a
mount point (the filesystem holding it is measured); a missing one is a failure.

Result: ``message`` sums the readings up (``cpu 12%, memory 41%, swap 0%, load 0.52 0.40
0.33, disk / 37%``), or, when down, lists every limit passed (``memory 93.2% > 90%; disk
/var 96.1% > 90%``).  No status, no phases.

Metrics (a flat dict: per-mount, per-interface and per-sensor readings carry the mount,
interface or sensor after a colon, e.g. ``disk_used_percent:/var``):

- ``cpu_percent`` (all CPUs, over the time since the previous check; the first check of a
  target measures over 0.2 s), ``cpu_iowait_percent`` and ``cpu_steal_percent`` (Linux),
  ``cpu_count``;
- ``memory_total_bytes``, ``memory_available_bytes``, ``memory_used_bytes``,
  ``memory_percent``; ``swap_total_bytes``, ``swap_used_bytes``, ``swap_percent``;
- ``load1``, ``load5``, ``load15``;
- per mount ``disk_total_bytes:<mount>``, ``disk_used_bytes:<mount>``,
  ``disk_free_bytes:<mount>``, ``disk_used_percent:<mount>``;
- ``net_bytes_sent``, ``net_bytes_recv``, ``net_packets_sent``, ``net_packets_recv``,
  ``net_errin``, ``net_errout``, ``net_dropin``, ``net_dropout``: counters since boot,
  summed over the reported interfaces, and each also per interface as ``net_...:<iface>``;
- ``temperature_celsius:<chip>/<sensor>`` for every sensor psutil finds (none in most
  containers and VMs).

Values (for conditions): ``CPU_PERCENT``, ``MEMORY_PERCENT``, ``SWAP_PERCENT``, ``LOAD1``,
``LOAD5``, ``LOAD15``, ``LOAD1_PER_CPU`` (and 5, 15), ``CPU_COUNT``, ``DISK_USED_PERCENT``
(the fullest mount's), ``DISK_FREE_BYTES`` (the least free space of any mount),
``MAX_TEMPERATURE`` (the hottest sensor; absent without sensors), and ``DISKS``, a dict of
mount to ``{"used_percent", "free_bytes", "total_bytes"}``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from pydantic import ByteSize, Field, model_validator

from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["SystemProbe", "SystemSettings", "pudimd_probe_types", "real_mounts"]

_FIRST_SAMPLE = 0.2
"""Seconds between the two CPU samples of a target's first check."""

_VIRTUAL_FS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs",
        "devpts", "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs",
        "proc", "pstore", "ramfs", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs",
        "sysfs", "tmpfs", "tracefs", "fuse.gvfsd-fuse", "fuse.portal", "fuse.lxcfs",
        "overlayfs-lower", "none", "iso9660",
    }
)  # fmt: skip


class SystemSettings(PluginSettings):
    """Settings of the ``system`` probe (see the module docstring)."""

    max_cpu_percent: float | None = Field(
        default=None, ge=0, description="Down when CPU use (all cores) is above this."
    )
    max_memory_percent: float | None = Field(
        default=None, ge=0, le=100, description="Down when memory in use is above this percent."
    )
    max_swap_percent: float | None = Field(
        default=None, ge=0, le=100, description="Down when swap in use is above this percent."
    )
    max_load1: float | None = Field(default=None, ge=0, description="Limit on the 1-min load.")
    max_load5: float | None = Field(default=None, ge=0, description="Limit on the 5-min load.")
    max_load15: float | None = Field(default=None, ge=0, description="Limit on the 15-min load.")
    load_per_cpu: bool = Field(
        default=False, description="Divide the load averages by the CPU count before comparing."
    )
    max_disk_percent: float | None = Field(
        default=None, ge=0, le=100, description="Down when any mount is fuller than this percent."
    )
    min_disk_free: ByteSize | None = Field(
        default=None, description="Down when any mount has fewer bytes free (10GiB, 500MB...)."
    )
    max_temperature: float | None = Field(
        default=None, description="Down when any temperature sensor reads above this (°C)."
    )
    mounts: list[str] | None = Field(
        default=None,
        description="Paths whose filesystems to check; default: every real filesystem mounted.",
    )
    interfaces: list[str] | None = Field(
        default=None,
        description="Network interfaces reported one by one; default: all but loopback.",
    )

    @model_validator(mode="after")
    def _absolute_mounts(self) -> SystemSettings:
        for path in self.mounts or ():
            if not path.startswith("/"):
                raise ValueError(f"mounts: {path!r} is not an absolute path")
        return self


def real_mounts() -> list[str]:
    """Mount points of the filesystems that hold files (see the module docstring)."""
    import psutil

    seen: list[str] = []
    for part in psutil.disk_partitions(all=True):
        if part.fstype in _VIRTUAL_FS or part.mountpoint in seen:
            continue
        if not os.path.isdir(part.mountpoint):
            continue  # bind-mounted files (/etc/hosts in containers)
        seen.append(part.mountpoint)
    return seen


def _cpu_split(times: Any) -> tuple[float, float, float, float]:
    """(total, busy, iowait, steal) seconds of a ``psutil.cpu_times()`` sample, counted as
    psutil's ``cpu_percent`` does (guest time is already in user time)."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    iowait = getattr(times, "iowait", 0.0)
    idle = times.idle + iowait
    return total, total - idle, iowait, getattr(times, "steal", 0.0)


class _Reading:
    """One collection of readings (made in a worker thread)."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.disks: dict[str, dict[str, float]] = {}
        self.errors: list[str] = []
        self.temperatures: dict[str, float] = {}


class SystemProbe:
    """Measure this host; see the module docstring."""

    type = "system"
    Settings = SystemSettings

    def __init__(self, settings: SystemSettings) -> None:
        self.settings = settings
        self._cpu: tuple[float, float, float, float] | None = None

    async def aclose(self) -> None:
        """Nothing to release."""

    def _cpu_percent(self) -> dict[str, float]:
        import psutil

        now = _cpu_split(psutil.cpu_times())
        before, self._cpu = self._cpu, now
        if before is None:
            return {}
        total = now[0] - before[0]
        if total <= 0:
            return {"cpu_percent": 0.0}
        return {
            "cpu_percent": min(100.0, max(0.0, (now[1] - before[1]) / total * 100)),
            "cpu_iowait_percent": min(100.0, max(0.0, (now[2] - before[2]) / total * 100)),
            "cpu_steal_percent": min(100.0, max(0.0, (now[3] - before[3]) / total * 100)),
        }

    def _collect(self) -> _Reading:
        import psutil

        reading = _Reading()
        m = reading.metrics
        m.update(self._cpu_percent())
        m["cpu_count"] = float(psutil.cpu_count() or 1)
        mem = psutil.virtual_memory()
        m["memory_total_bytes"] = float(mem.total)
        m["memory_available_bytes"] = float(mem.available)
        m["memory_used_bytes"] = float(mem.used)
        m["memory_percent"] = float(mem.percent)
        swap = psutil.swap_memory()
        m["swap_total_bytes"] = float(swap.total)
        m["swap_used_bytes"] = float(swap.used)
        m["swap_percent"] = float(swap.percent)
        try:
            load = psutil.getloadavg()
        except OSError:  # pragma: no cover - psutil emulates it where the OS has none
            load = (0.0, 0.0, 0.0)
        m["load1"], m["load5"], m["load15"] = (float(x) for x in load)
        self._disks(reading)
        self._network(m)
        try:
            sensors = psutil.sensors_temperatures()
        except (AttributeError, OSError):
            sensors = {}
        for chip, entries in sensors.items():
            for index, entry in enumerate(entries):
                name = f"{chip}/{entry.label or index}"
                if name in reading.temperatures:  # two sensors with one label
                    name = f"{name}#{index}"
                reading.temperatures[name] = float(entry.current)
                m[f"temperature_celsius:{name}"] = float(entry.current)
        return reading

    def _disks(self, reading: _Reading) -> None:
        import psutil

        mounts: Sequence[str] = self.settings.mounts or real_mounts()
        for mount in mounts:
            try:
                usage = psutil.disk_usage(mount)
            except FileNotFoundError:
                reading.errors.append(f"mount {mount}: no such directory")
                continue
            except OSError as exc:
                reading.errors.append(f"mount {mount}: {exc.strerror or exc}")
                continue
            disk = {
                "total_bytes": float(usage.total),
                "used_bytes": float(usage.used),
                "free_bytes": float(usage.free),
                "used_percent": float(usage.percent),
            }
            reading.disks[mount] = disk
            for key, value in disk.items():
                reading.metrics[f"disk_{key}:{mount}"] = value

    def _network(self, m: dict[str, float]) -> None:
        import psutil

        counters = psutil.net_io_counters(pernic=True)
        wanted = self.settings.interfaces
        fields = (
            "bytes_sent", "bytes_recv", "packets_sent", "packets_recv",
            "errin", "errout", "dropin", "dropout",
        )  # fmt: skip
        totals = dict.fromkeys(fields, 0.0)
        for nic, stats in counters.items():
            if wanted is None and nic == "lo":
                continue
            if wanted is not None and nic not in wanted:
                continue
            for field in fields:
                value = float(getattr(stats, field))
                totals[field] += value
                m[f"net_{field}:{nic}"] = value
        for field, value in totals.items():
            m[f"net_{field}"] = value

    async def check(self, target: str, timeout: float) -> ProbeResult:
        started = time.perf_counter()
        if self._cpu is None:
            await anyio.to_thread.run_sync(self._cpu_percent)
            await anyio.sleep(min(_FIRST_SAMPLE, timeout / 4))
        try:
            with anyio.fail_after(max(0.0, timeout - (time.perf_counter() - started))):
                reading = await anyio.to_thread.run_sync(self._collect, abandon_on_cancel=True)
        except TimeoutError:
            return ProbeResult.failure(f"reading system counters took over {timeout:g}s")
        return self._judge(reading, time.perf_counter() - started)

    def _judge(self, reading: _Reading, duration: float) -> ProbeResult:
        s = self.settings
        m = reading.metrics
        cpus = m["cpu_count"]
        values: dict[str, Any] = {
            "CPU_PERCENT": m.get("cpu_percent", 0.0),
            "CPU_COUNT": int(cpus),
            "MEMORY_PERCENT": m["memory_percent"],
            "SWAP_PERCENT": m["swap_percent"],
            "DISKS": {
                mount: {k: d[k] for k in ("used_percent", "free_bytes", "total_bytes")}
                for mount, d in reading.disks.items()
            },
        }
        for n in ("1", "5", "15"):
            values[f"LOAD{n}"] = m[f"load{n}"]
            values[f"LOAD{n}_PER_CPU"] = m[f"load{n}"] / cpus
        if reading.disks:
            values["DISK_USED_PERCENT"] = max(d["used_percent"] for d in reading.disks.values())
            values["DISK_FREE_BYTES"] = min(d["free_bytes"] for d in reading.disks.values())
        if reading.temperatures:
            values["MAX_TEMPERATURE"] = max(reading.temperatures.values())

        problems = list(reading.errors)

        def over(what: str, value: float, limit: float | None, unit: str = "%") -> None:
            if limit is not None and value > limit:
                problems.append(f"{what} {value:.1f}{unit} > {limit:g}{unit}")

        over("cpu", values["CPU_PERCENT"], s.max_cpu_percent)
        over("memory", m["memory_percent"], s.max_memory_percent)
        over("swap", m["swap_percent"], s.max_swap_percent)
        per_cpu = " per cpu" if s.load_per_cpu else ""
        for n, limit in (("1", s.max_load1), ("5", s.max_load5), ("15", s.max_load15)):
            load = values[f"LOAD{n}_PER_CPU"] if s.load_per_cpu else m[f"load{n}"]
            if limit is not None and load > limit:
                problems.append(f"load{n}{per_cpu} {load:.2f} > {limit:g}")
        for mount, disk in reading.disks.items():
            over(f"disk {mount}", disk["used_percent"], s.max_disk_percent)
            if s.min_disk_free is not None and disk["free_bytes"] < s.min_disk_free:
                problems.append(
                    f"disk {mount} {_bytes(disk['free_bytes'])} free"
                    f" < {_bytes(float(s.min_disk_free))}"
                )
        for name, celsius in reading.temperatures.items():
            over(f"temperature {name}", celsius, s.max_temperature, "°C")
        if problems:
            return ProbeResult.failure(
                "; ".join(problems), duration=duration, metrics=m, values=values
            )
        summary = [
            f"cpu {values['CPU_PERCENT']:.0f}%",
            f"memory {m['memory_percent']:.0f}%",
            f"swap {m['swap_percent']:.0f}%",
            f"load {m['load1']:.2f} {m['load5']:.2f} {m['load15']:.2f}",
        ]
        summary += [f"disk {mount} {d['used_percent']:.0f}%" for mount, d in reading.disks.items()]
        return ProbeResult(
            success=True, duration=duration, message=", ".join(summary), metrics=m, values=values
        )


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``system`` probe."""
    return [SystemProbe]
