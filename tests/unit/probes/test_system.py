"""The ``system`` probe on the real host: readings compared with psutil's own, and limits
set so that they must pass or must fail."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from pudimd_plugins.probes.system import (
    SystemProbe,
    SystemSettings,
    pudimd_probe_types,
    real_mounts,
)
from pydantic import ValidationError

from tests.helpers import run_check

pytestmark = pytest.mark.anyio


async def run(within: float = 10.0, **settings: Any) -> Any:
    return await run_check(SystemProbe, "localhost", within, **settings)


def test_plugin_registers_the_system_type() -> None:
    assert pudimd_probe_types() == [SystemProbe]


def test_real_mounts_include_root_and_leave_out_virtual_filesystems() -> None:
    mounts = real_mounts()
    assert "/" in mounts
    assert not {"/proc", "/sys", "/dev/pts"} & set(mounts)
    assert len(mounts) == len(set(mounts))


async def test_readings_agree_with_psutil() -> None:
    result = await run()
    assert result.success, result.message
    m = result.metrics
    memory = psutil.virtual_memory()
    assert m["memory_total_bytes"] == memory.total
    assert 0 < m["memory_available_bytes"] <= memory.total
    assert 0 <= m["memory_percent"] <= 100
    assert m["swap_total_bytes"] == psutil.swap_memory().total
    assert 0 <= m["swap_percent"] <= 100
    assert m["cpu_count"] == psutil.cpu_count()
    assert 0 <= m["cpu_percent"] <= 100  # measured even on the first check
    assert all(m[f"load{n}"] >= 0 for n in (1, 5, 15))
    root = psutil.disk_usage("/")
    assert m["disk_total_bytes:/"] == root.total
    assert abs(m["disk_used_bytes:/"] - root.used) < 1 << 30
    assert m["disk_used_bytes:/"] + m["disk_free_bytes:/"] <= m["disk_total_bytes:/"]
    assert "disk / " in result.message and "memory " in result.message


async def test_values_hold_the_readings_for_conditions() -> None:
    result = await run()
    v, m = result.values, result.metrics
    assert v["MEMORY_PERCENT"] == m["memory_percent"]
    assert v["CPU_PERCENT"] == m["cpu_percent"]
    assert v["LOAD1"] == m["load1"]
    assert v["LOAD15_PER_CPU"] == pytest.approx(m["load15"] / m["cpu_count"])
    assert "/" in v["DISKS"]
    assert v["DISK_USED_PERCENT"] == max(d["used_percent"] for d in v["DISKS"].values())
    assert v["DISK_FREE_BYTES"] == min(d["free_bytes"] for d in v["DISKS"].values())


async def test_network_totals_are_the_sum_of_the_interfaces_without_loopback() -> None:
    result = await run()
    m = result.metrics
    nics = [n for n in psutil.net_io_counters(pernic=True) if n != "lo"]
    assert "net_bytes_recv:lo" not in m
    assert m["net_bytes_recv"] == sum(m[f"net_bytes_recv:{n}"] for n in nics)
    assert m["net_packets_sent"] == sum(m[f"net_packets_sent:{n}"] for n in nics)


async def test_interfaces_setting_picks_the_interfaces() -> None:
    result = await run(interfaces=["lo"])
    m = result.metrics
    assert [k for k in m if k.startswith("net_bytes_recv:")] == ["net_bytes_recv:lo"]
    assert m["net_bytes_recv"] == m["net_bytes_recv:lo"] > 0  # the test suite talks on lo


async def test_temperatures_are_reported_where_sensors_exist() -> None:
    result = await run()
    sensors = psutil.sensors_temperatures()
    found = [k for k in result.metrics if k.startswith("temperature_celsius:")]
    assert len(found) == sum(len(entries) for entries in sensors.values())
    assert ("MAX_TEMPERATURE" in result.values) == bool(found)


async def test_cpu_percent_is_measured_between_checks() -> None:
    probe = SystemProbe(SystemSettings())
    await probe.check("localhost", 10)
    spinner = await anyio.open_process([sys.executable, "-c", "while True: pass"])
    try:
        await anyio.sleep(0.6)
        result = await probe.check("localhost", 10)
    finally:
        spinner.kill()
        await spinner.wait()
    # one core spun for the whole interval
    assert result.metrics["cpu_percent"] >= 100 / (psutil.cpu_count() or 1) * 0.6


async def test_limits_passed_make_it_down_naming_each() -> None:
    result = await run(max_memory_percent=0, max_disk_percent=0, min_disk_free="1PiB")
    assert not result.success
    assert "memory" in result.message and "> 0%" in result.message
    assert "disk / " in result.message and "free < 1.0PiB" in result.message
    assert result.metrics["memory_percent"] > 0  # the readings are still there


async def test_generous_limits_keep_it_up() -> None:
    result = await run(
        max_cpu_percent=100,
        max_memory_percent=100,
        max_swap_percent=100,
        max_disk_percent=100,
        min_disk_free=0,
        max_load1=10_000,
        max_temperature=1000,
    )
    assert result.success, result.message


async def test_load_limit_per_cpu() -> None:
    result = await run(max_load1=0, load_per_cpu=True)
    assert result.success == (result.metrics["load1"] == 0)
    if not result.success:
        assert "load1 per cpu" in result.message


async def test_named_mount_need_not_be_a_mount_point(tmp_path: Path) -> None:
    result = await run(mounts=[str(tmp_path)])
    assert result.success
    key = f"disk_total_bytes:{tmp_path}"
    assert result.metrics[key] == psutil.disk_usage(str(tmp_path)).total
    assert "disk_total_bytes:/" not in result.metrics or str(tmp_path) == "/"


async def test_missing_mount_is_a_failure(tmp_path: Path) -> None:
    result = await run(mounts=["/", str(tmp_path / "nope")])
    assert not result.success
    assert result.message == f"mount {tmp_path / 'nope'}: no such directory"
    assert "disk_used_percent:/" in result.metrics


def test_settings_validate() -> None:
    with pytest.raises(ValidationError):
        SystemSettings(mounts=["var"])
    with pytest.raises(ValidationError):
        SystemSettings(max_memory_percent=101)
    assert SystemSettings(min_disk_free="10GiB").min_disk_free == 10 * 1024**3
