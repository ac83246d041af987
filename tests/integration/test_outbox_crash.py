"""The outbox against a real crash: ``kill -9`` between enqueue and delivery, a restart,
and the receiver still gets the notification with the same idempotency key."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import DaemonProcess

pytestmark = pytest.mark.integration


class Receiver:
    """A webhook receiver on loopback that answers 503 while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.down:
                    receiver.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                key = self.headers["X-Pudimd-Idempotency-Key"]
                receiver.received.append((key, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def write_config(path: Path, port: int) -> None:
    path.write_text(
        f"""
alerting:
  route: {{receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s}}
  receivers:
    - name: hook
      webhook_configs: [{{url: "http://127.0.0.1:{port}/hook"}}]
  outbox: {{backoff_initial: 200ms, backoff_max: 500ms}}
"""
    )


def post_alert(daemon: DaemonProcess, name: str) -> None:
    body = json.dumps([{"labels": {"alertname": name}}]).encode()
    request = urllib.request.Request(
        daemon.url + "/api/v2/alerts",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def stored_keys(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT idempotency_key, state FROM notifications ORDER BY id"))


def wait(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_kill_9_between_enqueue_and_delivery_loses_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    config, state = tmp_path / "pudimd.yaml", tmp_path / "state"
    write_config(config, receiver.port)
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_for_message("READY=1")
        post_alert(daemon, "DiskFull")
        wait(lambda: receiver.refused >= 1)  # enqueued, and its first attempt failed
        daemon.signal(signal.SIGKILL)
        daemon.proc.wait(10)
    finally:
        daemon.stop()
    keys = stored_keys(state / "pudimd.db")
    assert [state for _, state in keys] == ["pending"]
    receiver.down = False
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_for_message("READY=1")
        wait(lambda: len(receiver.received) >= 1)
        wait(lambda: stored_keys(state / "pudimd.db")[0][1] == "delivered")
    finally:
        assert daemon.stop() == 0
    assert [key for key, _ in receiver.received] == [keys[0][0]]
    payload = receiver.received[0][1]
    assert payload["version"] == "4" and payload["groupLabels"] == {"alertname": "DiskFull"}


def test_a_receiver_down_for_a_while_gets_everything_when_back(
    tmp_path: Path, receiver: Receiver
) -> None:
    config, state = tmp_path / "pudimd.yaml", tmp_path / "state"
    write_config(config, receiver.port)
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_for_message("READY=1")
        for name in ("A", "B", "C"):
            post_alert(daemon, name)
        wait(lambda: receiver.refused >= 6)
        assert daemon.metric("pudimd_notification_queue_depth") == 3
        receiver.down = False
        wait(lambda: len(receiver.received) >= 3)
        daemon.wait_metric("pudimd_notification_queue_depth", lambda v: v == 0)
        delivered = daemon.metric(
            "pudimd_notifications_total",
            receiver="hook",
            integration="webhook/0",
            outcome="delivered",
        )
    finally:
        assert daemon.stop() == 0
    assert sorted(p["groupLabels"]["alertname"] for _, p in receiver.received) == ["A", "B", "C"]
    assert delivered == 3
