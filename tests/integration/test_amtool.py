"""The real ``amtool`` (Debian's prometheus-alertmanager 0.25), unmodified, against the real
daemon: status, alerts and silences, and what it prints."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from tests.helpers import require_binary
from tests.integration.daemon_harness import DaemonProcess

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

CONFIG = """alerting:
  route: {{receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s}}
  receivers:
    - name: hook
      webhook_configs: [{{url: "http://127.0.0.1:{port}/hook"}}]
"""


@pytest.fixture
async def hook_port() -> AsyncIterator[int]:
    """A webhook receiver the route points at (these tests do not look at what it gets)."""

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture
def daemon(tmp_path: Path, hook_port: int) -> Iterator[DaemonProcess]:
    config = tmp_path / "pudimd.yaml"
    config.write_text(CONFIG.format(port=hook_port))
    process = DaemonProcess(config, tmp_path / "state")
    try:
        process.wait_for_message("READY=1")
        yield process
    finally:
        process.stop()


@pytest.fixture
def amtool_binary() -> str:
    return require_binary("amtool")


class Amtool:
    def __init__(self, binary: str, url: str) -> None:
        self.argv = [binary, f"--alertmanager.url={url}"]

    async def __call__(self, *args: str, ok: bool = True) -> str:
        """What ``amtool args...`` prints; it must succeed unless ``ok`` is false (then its
        error output is returned)."""
        done = await anyio.run_process([*self.argv, *args], check=False)
        out, err = done.stdout.decode(), done.stderr.decode()
        if ok:
            assert done.returncode == 0, f"amtool {' '.join(args)}: {err}{out}"
            return out
        assert done.returncode != 0, f"amtool {' '.join(args)} succeeded: {out}"
        return err


@pytest.fixture
def amtool(amtool_binary: str, daemon: DaemonProcess) -> Amtool:
    return Amtool(amtool_binary, daemon.url)


def _table(text: str) -> list[dict[str, str]]:
    """amtool's table output as rows keyed by the header (a column starts where its
    header does; cells may be empty)."""
    lines = [line for line in text.splitlines() if line.strip()]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", lines[0])]
    names = [lines[0][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {
            name: line[a:b].strip()
            for name, a, b in zip(names, starts, [*starts[1:], None], strict=True)
        }
        for line in lines[1:]
    ]


async def test_amtool_reads_the_status(amtool: Amtool) -> None:
    shown = await amtool("config", "show")
    assert "receiver: hook" in shown
    assert "webhook_configs" in shown
    cluster = await amtool("cluster", "show")
    assert "Cluster Status:  disabled" in cluster


async def test_amtool_adds_and_queries_alerts(amtool: Amtool) -> None:
    await amtool("alert", "add", "DiskFull", "severity=critical", "--annotation=summary=disk full")
    await amtool("alert", "add", "Slow", "severity=warning")
    rows = _table(await amtool("alert", "query"))
    assert sorted((row["Alertname"], row["State"]) for row in rows) == [
        ("DiskFull", "active"),
        ("Slow", "active"),
    ]
    assert {row["Alertname"]: row["Summary"] for row in rows} == {
        "DiskFull": "disk full",
        "Slow": "",
    }
    [row] = _table(await amtool("alert", "query", 'severity=~"crit.*"'))
    assert row["Alertname"] == "DiskFull"
    assert _table(await amtool("alert", "query", "alertname=Nothing")) == []

    alerts = json.loads(await amtool("alert", "query", "-o", "json", "alertname=DiskFull"))
    [alert] = alerts
    assert alert["labels"] == {"alertname": "DiskFull", "severity": "critical"}
    assert alert["annotations"] == {"summary": "disk full"}
    assert alert["receivers"] == [{"name": "hook"}]
    assert alert["status"]["state"] == "active"
    assert re.fullmatch("[0-9a-f]{16}", alert["fingerprint"])

    extended = await amtool("alert", "query", "-o", "extended", "alertname=DiskFull")
    assert 'alertname="DiskFull" severity="critical"' in extended
    assert 'summary="disk full"' in extended


async def test_amtool_adds_queries_and_expires_silences(amtool: Amtool) -> None:
    await amtool("alert", "add", "DiskFull", "severity=critical")
    added = (
        await amtool(
            "silence",
            "add",
            "alertname=DiskFull",
            "--comment=replacing the disk",
            "--author=ops",
            "--duration=1h",
        )
    ).strip()
    assert UUID.fullmatch(added), added

    [row] = _table(await amtool("silence", "query"))
    assert row["ID"] == added
    assert row["Matchers"] == 'alertname="DiskFull"'
    assert (row["Created By"], row["Comment"]) == ("ops", "replacing the disk")
    assert (await amtool("silence", "query", "-q")).split() == [added]
    assert _table(await amtool("silence", "query", "alertname=Other")) == []

    # the alert is silenced: hidden by default, shown with --silenced
    assert _table(await amtool("alert", "query")) == []
    [alert] = json.loads(await amtool("alert", "query", "--silenced", "-o", "json"))
    # (amtool 0.25 does not know mutedBy and drops it)
    assert alert["status"] == {"state": "suppressed", "silencedBy": [added], "inhibitedBy": []}

    await amtool("silence", "expire", added)
    assert _table(await amtool("silence", "query")) == []
    [expired] = json.loads(await amtool("silence", "query", "--expired", "-o", "json"))
    assert (expired["id"], expired["status"]["state"]) == (added, "expired")
    [row] = _table(await amtool("alert", "query"))
    assert row["Alertname"] == "DiskFull"


async def test_amtool_reports_an_unknown_silence(amtool: Amtool) -> None:
    error = await amtool("silence", "expire", "00000000-0000-0000-0000-000000000000", ok=False)
    # amtool 0.25's spec knows no 404 for DELETE (newer ones do): it shows the status
    assert "(status 404)" in error


async def test_amtool_reports_a_refused_silence(amtool: Amtool) -> None:
    error = await amtool(
        "silence",
        "add",
        'alertname=~".*"',
        "--comment=everything",
        "--author=ops",
        "--duration=1h",
        ok=False,
    )
    assert "must not match the empty string" in error
