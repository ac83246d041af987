"""pudimd as the Alertmanager of the real Prometheus (Debian's 2.42), and as the webhook
receiver of the real Alertmanager (Debian's 0.25): alerts arrive through
``POST /api/v2/alerts`` and ``POST /api/v1/alertmanager/webhook``, are listed by
``GET /api/v2/alerts``, and pudimd's own webhook notifications reach a receiver as valid
version 4 payloads."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from pudimd.alerting.notification import parse_time
from tests.helpers import free_port, require_binary, run_server
from tests.integration.daemon_harness import DaemonProcess

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

CONFIG = """alerting:
  route: {{receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s}}
  receivers:
    - name: hook
      webhook_configs: [{{url: "http://127.0.0.1:{port}/hook"}}]
"""


def _problems(payload: Any) -> list[str]:
    """What makes ``payload`` other than Alertmanager's webhook payload, version 4 (every
    field Alertmanager sends, with its type)."""
    if not isinstance(payload, dict):
        return ["not an object"]
    problems: list[str] = []
    fields: dict[str, type | tuple[type, ...]] = {
        "version": str,
        "groupKey": str,
        "truncatedAlerts": int,
        "status": str,
        "receiver": str,
        "groupLabels": dict,
        "commonLabels": dict,
        "commonAnnotations": dict,
        "externalURL": str,
        "alerts": list,
    }
    for name, kind in fields.items():
        if not isinstance(payload.get(name), kind):
            problems.append(f"{name}: {payload.get(name)!r}")
    if payload.get("version") != "4":
        problems.append("version is not 4")
    if payload.get("status") not in ("firing", "resolved"):
        problems.append(f"status {payload.get('status')!r}")
    for index, alert in enumerate(payload.get("alerts") or [None]):
        if not isinstance(alert, dict):
            problems.append(f"alert {index} is not an object")
            continue
        if alert.get("status") not in ("firing", "resolved"):
            problems.append(f"alert {index}: status {alert.get('status')!r}")
        for name in ("labels", "annotations"):
            value = alert.get(name)
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                problems.append(f"alert {index}: {name} {value!r}")
        for name in ("startsAt", "endsAt"):
            try:
                parse_time(alert[name])
            except (KeyError, TypeError, ValueError):
                problems.append(f"alert {index}: {name} {alert.get(name)!r}")
        if not isinstance(alert.get("generatorURL"), str):
            problems.append(f"alert {index}: generatorURL {alert.get('generatorURL')!r}")
        if not re.fullmatch("[0-9a-f]{16}", str(alert.get("fingerprint"))):
            problems.append(f"alert {index}: fingerprint {alert.get('fingerprint')!r}")
    return problems


def test_the_collector_refuses_what_is_not_a_version_4_payload() -> None:
    alert = {
        "status": "firing",
        "labels": {"alertname": "X"},
        "annotations": {},
        "startsAt": "2026-11-23T16:30:54.981611083Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "9bfdf2fd9cf8c6a9",
    }
    payload = {
        "receiver": "hook",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {"alertname": "X"},
        "commonLabels": {"alertname": "X"},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "version": "4",
        "groupKey": '{}:{alertname="X"}',
        "truncatedAlerts": 0,
    }
    assert _problems(payload) == []
    assert _problems({**payload, "version": "3"}) == ["version is not 4"]
    assert _problems({**payload, "truncatedAlerts": None}) == ["truncatedAlerts: None"]
    assert _problems({**payload, "alerts": [{**alert, "endsAt": "never"}]}) == [
        "alert 0: endsAt 'never'"
    ]
    assert _problems({**payload, "alerts": [{**alert, "fingerprint": 1}]}) == [
        "alert 0: fingerprint 1"
    ]


class Collector:
    """A webhook receiver on loopback that keeps valid version 4 payloads and refuses
    (400, kept in ``invalid``) anything else."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.invalid: list[tuple[Any, list[str]]] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        problems = _problems(payload)
        if problems:
            self.invalid.append((payload, problems))
            return web.Response(status=400, text="; ".join(problems))
        self.payloads.append(payload)
        return web.Response()


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    collected = Collector()
    app = web.Application()
    app.router.add_post("/hook", collected.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    collected.port = runner.addresses[0][1]
    try:
        yield collected
    finally:
        await runner.cleanup()


@pytest.fixture
def daemon(tmp_path: Path, collector: Collector) -> Iterator[DaemonProcess]:
    config = tmp_path / "pudimd.yaml"
    config.write_text(CONFIG.format(port=collector.port))
    process = DaemonProcess(config, tmp_path / "state")
    try:
        process.wait_for_message("READY=1")
        yield process
    finally:
        process.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def _alerts(http: aiohttp.ClientSession, daemon: DaemonProcess) -> list[dict[str, Any]]:
    async with http.get(daemon.url + "/api/v2/alerts") as response:
        assert response.status == 200
        alerts: list[dict[str, Any]] = await response.json()
        return alerts


async def _eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll the coroutine function ``check`` until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await anyio.sleep(0.1)
    raise AssertionError(f"{what} within {timeout:g}s")


# -- Prometheus posts to pudimd ----------------------------------------------------------


@pytest.fixture
def prometheus(tmp_path: Path, daemon: DaemonProcess) -> Iterator[str]:
    """The real Prometheus, evaluating an always-firing rule every second and sending
    to pudimd; yields its URL."""
    binary = require_binary("prometheus")
    home = tmp_path / "prometheus"
    home.mkdir()
    (home / "rules.yml").write_text(
        """groups:
  - name: pudimd
    interval: 1s
    rules:
      - alert: AlwaysFiring
        expr: vector(1) > 0
        labels: {severity: page}
        annotations: {summary: "it always fires"}
"""
    )
    (home / "prometheus.yml").write_text(
        f"""global: {{evaluation_interval: 1s}}
rule_files: [{home / "rules.yml"}]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["127.0.0.1:{daemon.port}"]}}]
"""
    )
    port = free_port()
    argv = [
        binary,
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url=http://127.0.0.1:{port}/",
        # its first send can come before it found pudimd; retry in a second, not a minute
        "--rules.alert.resend-delay=1s",
    ]
    with run_server("prometheus", argv, port, within=30):
        yield f"http://127.0.0.1:{port}"


async def test_prometheus_alert_reaches_pudimd_and_its_receiver(
    prometheus: str, daemon: DaemonProcess, collector: Collector, http: aiohttp.ClientSession
) -> None:
    async def posted() -> list[dict[str, Any]]:
        return [
            a for a in await _alerts(http, daemon) if a["labels"]["alertname"] == "AlwaysFiring"
        ]

    [alert] = await _eventually(posted, "Prometheus' alert did not reach pudimd")
    assert alert["labels"] == {"alertname": "AlwaysFiring", "severity": "page"}
    assert alert["annotations"] == {"summary": "it always fires"}
    assert alert["generatorURL"].startswith(f"{prometheus}/graph?g0.expr=")
    assert alert["status"]["state"] == "active"
    assert alert["receivers"] == [{"name": "hook"}]
    # Prometheus sets endsAt a few evaluation intervals ahead and keeps re-sending
    ends = parse_time(alert["endsAt"])
    assert ends is not None and ends > datetime.now(UTC)

    async def delivered() -> list[dict[str, Any]]:
        return collector.payloads

    [payload, *_] = await _eventually(delivered, "no notification reached the receiver")
    assert collector.invalid == []
    assert payload["status"] == "firing"
    assert payload["receiver"] == "hook"
    assert payload["groupLabels"] == {"alertname": "AlwaysFiring"}
    assert payload["commonLabels"] == {"alertname": "AlwaysFiring", "severity": "page"}
    [sent] = payload["alerts"]
    assert sent["labels"] == alert["labels"]
    assert sent["fingerprint"] == alert["fingerprint"]
    assert sent["generatorURL"] == alert["generatorURL"]
    assert sent["endsAt"] == "0001-01-01T00:00:00Z"


# -- Alertmanager forwards to pudimd -----------------------------------------------------


@pytest.fixture
def alertmanager(tmp_path: Path, daemon: DaemonProcess) -> Iterator[str]:
    """The real Alertmanager, forwarding every alert to pudimd's webhook receiver; yields
    its URL."""
    binary = shutil.which("alertmanager") or require_binary("prometheus-alertmanager")
    home = tmp_path / "alertmanager"
    home.mkdir()
    (home / "alertmanager.yml").write_text(
        f"""route: {{receiver: pudimd, group_by: [alertname], group_wait: 0s, group_interval: 1s}}
receivers:
  - name: pudimd
    webhook_configs:
      - url: "{daemon.url}/api/v1/alertmanager/webhook"
        send_resolved: true
"""
    )
    port = free_port()
    argv = [
        binary,
        f"--config.file={home / 'alertmanager.yml'}",
        f"--storage.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with run_server("alertmanager", argv, port, within=30):
        yield f"http://127.0.0.1:{port}"


async def test_alertmanager_forwards_firing_and_resolved_alerts_to_pudimd(
    alertmanager: str, daemon: DaemonProcess, http: aiohttp.ClientSession
) -> None:
    amtool = [require_binary("amtool"), f"--alertmanager.url={alertmanager}", "alert", "add"]
    labels = ["Forwarded", "severity=page", "--annotation=summary=from upstream"]
    await anyio.run_process([*amtool, *labels])

    async def forwarded() -> list[dict[str, Any]]:
        return [a for a in await _alerts(http, daemon) if a["labels"]["alertname"] == "Forwarded"]

    [alert] = await _eventually(forwarded, "Alertmanager's notification did not reach pudimd")
    assert alert["labels"] == {"alertname": "Forwarded", "severity": "page"}
    assert alert["annotations"] == {"summary": "from upstream"}
    # firing without an end upstream: held for the firing timeout (4h15m), not 5 minutes
    ends = parse_time(alert["endsAt"])
    assert ends is not None and ends.timestamp() > time.time() + 4 * 3600

    # resolved upstream (an end in the past): Alertmanager sends it resolved
    past = datetime.fromtimestamp(time.time() - 1, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await anyio.run_process([*amtool, *labels, f"--end={past}"])

    async def resolved() -> bool:
        return not await forwarded()

    await _eventually(resolved, "the resolved alert is still listed")
