"""The Alertmanager webhook receiver: payloads as Alertmanager 0.25 sends them become
posted alerts; malformed ones are refused whole.

Parsing tests call :func:`parse_payload`; the HTTP tests serve the route in front of the
real alerting engine (SQLite in a temporary directory)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pudimd.alerting.alert import PostableAlert
from pudimd.alerting.config import AlertingBase, ReceiverBase
from pudimd.alerting.engine import Alerting
from pudimd.alerting.routing import RouteConfig
from pudimd.api._amjson import BadRequest
from pudimd.api.amwebhook import FIRING_TIMEOUT, PATH, parse_payload, webhook_routes
from tests.unit.alerting_fixtures import migrated_database, running_engine

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

pytestmark = pytest.mark.anyio

Client = TestClient[web.Request, web.Application]

# What Alertmanager 0.25 posted (captured from the Debian package): a firing alert has
# the zero time as its end, a resolved one its real end.
FIRING = json.loads(
    """{"receiver":"hook","status":"firing","alerts":[{"status":"firing","labels":
    {"alertname":"Fwd","severity":"page"},"annotations":{"summary":"hi"},"startsAt":
    "2026-11-23T16:30:54.981611083Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":
    "http://prometheus:9090/graph?g0.expr=up","fingerprint":"9bfdf2fd9cf8c6a9"}],
    "groupLabels":{"alertname":"Fwd"},"commonLabels":{"alertname":"Fwd","severity":"page"},
    "commonAnnotations":{"summary":"hi"},"externalURL":"http://vm:19093","version":"4",
    "groupKey":"{}:{alertname=\\"Fwd\\"}","truncatedAlerts":0}"""
)
RESOLVED = json.loads(
    """{"receiver":"hook","status":"resolved","alerts":[{"status":"resolved","labels":
    {"alertname":"Fwd","severity":"page"},"annotations":{"summary":"hi"},"startsAt":
    "2026-11-23T16:30:54.981611083Z","endsAt":"2026-11-23T16:30:55Z","generatorURL":"",
    "fingerprint":"9bfdf2fd9cf8c6a9"}],"groupLabels":{"alertname":"Fwd"},"commonLabels":
    {"alertname":"Fwd","severity":"page"},"commonAnnotations":{"summary":"hi"},
    "externalURL":"http://vm:19093","version":"4","groupKey":"{}:{alertname=\\"Fwd\\"}",
    "truncatedAlerts":0}"""
)
STARTS = 1795451454.981611
NOW = 1795451460.0


def _with_alert(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    changed["alerts"][0].update(changes)
    return changed


# -- parsing -----------------------------------------------------------------------------


def test_firing_alert_without_end_stays_firing_for_the_firing_timeout() -> None:
    assert parse_payload(FIRING, NOW, FIRING_TIMEOUT) == [
        PostableAlert(
            labels={"alertname": "Fwd", "severity": "page"},
            annotations={"summary": "hi"},
            starts_at=STARTS,
            ends_at=NOW + FIRING_TIMEOUT,
            generator_url="http://prometheus:9090/graph?g0.expr=up",
        )
    ]


def test_firing_alert_without_end_can_be_left_to_the_resolve_timeout() -> None:
    [alert] = parse_payload(FIRING, NOW, None)
    assert alert.ends_at is None


def test_firing_alert_keeps_an_end_in_the_future() -> None:
    [alert] = parse_payload(_with_alert(FIRING, endsAt="2026-11-23T17:00:00Z"), NOW, 60)
    assert alert.ends_at == 1795453200.0


def test_firing_alert_with_an_end_in_the_past_stays_firing() -> None:
    [alert] = parse_payload(_with_alert(FIRING, endsAt="2026-11-23T16:30:55Z"), NOW, 60)
    assert alert.ends_at == NOW + 60


def test_resolved_alert_ends_at_its_end() -> None:
    [alert] = parse_payload(RESOLVED, NOW, FIRING_TIMEOUT)
    assert (alert.starts_at, alert.ends_at) == (STARTS, 1795451455.0)
    assert alert.labels == {"alertname": "Fwd", "severity": "page"}
    assert alert.generator_url == ""


def test_resolved_alert_without_end_ends_now() -> None:
    [alert] = parse_payload(_with_alert(RESOLVED, endsAt="0001-01-01T00:00:00Z"), NOW, 60)
    assert alert.ends_at == NOW


def test_resolved_alert_ending_before_its_start_ends_at_its_start() -> None:
    [alert] = parse_payload(_with_alert(RESOLVED, endsAt="2026-11-23T16:00:00Z"), NOW, 60)
    assert alert.ends_at == STARTS


def test_payload_without_alerts_posts_nothing() -> None:
    assert parse_payload({**FIRING, "alerts": []}, NOW, 60) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([FIRING], "expected Alertmanager's webhook payload (a JSON object)"),
        ({**FIRING, "version": 4}, 'unsupported webhook payload version 4 (expected "4")'),
        ({**FIRING, "version": "3"}, "unsupported webhook payload version '3'"),
        ({k: v for k, v in FIRING.items() if k != "version"}, "version None"),
        ({**FIRING, "alerts": None}, "alerts must be a list"),
        ({**FIRING, "alerts": ["x"]}, "alert 0: expected an object"),
        (_with_alert(FIRING, status="pending"), 'alert 0: status must be "firing" or'),
        (_with_alert(FIRING, labels=None), "alert 0: labels is required"),
        (_with_alert(FIRING, labels={"alertname": ""}), "alert 0: at least one label pair"),
        (_with_alert(FIRING, labels={"a.b": "c"}), "alert 0: invalid label name 'a.b'"),
        (_with_alert(FIRING, annotations={"s": 1}), "alert 0: the value of annotations.s"),
        (_with_alert(FIRING, startsAt="0001-01-01T00:00:00Z"), "alert 0: startsAt is required"),
        (_with_alert(FIRING, startsAt="now"), "alert 0: startsAt: invalid RFC 3339 time"),
        (_with_alert(FIRING, endsAt=0), "alert 0: endsAt must be an RFC 3339 time string"),
        (_with_alert(FIRING, generatorURL=[]), "alert 0: generatorURL must be a string"),
    ],
)
def test_malformed_payload_is_refused_with_the_reason(payload: Any, reason: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_payload(payload, NOW, 60)
    assert reason in str(raised.value)


def test_bad_alert_is_named_by_its_index() -> None:
    payload = copy.deepcopy(FIRING)
    payload["alerts"].append({**payload["alerts"][0], "labels": {}})
    with pytest.raises(BadRequest, match=r"^alert 1: at least one label pair required$"):
        parse_payload(payload, NOW, 60)


# -- over HTTP ---------------------------------------------------------------------------


CONFIG = AlertingBase(route=RouteConfig(receiver="hook"), receivers=[ReceiverBase(name="hook")])


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_database(tmp_path_factory.mktemp("db"))


@pytest.fixture
async def engine(migrated_db: Path, tmp_path: Path) -> AsyncIterator[Alerting]:
    async with running_engine(migrated_db, tmp_path, CONFIG) as alerting:
        yield alerting


@pytest.fixture
async def client(engine: Alerting) -> AsyncIterator[Client]:
    app = web.Application()
    app.add_routes(webhook_routes(cast("Daemon", SimpleNamespace(alerting=engine))))
    async with TestClient(TestServer(app)) as served:
        yield served


def _now(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with its alert started a minute ago (and, resolved, ended just now)."""
    now = time.time()
    changes = {"startsAt": datetime.fromtimestamp(now - 60, UTC).isoformat()}
    if payload["status"] == "resolved":
        changes["endsAt"] = datetime.fromtimestamp(now - 1, UTC).isoformat()
    return _with_alert(payload, **changes)


async def test_forwarded_firing_alert_fires_until_the_firing_timeout(
    client: Client, engine: Alerting
) -> None:
    payload = _now(FIRING)
    before = time.time()
    response = await client.post(PATH, json=payload)
    assert response.status == 200
    [view] = engine.alerts()
    alert = view.alert
    assert alert.labels == {"alertname": "Fwd", "severity": "page"}
    assert alert.annotations == {"summary": "hi"}
    assert alert.generator_url == "http://prometheus:9090/graph?g0.expr=up"
    assert alert.starts_at == pytest.approx(before - 60, abs=1)
    assert before + FIRING_TIMEOUT <= alert.ends_at <= time.time() + FIRING_TIMEOUT
    assert view.receivers == ["hook"]


async def test_forwarded_resolved_alert_resolves_the_firing_one(
    client: Client, engine: Alerting
) -> None:
    assert (await client.post(PATH, json=_now(FIRING))).status == 200
    assert (await client.post(PATH, json=_now(RESOLVED))).status == 200
    assert engine.alerts() == []


async def test_webhook_refuses_a_malformed_payload_as_text(
    client: Client, engine: Alerting
) -> None:
    payload = _now(FIRING)
    payload["alerts"].append({**payload["alerts"][0], "labels": {"alertname": "Other"}})
    payload["alerts"].append({**payload["alerts"][0], "status": "unknown"})
    response = await client.post(PATH, json=payload)
    assert response.status == 400
    assert response.content_type == "text/plain"
    assert await response.text() == (
        'alert 2: status must be "firing" or "resolved", got \'unknown\'\n'
    )
    response = await client.post(PATH, data=b"{", headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.text()).startswith("the request body is not valid JSON")
    assert engine.alerts() == []
    assert engine.metrics.registry.get_sample_value("pudimd_alerts_invalid_total") == 2


async def test_webhook_answers_only_post(client: Client) -> None:
    response = await client.get(PATH)
    assert response.status == 405
