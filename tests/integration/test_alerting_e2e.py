"""The alerting path end to end, through the real daemon: a real ``pudimd run`` checks
loopback TCP ports, its rules turn failed checks into alerts, and its webhook notifier posts
Alertmanager's version 4 payloads to a real HTTP receiver (aiohttp, in a thread of the
test).  Covered: fire then resolve (``send_resolved``), a route muted by a time interval
(next to an unmuted one), and ``depends_on`` (a child's alert held back while its parent is
down, released when the parent recovers)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from pudimd.alerting.notification import parse_time
from tests.helpers import free_port
from tests.integration.daemon_harness import DaemonProcess

pytestmark = pytest.mark.integration

T = TypeVar("T")

INTERVAL = "100ms"
"""Check interval of every target: a failure_threshold of 2 trips within ~0.2 s."""
GROUP_INTERVAL = 0.2
"""Seconds between two notifications of a changed group."""
ZERO_TIME = "0001-01-01T00:00:00Z"
"""``endsAt`` of a firing alert in a webhook payload (Go's zero time, as Alertmanager)."""


# -- the webhook receiver ----------------------------------------------------------------


class WebhookReceiver:
    """An aiohttp server on loopback, in its own thread and event loop, recording every
    JSON body POSTed to ``/<name>`` (the name tells receivers apart)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[tuple[str, dict[str, Any]]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="webhook", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port: int = self._runner.addresses[0][1]
        return port

    async def _handle(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        with self._lock:
            self._received.append((request.match_info["name"], payload))
        return web.Response()

    def payloads(self, name: str) -> list[dict[str, Any]]:
        """What was POSTed to ``/<name>``, oldest first."""
        with self._lock:
            return [payload for path, payload in self._received if path == name]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


class Listener:
    """Something listening on 127.0.0.1:``port`` (accepting and closing connections in a
    thread), so that a ``tcp`` check of it succeeds."""

    def __init__(self, port: int) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"listener-{port}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def listeners() -> Iterator[Callable[[int], Listener]]:
    started: list[Listener] = []

    def listen(port: int) -> Listener:
        listener = Listener(port)
        started.append(listener)
        return listener

    try:
        yield listen
    finally:
        for listener in started:
            listener.close()


# -- the daemon --------------------------------------------------------------------------


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], DaemonProcess]]:
    """Start ``pudimd run`` with a config (as a dict: written as JSON, which is YAML) and
    wait until it is ready; stopped at the end of the test, which fails if it logged an
    error or did not stop cleanly."""
    started: list[DaemonProcess] = []

    def start(config: dict[str, Any]) -> DaemonProcess:
        path = tmp_path / "pudimd.yaml"
        path.write_text(json.dumps(config, indent=2))
        daemon = DaemonProcess(path, tmp_path / "state")
        started.append(daemon)
        daemon.wait_for_message("READY=1")
        return daemon

    try:
        yield start
    finally:
        problems = []
        for daemon in started:
            code = daemon.stop()
            if code != 0 or "Traceback" in daemon.log or "[error" in daemon.log:
                problems.append(f"daemon exited with {code}:\n{daemon.log}")
        assert not problems, "\n".join(problems)


def tcp_target(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "probe": "tcp",
        "target": f"127.0.0.1:{port}",
        "interval": INTERVAL,
        **extra,
    }


TARGET_DOWN = {
    "name": "TargetDown",
    "failure_threshold": 2,
    "labels": {"severity": "page"},
    "annotations": {"summary": "{{ target }} is down", "description": "{{ result.message }}"},
}


def route(receiver: str, **extra: Any) -> dict[str, Any]:
    return {
        "receiver": receiver,
        "group_by": ["alertname", "target"],
        "group_wait": "0s",
        "group_interval": f"{int(GROUP_INTERVAL * 1000)}ms",
        "repeat_interval": "1h",
        **extra,
    }


def hook(name: str, webhook: WebhookReceiver) -> dict[str, Any]:
    return {"name": name, "webhook_configs": [{"url": webhook.url(name), "send_resolved": True}]}


# -- polling -----------------------------------------------------------------------------


def eventually(
    check: Callable[[], T | None], what: str, daemon: DaemonProcess, timeout: float = 10.0
) -> T:
    """Poll ``check`` until it returns something true; fail with the daemon's log if it
    does not within ``timeout`` seconds (or the daemon exits)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if daemon.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {daemon.proc.returncode}\n{daemon.log}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g}s\n{daemon.log}")
        time.sleep(0.05)


def api_alerts(daemon: DaemonProcess) -> list[dict[str, Any]]:
    status, body = daemon.get("/api/v2/alerts")
    assert status == 200, body
    alerts: list[dict[str, Any]] = json.loads(body)
    return alerts


def api_alert(daemon: DaemonProcess, target: str) -> dict[str, Any] | None:
    """The TargetDown alert of ``target`` as ``GET /api/v2/alerts`` lists it, if any."""
    for alert in api_alerts(daemon):
        if (
            alert["labels"].get("alertname") == "TargetDown"
            and alert["labels"].get("target") == target
        ):
            return alert
    return None


def sent(payloads: list[dict[str, Any]], target: str, status: str) -> list[dict[str, Any]]:
    """The alerts of ``target`` with ``status`` in ``payloads``, in order."""
    return [
        alert
        for payload in payloads
        for alert in payload["alerts"]
        if alert["labels"].get("target") == target and alert["status"] == status
    ]


def assert_v4(payload: dict[str, Any], receiver: str) -> None:
    """``payload`` is Alertmanager's webhook payload, version 4, for ``receiver``."""
    assert payload["version"] == "4"
    assert payload["receiver"] == receiver
    assert payload["status"] in ("firing", "resolved")
    assert isinstance(payload["groupKey"], str) and payload["groupKey"]
    assert payload["truncatedAlerts"] == 0
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        assert isinstance(payload[key], dict), key
    assert isinstance(payload["externalURL"], str)
    assert payload["alerts"]
    for alert in payload["alerts"]:
        assert set(alert) >= {
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        }
        assert parse_time(alert["startsAt"]) is not None


# -- 1. fire, then resolve ---------------------------------------------------------------


def test_failing_target_fires_then_resolves_through_the_webhook(
    start_daemon: Callable[[dict[str, Any]], DaemonProcess],
    webhook: WebhookReceiver,
    listeners: Callable[[int], Listener],
) -> None:
    port = free_port()  # nobody listens yet: the check fails (connection refused)
    daemon = start_daemon(
        {
            "targets": [tcp_target("api-db", port, labels={"team": "storage", "tier": "db"})],
            "alerting": {
                "rules": [TARGET_DOWN],
                "route": route("oncall"),
                "receivers": [hook("oncall", webhook)],
            },
        }
    )

    def fired() -> list[dict[str, Any]]:
        return sent(webhook.payloads("oncall"), "api-db", "firing")

    [alert] = eventually(fired, "no firing notification", daemon)
    [payload] = webhook.payloads("oncall")
    assert_v4(payload, "oncall")
    assert payload["status"] == "firing"
    assert payload["groupLabels"] == {"alertname": "TargetDown", "target": "api-db"}
    labels = {
        "alertname": "TargetDown",
        "target": "api-db",
        "probe": "tcp",
        "team": "storage",
        "tier": "db",
        "severity": "page",
    }
    assert alert["labels"] == labels
    assert payload["commonLabels"] == labels
    assert alert["annotations"] == {
        "summary": "api-db is down",
        "description": "connection refused",
    }
    assert alert["endsAt"] == ZERO_TIME
    starts = parse_time(alert["startsAt"])
    assert starts is not None and starts <= datetime.now(UTC)
    # the store lists the same alert, active (nothing mutes it), routed to the receiver
    listed = api_alert(daemon, "api-db")
    assert listed is not None
    assert listed["fingerprint"] == alert["fingerprint"]
    assert listed["status"]["state"] == "active"
    assert listed["receivers"] == [{"name": "oncall"}]

    listeners(port)  # the target comes back

    def resolved() -> list[dict[str, Any]]:
        return sent(webhook.payloads("oncall"), "api-db", "resolved")

    [gone] = eventually(resolved, "no resolved notification", daemon)
    last = webhook.payloads("oncall")[-1]
    assert_v4(last, "oncall")
    assert last["status"] == "resolved"
    assert last["alerts"] == [gone]
    assert gone["fingerprint"] == alert["fingerprint"]
    assert gone["labels"] == labels
    assert gone["startsAt"] == alert["startsAt"]
    ends = parse_time(gone["endsAt"])
    assert ends is not None and starts < ends <= datetime.now(UTC)
    # one firing and one resolved notification: the alert was not notified twice
    assert [p["status"] for p in webhook.payloads("oncall")] == ["firing", "resolved"]
    eventually(lambda: api_alert(daemon, "api-db") is None, "the alert is still listed", daemon)


# -- 2. a route muted by a time interval -------------------------------------------------


def test_route_muted_by_a_time_interval_sends_nothing(
    start_daemon: Callable[[dict[str, Any]], DaemonProcess], webhook: WebhookReceiver
) -> None:
    daemon = start_daemon(
        {
            "targets": [tcp_target("batch", free_port())],
            "alerting": {
                "rules": [TARGET_DOWN],
                # every day of the week, all day: it covers now, whenever the test runs
                "time_intervals": [
                    {"name": "always", "time_intervals": [{"weekdays": ["sunday:saturday"]}]}
                ],
                "route": route(
                    "control",
                    routes=[
                        {"receiver": "muted", "mute_time_intervals": ["always"], "continue": True},
                        {"receiver": "control"},
                    ],
                ),
                "receivers": [hook("muted", webhook), hook("control", webhook)],
            },
        }
    )

    # the positive control: the unmuted route notifies the same alert
    def fired() -> list[dict[str, Any]]:
        return sent(webhook.payloads("control"), "batch", "firing")

    [alert] = eventually(fired, "no notification on the unmuted route", daemon)
    assert_v4(webhook.payloads("control")[0], "control")
    control_at = time.monotonic()
    listed = api_alert(daemon, "batch")
    assert listed is not None
    assert listed["fingerprint"] == alert["fingerprint"]
    assert listed["status"]["mutedBy"] == ["always"]
    assert listed["status"]["silencedBy"] == []
    assert listed["status"]["state"] == "suppressed"
    assert sorted(r["name"] for r in listed["receivers"]) == ["control", "muted"]
    # /metrics counts it the way the API shows it
    assert daemon.metric("pudimd_alerts", state="suppressed") == 1
    assert daemon.metric("pudimd_alerts", state="active") == 0

    # both groups were due at the same time (group_wait 0s): give the muted one a few more
    # group intervals, while the alert keeps firing
    while time.monotonic() < control_at + 5 * GROUP_INTERVAL:
        time.sleep(GROUP_INTERVAL / 2)
    assert webhook.payloads("muted") == []
    assert api_alert(daemon, "batch") is not None


# -- 3. depends_on -----------------------------------------------------------------------


def test_child_alert_is_held_while_its_parent_is_down(
    start_daemon: Callable[[dict[str, Any]], DaemonProcess],
    webhook: WebhookReceiver,
    listeners: Callable[[int], Listener],
) -> None:
    parent_port = free_port()
    group_wait = 1.0
    daemon = start_daemon(
        {
            "targets": [
                tcp_target("switch", parent_port),
                # both are down from the start; the child is checked half as often, so the
                # parent's alert normally fires first; either way group_wait leaves the
                # parent's alert time to block the child's before anything is sent
                tcp_target("web", free_port(), interval="200ms", depends_on=["switch"]),
            ],
            "alerting": {
                "rules": [TARGET_DOWN],
                "route": route("oncall", group_wait=f"{int(group_wait * 1000)}ms"),
                "receivers": [hook("oncall", webhook)],
            },
        }
    )

    def blocked() -> dict[str, Any] | None:
        alert = api_alert(daemon, "web")
        return alert if alert is not None and alert["status"].get("blockedBy") else None

    child = eventually(blocked, "the child's alert is not listed as blocked", daemon)
    assert child["status"]["blockedBy"] == ["switch"]
    assert child["status"]["state"] == "suppressed"
    parent = api_alert(daemon, "switch")
    assert parent is not None
    assert "blockedBy" not in parent["status"]
    assert parent["status"]["state"] == "active"

    def parent_fired() -> list[dict[str, Any]]:
        return sent(webhook.payloads("oncall"), "switch", "firing")

    eventually(parent_fired, "no notification of the parent", daemon)
    # the child's group is due group_wait after its alert arrived: wait that and a few group
    # intervals more; its alert must still be held back
    child_starts = parse_time(child["startsAt"])
    assert child_starts is not None
    quiet_until = child_starts.timestamp() + group_wait + 3 * GROUP_INTERVAL
    while time.time() < quiet_until:
        time.sleep(GROUP_INTERVAL / 2)
    assert sent(webhook.payloads("oncall"), "web", "firing") == []
    held = api_alert(daemon, "web")
    assert held is not None and held["status"].get("blockedBy") == ["switch"]

    listeners(parent_port)  # the parent recovers; the child stays down

    def child_fired() -> list[dict[str, Any]]:
        return sent(webhook.payloads("oncall"), "web", "firing")

    [released] = eventually(child_fired, "the child's alert was not released", daemon)
    assert released["labels"]["alertname"] == "TargetDown"
    assert released["fingerprint"] == child["fingerprint"]
    assert released["annotations"] == {
        "summary": "web is down",
        "description": "connection refused",
    }
    eventually(
        lambda: sent(webhook.payloads("oncall"), "switch", "resolved"),
        "no resolved notification of the parent",
        daemon,
    )
    for payload in webhook.payloads("oncall"):
        assert_v4(payload, "oncall")
    now_listed = api_alert(daemon, "web")
    assert now_listed is not None
    assert "blockedBy" not in now_listed["status"]
    assert now_listed["status"]["state"] == "active"
    assert api_alert(daemon, "switch") is None


def test_a_child_failing_first_has_its_parent_checked_at_once_and_does_not_page(
    start_daemon: Callable[[dict[str, Any]], DaemonProcess], webhook: WebhookReceiver
) -> None:
    daemon = start_daemon(
        {
            "targets": [
                # the parent's next scheduled check is somewhere in the coming hour: only
                # the check the child's alert asks for can tell that it is down
                tcp_target("switch", free_port(), interval="1h"),
                tcp_target("web", free_port(), depends_on=["switch"]),
            ],
            "alerting": {
                "rules": [TARGET_DOWN],
                "route": route("oncall"),  # group_wait 0s: nothing waits for the parent
                "receivers": [hook("oncall", webhook)],
            },
        }
    )

    def blocked() -> dict[str, Any] | None:
        alert = api_alert(daemon, "web")
        return alert if alert is not None and alert["status"].get("blockedBy") else None

    child = eventually(blocked, "the child's alert is not listed as held", daemon)
    assert child["status"]["blockedBy"] == ["switch"]
    checks = daemon.wait_metric(
        "pudimd_target_checks_total", lambda v: v >= 1, timeout=5, target="switch", probe="tcp"
    )
    assert checks == 1  # the check asked for, not the hourly one
    assert daemon.metric("pudimd_target_up", target="switch", probe="tcp") == 0
    # the parent is down now: the child stays held, and nothing about it is sent
    quiet_until = time.monotonic() + 5 * GROUP_INTERVAL
    while time.monotonic() < quiet_until:
        time.sleep(GROUP_INTERVAL / 2)
    assert sent(webhook.payloads("oncall"), "web", "firing") == []
    held = api_alert(daemon, "web")
    assert held is not None and held["status"].get("blockedBy") == ["switch"]
