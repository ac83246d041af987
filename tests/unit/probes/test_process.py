"""The ``process`` probe against real processes the tests start (``sleep`` and Python with
distinctive arguments), pidfiles, stale pidfiles and limits."""

from __future__ import annotations

import functools
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import psutil
import pytest
from pudimd_plugins.probes.process import ProcessProbe, ProcessSettings, pudimd_probe_types
from pydantic import ValidationError

from tests.helpers import run_check

pytestmark = pytest.mark.anyio

Spawn = Callable[..., Awaitable[anyio.abc.Process]]


async def run(target: str, within: float = 10.0, **settings: Any) -> Any:
    return await run_check(ProcessProbe, target, within, **settings)


@pytest.fixture
def marker() -> str:
    """A sleep duration no other process on the machine has in its argv."""
    return f"{random.randrange(10**6, 10**7)}.{random.randrange(10**3, 10**4)}"


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    started: list[anyio.abc.Process] = []

    async def start(*argv: str) -> anyio.abc.Process:
        proc = await anyio.open_process(list(argv))
        started.append(proc)
        # wait until it has exec'd (its name is no longer the parent's)
        with anyio.fail_after(5):
            while True:
                try:
                    if psutil.Process(proc.pid).cmdline()[-1] == argv[-1]:
                        break
                except (psutil.NoSuchProcess, IndexError):
                    pass
                await anyio.sleep(0.01)
        return proc

    yield start
    for proc in started:
        if proc.returncode is None:
            proc.kill()
        await proc.aclose()


PYTHON_HOG = """
import sys, time
blob = b"x" * (40 * 1024 * 1024)          # resident: every page written
files = [open(sys.executable, "rb") for _ in range(20)]
busy = sys.argv[1] == "busy"
while True:
    if not busy:
        time.sleep(1)
"""


def test_plugin_registers_the_process_type() -> None:
    assert pudimd_probe_types() == [ProcessProbe]


async def test_running_process_is_found_by_name_and_cmdline(spawn: Spawn, marker: str) -> None:
    proc = await spawn("sleep", marker)
    result = await run("sleep", cmdline_regex=rf"\b{marker}$")
    assert result.success, result.message
    assert result.values["PIDS"] == [proc.pid]
    assert result.metrics["count"] == 1
    assert result.message == f"1 process: {proc.pid}"
    ps = psutil.Process(proc.pid)
    assert result.metrics["oldest_start_timestamp"] == ps.create_time()
    assert 0 <= result.metrics["uptime_seconds"] < 60
    assert result.metrics["threads"] == 1
    assert result.metrics["rss_bytes"] == pytest.approx(ps.memory_info().rss, rel=0.5)
    assert result.metrics["open_files"] == ps.num_fds()


async def test_not_running_is_down_saying_what_was_looked_for(marker: str) -> None:
    result = await run("sleep", cmdline_regex=marker)
    assert not result.success
    assert result.message == f"no process named 'sleep' matching /{marker}/"
    assert result.metrics == {"count": 0.0}


async def test_unknown_name_is_down() -> None:
    result = await run("pudimd-no-such-process")
    assert not result.success and "no process named 'pudimd-no-such-process'" in result.message


async def test_name_must_match_exactly(spawn: Spawn, marker: str) -> None:
    await spawn("sleep", marker)
    result = await run("slee", cmdline_regex=marker)
    assert not result.success


async def test_count_limits(spawn: Spawn, marker: str) -> None:
    procs = [await spawn("sleep", marker) for _ in range(3)]
    ok = await run("sleep", cmdline_regex=marker, min_count=3, max_count=3)
    assert ok.success and ok.values["COUNT"] == 3
    assert ok.values["PIDS"] == sorted(p.pid for p in procs)
    too_many = await run("sleep", cmdline_regex=marker, max_count=2)
    assert not too_many.success
    assert "3 processes" in too_many.message and "more than max_count 2" in too_many.message
    too_few = await run("sleep", cmdline_regex=marker, min_count=4)
    assert not too_few.success and "fewer than min_count 4" in too_few.message


async def test_must_not_run_with_max_count_zero(spawn: Spawn, marker: str) -> None:
    absent = await run("sleep", cmdline_regex=marker, min_count=0, max_count=0)
    assert absent.success and absent.metrics["count"] == 0
    await spawn("sleep", marker)
    present = await run("sleep", cmdline_regex=marker, min_count=0, max_count=0)
    assert not present.success and "more than max_count 0" in present.message


async def test_python_with_distinctive_argv_any_name(spawn: Spawn, marker: str) -> None:
    proc = await spawn(sys.executable, "-c", PYTHON_HOG, "idle", f"pudimd-test-{marker}")
    result = await run("*", cmdline_regex=f"pudimd-test-{marker}")
    assert result.success and result.values["PIDS"] == [proc.pid]
    assert result.metrics["rss_bytes"] >= 40 * 1024 * 1024
    assert result.metrics["open_files"] >= 20


async def test_rss_and_open_file_limits_fail_naming_the_reading(
    spawn: Spawn, marker: str
) -> None:
    await spawn(sys.executable, "-c", PYTHON_HOG, "idle", f"pudimd-test-{marker}")
    result = await run(
        "*", cmdline_regex=f"pudimd-test-{marker}", max_rss="10MiB", max_open_files=5
    )
    assert not result.success
    assert "rss " in result.message and "> 10.0MiB" in result.message
    assert "open files " in result.message and "> 5" in result.message
    roomy = await run(
        "*", cmdline_regex=f"pudimd-test-{marker}", max_rss="1GiB", max_open_files=1000
    )
    assert roomy.success, roomy.message


async def test_cpu_percent_of_a_busy_process(spawn: Spawn, marker: str) -> None:
    await spawn(sys.executable, "-c", PYTHON_HOG, "busy", f"pudimd-test-{marker}")
    probe = ProcessProbe(ProcessSettings(cmdline_regex=f"pudimd-test-{marker}", max_cpu_percent=10))
    first = await probe.check("*", 10)  # measured over its own short interval
    await anyio.sleep(0.5)
    second = await probe.check("*", 10)
    assert second.metrics["cpu_percent"] > 30
    assert not second.success and "cpu " in second.message and "> 10%" in second.message
    assert first.metrics["cpu_percent"] > 10
    idle = await run("sleep", cmdline_regex="x^")  # nothing matches: no cpu reading at all
    assert "cpu_percent" not in idle.metrics


async def test_user_filter(spawn: Spawn, marker: str) -> None:
    await spawn("sleep", marker)
    mine = await run("sleep", cmdline_regex=marker, user=os.geteuid())
    assert mine.success
    other = 65534 if os.geteuid() != 65534 else 0
    theirs = await run("sleep", cmdline_regex=marker, user=other)
    assert not theirs.success and f"of user {other}" in theirs.message
    unknown = await run("sleep", user="pudimd-no-such-user")
    assert not unknown.success and unknown.message == "no user named 'pudimd-no-such-user'"


async def test_own_process_is_never_counted() -> None:
    result = await run("*", cmdline_regex=r"pytest|test_process", min_count=0)
    assert os.getpid() not in result.values["PIDS"]


# --- pidfiles ---------------------------------------------------------------------------


async def test_pidfile_selects_its_process(spawn: Spawn, marker: str, tmp_path: Path) -> None:
    others = [await spawn("sleep", marker) for _ in range(2)]
    pidfile = tmp_path / "sleep.pid"
    pidfile.write_text(f"{others[1].pid}\n")
    result = await run("sleep", pidfile=pidfile)
    assert result.success and result.values["PIDS"] == [others[1].pid]
    anyname = await run("*", pidfile=pidfile)
    assert anyname.success


async def test_pidfile_of_another_program_is_a_failure(
    spawn: Spawn, marker: str, tmp_path: Path
) -> None:
    proc = await spawn("sleep", marker)
    pidfile = tmp_path / "nginx.pid"
    pidfile.write_text(str(proc.pid))
    result = await run("nginx", pidfile=pidfile)
    assert not result.success
    assert result.message == f"pidfile {pidfile}: pid {proc.pid} is 'sleep', not 'nginx'"


async def test_stale_pidfile_is_a_failure(spawn: Spawn, marker: str, tmp_path: Path) -> None:
    proc = await spawn("sleep", marker)
    proc.kill()
    await proc.wait()
    pidfile = tmp_path / "gone.pid"
    pidfile.write_text(str(proc.pid))
    result = await run("sleep", pidfile=pidfile)
    assert not result.success
    assert result.message == f"stale pidfile {pidfile}: pid {proc.pid} is not running"
    assert result.values["COUNT"] == 0


def test_pidfile_of_a_zombie_is_stale(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])  # not waited for: a zombie once it exits
    try:
        for _ in range(500):
            if psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.01)
        pidfile = tmp_path / "zombie.pid"
        pidfile.write_text(str(child.pid))
        result = anyio.run(functools.partial(run, "*", pidfile=pidfile))
        assert not result.success and "stale pidfile" in result.message
    finally:
        child.wait()


async def test_missing_and_empty_pidfiles_are_failures(tmp_path: Path) -> None:
    missing = await run("sleep", pidfile=tmp_path / "nope.pid")
    assert not missing.success and missing.message == f"pidfile {tmp_path / 'nope.pid'}: no such file"
    garbage = tmp_path / "garbage.pid"
    garbage.write_text("not a pid\n")
    bad = await run("sleep", pidfile=garbage)
    assert not bad.success and bad.message == f"pidfile {garbage}: no pid in it"


# --- races and settings -----------------------------------------------------------------


async def test_processes_exiting_during_checks_are_handled(spawn: Spawn) -> None:
    """Short-lived processes come and go while the probe lists and inspects them."""
    probe = ProcessProbe(ProcessSettings(min_count=0))
    stop = anyio.Event()

    async def churn() -> None:
        while not stop.is_set():
            proc = await anyio.open_process(["sleep", "0.01"])
            await proc.wait()
            await proc.aclose()

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(churn)
        for _ in range(10):
            result = await probe.check("sleep", 10)
            assert result.values["COUNT"] >= 0 and "raised" not in result.message
        stop.set()


def test_settings_validate() -> None:
    with pytest.raises(ValidationError, match="invalid regex"):
        ProcessSettings(cmdline_regex="(")
    with pytest.raises(ValidationError, match="below min_count"):
        ProcessSettings(min_count=2, max_count=1)
    assert ProcessSettings(max_rss="512MiB").max_rss == 512 * 1024 * 1024
