"""The real daemon in a subprocess: start, serve, reload, refuse a bad config, stop."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import PUDIMD, require_binary
from tests.integration.daemon_harness import DaemonProcess, running_daemon

CONFIG = """
logging: {{format: json}}
storage: {{batch_interval: 200ms}}
targets:
  - name: port
    probe: tcp
    target: 127.0.0.1:{tcp_port}
    interval: 200ms
  - name: refused
    probe: tcp
    target: 127.0.0.1:{dead_port}
    interval: 200ms
{extra}
"""


@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def dead_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def write_config(path: Path, tcp_port: int, dead_port: int, extra: str = "") -> None:
    path.write_text(CONFIG.format(tcp_port=tcp_port, dead_port=dead_port, extra=extra))


@pytest.fixture
def config(tmp_path: Path, listener: int, dead_port: int) -> Path:
    path = tmp_path / "pudimd.yaml"
    write_config(path, listener, dead_port)
    return path


@pytest.fixture
def daemon(config: Path, tmp_path: Path) -> Iterator[DaemonProcess]:
    yield from running_daemon(config, tmp_path / "state", watchdog_usec=400_000)


def test_daemon_serves_health_and_real_results(daemon: DaemonProcess) -> None:
    assert daemon.get("/-/healthy") == (200, "pudimd is Healthy.\n")
    assert daemon.get("/-/ready")[0] == 200
    assert daemon.wait_metric("pudimd_target_up", lambda v: v == 1, target="port", probe="tcp") == 1
    assert (
        daemon.wait_metric("pudimd_target_up", lambda v: v == 0, target="refused", probe="tcp") == 0
    )
    assert daemon.metric("pudimd_config_last_reload_successful") == 1
    _, text = daemon.get("/metrics")
    for name in (
        "pudimd_target_check_duration_seconds",
        "pudimd_target_last_check_timestamp_seconds",
        "pudimd_scheduler_lateness_seconds_bucket",
        "pudimd_checks_in_flight",
        "pudimd_build_info",
        "process_resident_memory_bytes",
    ):
        assert f"\n{name}" in text, name


def test_metrics_pass_promtool(daemon: DaemonProcess) -> None:
    promtool = require_binary("promtool")
    daemon.wait_metric("pudimd_target_up", lambda v: v == 1, target="port", probe="tcp")
    daemon.post("/-/reload")
    _, text = daemon.get("/metrics")
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "" and out.stderr.strip() == "", "promtool has no lint complaints"


def test_watchdog_pings_arrive(daemon: DaemonProcess) -> None:
    start = len(daemon.drain())
    daemon.wait_for_message("WATCHDOG=1", after=start, timeout=3)


def test_sighup_applies_changes_and_keeps_unchanged_targets(
    daemon: DaemonProcess, config: Path, listener: int, dead_port: int
) -> None:
    checks = daemon.wait_metric(
        "pudimd_target_checks_total", lambda v: v >= 3, target="port", probe="tcp"
    )
    write_config(
        config,
        listener,
        dead_port,
        extra=f"  - {{name: added, probe: tcp, target: '127.0.0.1:{listener}', interval: 200ms}}\n",
    )
    mark = len(daemon.drain())
    daemon.signal(signal.SIGHUP)
    assert daemon.wait_for_message("RELOADING=1", after=mark).startswith(
        "RELOADING=1\nMONOTONIC_USEC="
    )
    daemon.wait_for_message("READY=1", after=mark)
    daemon.wait_metric("pudimd_target_up", lambda v: v == 1, target="added", probe="tcp")
    after = daemon.metric("pudimd_target_checks_total", target="port", probe="tcp")
    assert after is not None and after >= checks, "the unchanged target kept its state"
    assert '"added": 1' in daemon.log and '"unchanged": 2' in daemon.log


def test_bad_config_is_refused_and_the_old_one_keeps_running(
    daemon: DaemonProcess, config: Path, listener: int, dead_port: int
) -> None:
    daemon.wait_metric("pudimd_target_up", lambda v: v == 1, target="port", probe="tcp")
    config.write_text(
        config.read_text() + "  - {name: broken, probe: tcp, target: x, interval: soon}\n"
    )
    status, body = daemon.post("/-/reload")
    assert status == 500
    assert (
        f"{config}:" in body and "targets[2].interval" in body and "invalid duration 'soon'" in body
    )
    assert daemon.metric("pudimd_config_last_reload_successful") == 0
    before = daemon.metric("pudimd_target_checks_total", target="port", probe="tcp") or 0
    daemon.wait_metric(
        "pudimd_target_checks_total", lambda v: v > before, target="port", probe="tcp"
    )
    assert daemon.metric("pudimd_target_up", target="broken", probe="tcp") is None
    assert "config reload failed" in daemon.log and "targets[2].interval" in daemon.log

    cli = subprocess.run(
        [*PUDIMD, "reload", "--listen", f"127.0.0.1:{daemon.port}"], capture_output=True, text=True
    )
    assert cli.returncode == 1 and "invalid duration 'soon'" in cli.stderr

    write_config(config, listener, dead_port)
    cli = subprocess.run(
        [*PUDIMD, "reload", "--listen", f"127.0.0.1:{daemon.port}"], capture_output=True, text=True
    )
    assert cli.returncode == 0, cli.stderr
    assert daemon.metric("pudimd_config_last_reload_successful") == 1


def test_sigterm_stops_gracefully_and_flushes_results(config: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_for_message("READY=1")
        daemon.wait_metric(
            "pudimd_target_checks_total", lambda v: v >= 2, target="port", probe="tcp"
        )
        mark = len(daemon.drain())
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        code = daemon.proc.wait(12)
        elapsed = time.monotonic() - started
        daemon.drain()
    finally:
        daemon.stop()
    assert any(m.startswith("STOPPING=1") for m in daemon.messages[mark:])
    assert code == 0, daemon.log
    assert elapsed < 10
    with sqlite3.connect(state / "pudimd.db") as db:
        rows = db.execute("select target, success from results").fetchall()
    assert ("port", 1) in rows and ("refused", 0) in rows
    assert "Traceback" not in daemon.log
