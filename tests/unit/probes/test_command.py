"""The ``command`` probe running real programs: small sh and Python scripts written by the
tests, Nagios exit codes and perfdata, truncation, and process groups killed on timeout."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from pudimd_plugins.probes.command import (
    CommandProbe,
    CommandSettings,
    PerfItem,
    parse_perfdata,
    perf_metrics,
    pudimd_probe_types,
    split_output,
)
from pydantic import ValidationError

from tests.helpers import run_check

pytestmark = pytest.mark.anyio


async def run(target: str, within: float = 10.0, **settings: Any) -> Any:
    return await run_check(CommandProbe, target, within, **settings)


def script(tmp_path: Path, body: str, name: str = "plugin.sh", shebang: str = "/bin/sh") -> str:
    """An executable script in ``tmp_path``; returns its path."""
    path = tmp_path / name
    path.write_text(f"#!{shebang}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def gone(pid: int, within: float = 2.0) -> bool:
    """The process exits within ``within`` seconds (a zombie waiting for init to reap it
    counts as exited).  SIGKILL reaches an orphaned grandchild asynchronously: on a
    loaded machine it can still be running for a moment after the probe returns."""
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def read_pid(path: Path) -> int:
    return int(path.read_text())


def test_plugin_registers_the_command_type() -> None:
    assert pudimd_probe_types() == [CommandProbe]


# --- exit codes -------------------------------------------------------------------------


async def test_true_by_path_and_by_name_is_up() -> None:
    for target in ("/bin/true", "true"):
        result = await run(target)
        assert result.success, result.message
        assert result.status == 0 and result.values["EXIT_CODE"] == 0
        assert result.metrics["exit_code"] == 0
        assert not result.degraded


async def test_nagios_ok_takes_the_status_text_as_message(tmp_path: Path) -> None:
    result = await run(script(tmp_path, "echo 'DISK OK - free space: / 3326 MB'; exit 0"))
    assert result.success and not result.degraded
    assert result.message == "DISK OK - free space: / 3326 MB"
    assert result.values["NAGIOS_STATE"] == "OK"


async def test_nagios_warning_is_up_but_degraded(tmp_path: Path) -> None:
    result = await run(script(tmp_path, "echo 'LOAD WARNING - load average: 5.1'; exit 1"))
    assert result.success and result.degraded
    assert result.status == 1
    assert result.message == "LOAD WARNING - load average: 5.1"
    assert result.values["NAGIOS_STATE"] == "WARNING"


async def test_nagios_critical_is_down_with_the_plugin_text(tmp_path: Path) -> None:
    result = await run(script(tmp_path, "echo 'PROCS CRITICAL: 0 processes'; exit 2"))
    assert not result.success
    assert result.status == 2
    assert result.message == "PROCS CRITICAL: 0 processes"
    assert result.values["NAGIOS_STATE"] == "CRITICAL"


async def test_nagios_unknown_is_down_saying_unknown(tmp_path: Path) -> None:
    result = await run(script(tmp_path, "echo 'could not parse arguments'; exit 3"))
    assert not result.success and result.status == 3
    assert result.message == "UNKNOWN: could not parse arguments"
    already = await run(script(tmp_path, "echo 'HTTP UNKNOWN - bad url'; exit 3"))
    assert already.message == "HTTP UNKNOWN - bad url"


async def test_other_exit_status_is_down_naming_it(tmp_path: Path) -> None:
    result = await run(script(tmp_path, "echo oops; exit 42"))
    assert not result.success and result.status == 42
    assert result.message == "exit status 42: oops"
    assert "NAGIOS_STATE" not in result.values


async def test_without_nagios_any_nonzero_status_is_down(tmp_path: Path) -> None:
    warning = await run(script(tmp_path, "echo meh; exit 1"), nagios=False)
    assert not warning.success and not warning.degraded
    assert warning.message == "exit status 1: meh"
    ok = await run("/bin/true", nagios=False)
    assert ok.success


async def test_death_by_signal_is_down_naming_the_signal(tmp_path: Path) -> None:
    result = await run(script(tmp_path, "kill -SEGV $$"))
    assert not result.success
    assert result.status == -11
    assert result.message.startswith("killed by SIGSEGV")


async def test_message_falls_back_to_stderr_and_stderr_is_a_value(tmp_path: Path) -> None:
    result = await run(script(tmp_path, "echo 'cannot connect' >&2; exit 2"))
    assert not result.success
    assert result.message == "cannot connect"
    assert result.values["STDERR"] == "cannot connect\n"
    assert result.values["BODY"] == ""
    assert result.metrics["stderr_bytes"] == len("cannot connect\n")


# --- arguments, shell, environment ------------------------------------------------------


async def test_args_are_passed_as_is_without_a_shell(tmp_path: Path) -> None:
    target = script(tmp_path, 'printf "%s|" "$@"')
    result = await run(target, args=["a b", "$HOME", "*"])
    assert result.values["BODY"] == "a b|$HOME|*|"


async def test_shell_runs_the_target_as_a_command_line_with_args_as_positionals() -> None:
    result = await run('echo "$1-$2" | tr a-z A-Z', shell=True, args=["x", "y"])
    assert result.success
    assert result.values["BODY"] == "X-Y\n"


async def test_env_and_cwd_reach_the_program(tmp_path: Path) -> None:
    result = await run(
        'echo "$PUDIMD_TEST_VAR $(pwd)"', shell=True, env={"PUDIMD_TEST_VAR": "hello"}, cwd=tmp_path
    )
    assert result.values["BODY"] == f"hello {tmp_path}\n"


async def test_missing_cwd_fails_saying_so(tmp_path: Path) -> None:
    result = await run("/bin/true", cwd=tmp_path / "nope")
    assert not result.success
    assert "no such directory" in result.message


async def test_python_script_with_its_own_interpreter(tmp_path: Path) -> None:
    body = "import sys\nprint('PY OK | answer=42')\nsys.exit(0)"
    result = await run(script(tmp_path, body, "check.py", shebang=sys.executable))
    assert result.success and result.message == "PY OK"
    assert result.metrics["perf_answer"] == 42


# --- missing programs -------------------------------------------------------------------


async def test_program_not_on_path_fails_clearly() -> None:
    result = await run("pudimd-no-such-program")
    assert not result.success
    assert result.message == "program 'pudimd-no-such-program' not found on PATH"


async def test_missing_path_fails_clearly_and_hints_at_args(tmp_path: Path) -> None:
    result = await run(f"{tmp_path}/check_thing -w 5")
    assert not result.success
    assert "no such file" in result.message and "args" in result.message


async def test_non_executable_file_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "plain.sh"
    path.write_text("#!/bin/sh\nexit 0\n")
    result = await run(str(path))
    assert not result.success
    assert result.message == f"{path}: not executable"


async def test_directory_is_not_a_program(tmp_path: Path) -> None:
    result = await run(str(tmp_path))
    assert not result.success and "is a directory" in result.message


async def test_file_without_interpreter_fails_with_the_exec_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(b"\x7fELF not really")
    path.chmod(0o755)
    result = await run(str(path))
    assert not result.success
    # the standard loop reports execve's ENOEXEC; uvloop (libuv) follows execvp(3) and hands
    # the file to /bin/sh, which cannot run it either
    message = result.message.lower()
    assert "exec format error" in message or ("exit status" in message and "not found" in message)


# --- output -----------------------------------------------------------------------------


async def test_output_beyond_max_output_is_truncated_with_a_marker(tmp_path: Path) -> None:
    target = script(tmp_path, "echo 'OK | a=1'; head -c 10000 /dev/zero | tr '\\0' x")
    result = await run(target, max_output=100)
    body = result.values["BODY"]
    assert body.startswith("OK | a=1\n" + "x" * 10)
    assert body.endswith(f"[... {10009 - 100} more bytes]")
    assert len(body.split("\n[...")[0].encode()) == 100
    assert result.metrics["stdout_bytes"] == 10009
    assert result.metrics["perf_a"] == 1
    assert result.success


async def test_truncated_perfdata_line_is_not_misread(tmp_path: Path) -> None:
    # the second perfdata line is cut by max_output: its value must not be read as 1
    target = script(tmp_path, "echo 'OK'; echo 'long | a=5'; echo 'b=123456789'")
    result = await run(target, max_output=len("OK\nlong | a=5\nb=1"))
    assert result.metrics["perf_a"] == 5
    assert "perf_b" not in result.metrics


async def test_byte_size_setting_accepts_units() -> None:
    assert CommandSettings(max_output="1KiB").max_output == 1024
    with pytest.raises(ValidationError):
        CommandSettings(max_output=0)
    with pytest.raises(ValidationError):
        CommandSettings(argz=[])  # type: ignore[call-arg]


# --- perfdata ---------------------------------------------------------------------------


def test_perfdata_units_are_normalised() -> None:
    items = parse_perfdata("time=12ms;100;200;0 rta=3.5us size=2KB mem=1.5MB pct=87% hits=1234c raw=7")
    values = {i.label: i.value for i in items}
    assert values["time"] == pytest.approx(0.012)
    assert values["rta"] == pytest.approx(3.5e-6)
    assert values["size"] == 2048
    assert values["mem"] == 1.5 * 1024 * 1024
    assert values["pct"] == 87 and values["hits"] == 1234 and values["raw"] == 7
    time_item = items[0]
    assert time_item.warn == pytest.approx(0.1) and time_item.crit == pytest.approx(0.2)
    assert time_item.min == 0 and time_item.max is None


def test_perfdata_quoted_labels_may_hold_spaces_equals_and_quotes() -> None:
    items = parse_perfdata("'C:\\ used space'=10GB;;;0;100 'a=b'=1 'it''s'=2s")
    assert [i.label for i in items] == ["C:\\ used space", "a=b", "it's"]
    assert items[0].value == 10 * 1024**3 and items[0].max == 100 * 1024**3
    assert items[2].value == 2


def test_perfdata_ranges_and_unknown_values_are_left_out() -> None:
    items = parse_perfdata("load=3;@1:2;~:5 gone=U;1;2 bad; x=U ok=1;;;;")
    assert [i.label for i in items] == ["load", "ok"]
    assert items[0].warn is None and items[0].crit is None
    metrics = perf_metrics(items)
    assert metrics == {"perf_load": 3.0, "perf_ok": 1.0}


def test_perf_metrics_name_thresholds_after_their_label() -> None:
    metrics = perf_metrics([PerfItem("/var", 10.0, "MB", warn=20.0, crit=30.0, min=0.0, max=40.0)])
    assert metrics == {
        "perf_/var": 10.0,
        "perf_/var_warn": 20.0,
        "perf_/var_crit": 30.0,
        "perf_/var_min": 0.0,
        "perf_/var_max": 40.0,
    }


def test_split_output_follows_the_plugin_api_multiline_layout() -> None:
    text = (
        "DISK OK - free space: / 3326 MB | /=2643MB;5948;5958;0;5968\n"
        "/ 15272 MB (77%);\n"
        "/boot 68 MB (69%); | /boot=68MB;88;93;0;98\n"
        "/home=69357MB;253404;253409;0;253414\n"
    )
    status, perf = split_output(text)
    assert status == "DISK OK - free space: / 3326 MB"
    labels = [i.label for i in parse_perfdata(perf)]
    assert labels == ["/", "/boot", "/home"]


async def test_multiline_perfdata_from_a_real_plugin_script(tmp_path: Path) -> None:
    target = script(
        tmp_path,
        "echo 'DISK OK | /=2643MB;5948;5958;0;5968'\n"
        "echo 'long text'\n"
        "echo 'more | /boot=68MB'\n"
        "echo \"'my disk'=1GB\"",
    )
    result = await run(target)
    assert result.message == "DISK OK"
    assert result.metrics["perf_/"] == 2643 * 1024**2
    assert result.metrics["perf_/_crit"] == 5958 * 1024**2
    assert result.metrics["perf_/boot"] == 68 * 1024**2
    assert result.metrics["perf_my disk"] == 1024**3
    assert result.values["PERF_MY_DISK"] == 1024**3
    assert result.values["PERF_BOOT"] == 68 * 1024**2


# --- timeouts and process groups --------------------------------------------------------


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    target = script(tmp_path, f"sh -c 'sleep 60 & echo $! > {pidfile}; sleep 60'")
    started = time.monotonic()
    result = await run(target, within=1.5)
    took = time.monotonic() - started
    assert not result.success
    assert result.message.startswith("timeout: still running after")
    assert result.values["EXIT_CODE"] is None and result.status is None
    assert took < 3
    grandchild = read_pid(pidfile)
    assert gone(grandchild)


async def test_children_left_running_after_exit_are_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    target = script(tmp_path, f"sleep 60 & echo $! > {pidfile}; echo 'OK - started'")
    started = time.monotonic()
    result = await run(target, within=10)
    assert time.monotonic() - started < 3  # not waiting for the child holding stdout
    assert result.success and result.message == "OK - started"
    assert gone(read_pid(pidfile))


async def test_a_group_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    target = script(tmp_path, f"trap '' TERM; sleep 60 & echo $! > {pidfile}; wait")
    started = time.monotonic()
    result = await run(target, within=2, kill_grace="300ms")
    took = time.monotonic() - started
    assert not result.success and "timeout" in result.message
    assert 1.5 < took < 3.5
    assert gone(read_pid(pidfile))


async def test_cancelling_the_check_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    target = script(tmp_path, f"sh -c 'sleep 60 & echo $! > {pidfile}; sleep 60'")
    probe = CommandProbe(CommandSettings())
    with anyio.move_on_after(0.5) as scope:
        await probe.check(target, 30)
    assert scope.cancelled_caught
    grandchild = read_pid(pidfile)
    assert gone(grandchild)


async def test_no_process_is_left_behind_after_a_normal_check(tmp_path: Path) -> None:
    before = {c.pid for c in psutil.Process(os.getpid()).children(recursive=True)}
    for _ in range(3):
        await run(script(tmp_path, "echo OK"))
    after = {
        c.pid
        for c in psutil.Process(os.getpid()).children(recursive=True)
        if c.status() != psutil.STATUS_ZOMBIE
    }
    assert after <= before
