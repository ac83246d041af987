"""``GET /api/v1/status`` against the daemon running in this process."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from pudimd import __version__
from pudimd.alerting.alert import PostableAlert
from pudimd.api.status import quantiles
from tests.unit.events_helpers import running

pytestmark = pytest.mark.anyio

CONFIG = (
    "targets:\n"
    "  - {name: web, probe: echo, target: a.example, interval: 200ms}\n"
    "  - {name: bad, probe: broken, target: x, interval: 200ms}\n"
)


def test_quantiles_are_bucket_bounds() -> None:
    assert quantiles([]) == {"checks": 0, "p50": None, "p99": None, "max": None}
    buckets = [(0.01, 90.0), (0.1, 99.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantiles(buckets) == {"checks": 100, "p50": 0.01, "p99": 0.1, "max": 1.0}
    late = [(0.01, 0.0), (1.0, 0.0), (float("inf"), 4.0)]
    assert quantiles(late) == {"checks": 4, "p50": None, "p99": None, "max": None}


async def test_status_reports_the_daemon(tmp_path: Path, migrated: Path) -> None:
    async with running(tmp_path, migrated, CONFIG) as run:
        daemon = run.daemon
        with anyio.fail_after(10):
            while daemon.metrics.plugin_errors.labels("broken", "check")._value.get() < 2:
                await anyio.sleep(0.05)
        assert daemon.alerting is not None
        await daemon.alerting.post([PostableAlert(labels={"alertname": "Down"})])
        status = await run.get("/status")
        assert status["version"] == __version__ and status["ready"] is True
        assert 0 <= status["uptime_seconds"] < 60
        assert status["started_at"].endswith("Z")
        config = status["config"]
        assert config["version"] == 1 and config["file"] == str(daemon.config_path)
        last = config["last_reload"]
        assert last["ok"] is True and last["source"] == "start" and last["version"] == 1
        assert status["targets"] == 2
        plugins = {p["name"]: p for p in status["plugins"]}
        assert plugins["echo"]["types"] == {"probe": ["echo"]} and plugins["echo"]["errors"] == 0
        assert plugins["echo"]["error"] is None and plugins["echo"]["disabled"] is False
        assert plugins["broken"]["errors"] >= 2
        assert plugins["broken"]["errors_by_hook"]["check"] == plugins["broken"]["errors"]
        lateness = status["scheduler"]["lateness"]
        assert lateness["since_start"]["checks"] >= 2
        assert lateness["since_start"]["p99"] is not None and lateness["since_start"]["p99"] < 5
        assert lateness["recent"] is None, "no snapshot a minute old yet"
        database = status["database"]
        assert database["ok"] is True and database["dialect"] == "sqlite"
        assert 0 < database["round_trip_seconds"] < 2 and database["error"] is None
        assert database["writer_pending"] >= 0 and database["writer_dropped"] == 0
        alerting = status["alerting"]
        assert alerting["firing"] == 1 and alerting["alerts"] == 1
        assert alerting["outbox_depth"] == 0
        assert status["events"]["last_id"] >= daemon.events.first_id

        daemon.config_path.write_text("targets: {")
        before = time.time()
        assert await daemon.reload("http") is not None
        failed = (await run.get("/status"))["config"]
        assert failed["version"] == 1, "the running config stays"
        assert failed["last_reload"]["ok"] is False and failed["last_reload"]["source"] == "http"
        assert failed["last_reload"]["error"] and failed["last_reload"]["version"] is None
        assert _after(failed["last_reload"]["at"], before)


def _after(text: str, moment: float) -> bool:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() >= moment - 0.002
