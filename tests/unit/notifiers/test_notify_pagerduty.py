"""The ``pagerduty`` notifier against a fake PagerDuty Events API v2 on loopback that
validates every event and follows each incident's state."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pudimd_plugins.notifiers.pagerduty import (
    PagerdutyNotifier,
    PagerdutySettings,
    pudimd_notifier_types,
)
from pydantic import ValidationError

from pudimd.alerting.notification import DeliveryError, Notification
from tests.unit.notifiers.notifier_helpers import sample_notification
from tests.unit.notifiers.saas_fakes import (
    PAGERDUTY_EVENT_LIMIT,
    pagerduty_errors,
    pagerduty_fake,
    post_raw,
)

pytestmark = pytest.mark.anyio

KEY = "0123456789abcdef0123456789abcdef"
GROUP_HASH = hashlib.sha256(b'{}:{alertname="HighLatency"}').hexdigest()


async def send(notification: Notification, url: str, **settings: Any) -> str | None:
    settings.setdefault("routing_key", KEY)
    notifier = PagerdutyNotifier(PagerdutySettings.model_validate({"url": url, **settings}))
    try:
        return await notifier.send(notification, 5)
    finally:
        await notifier.aclose()


def test_plugin_registers_pagerduty_with_alertmanager_names() -> None:
    assert pudimd_notifier_types() == [PagerdutyNotifier]
    assert PagerdutyNotifier.type == "pagerduty"
    assert PagerdutyNotifier.config_key == "pagerduty_configs"
    assert PagerdutyNotifier.global_defaults == {"pagerduty_url": "url"}
    settings = PagerdutySettings.model_validate({"routing_key": KEY})
    assert settings.send_resolved is True
    assert settings.url == "https://events.pagerduty.com/v2/enqueue"


def test_alertmanager_pagerduty_config_validates_unchanged() -> None:
    settings = PagerdutySettings.model_validate(
        {
            "send_resolved": True,
            "routing_key": KEY,
            "url": "https://events.eu.pagerduty.com/v2/enqueue",
            "client": "Alertmanager",
            "client_url": "{{ external_url }}",
            "description": "{{ common_annotations.summary }}",
            "severity": "{{ common_labels.severity }}",
            "source": "{{ common_labels.instance }}",
            "class": "latency",
            "component": "web",
            "group": "prod",
            "details": {"runbook": "{{ common_annotations.runbook_url }}"},
            "images": [{"src": "https://example.com/g.png", "href": "https://e.x", "alt": "g"}],
            "links": [{"href": "https://example.com/runbook", "text": "Runbook"}],
            "http_config": {"proxy_url": "http://proxy.example:3128"},
        }
    )
    assert settings.class_ == "latency" and settings.links[0].text == "Runbook"


def test_routing_key_is_read_from_routing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "pd-key"
    path.write_text(KEY + "\n")
    settings = PagerdutySettings.model_validate({"routing_key_file": str(path)})
    assert settings.routing_key is not None and settings.routing_key.get_secret_value() == KEY


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({}, "one of routing_key or routing_key_file"),
        ({"service_key": "s" * 32}, "service_key .*Events API v1.* is not supported"),
        ({"service_key_file": "/run/pd"}, "service_key_file .* is not supported"),
        ({"routing_key": KEY, "url": "events.pagerduty.com"}, "absolute http"),
    ],
)
def test_invalid_settings_are_config_errors(entry: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        PagerdutySettings.model_validate(entry)


async def test_firing_group_triggers_an_incident() -> None:
    notification = sample_notification(
        firing=2, common_labels={"alertname": "X", "severity": "warning"}
    )
    async with pagerduty_fake() as fake:
        answer = await send(notification, fake.url + "/v2/enqueue", component="web")
    assert answer == GROUP_HASH
    event = fake.accepted[0]
    assert event["routing_key"] == KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == GROUP_HASH
    assert event["client"] == "pudimd"
    assert event["client_url"] == "http://pudimd.example:9093"
    payload = event["payload"]
    assert payload["summary"] == "[FIRING:2] X"
    assert payload["source"] == "pudimd"
    assert payload["severity"] == "warning"
    assert payload["timestamp"] == "2026-11-23T10:00:00.000Z"
    assert payload["component"] == "web"
    details = payload["custom_details"]
    assert details["num_firing"] == "2" and details["num_resolved"] == "0"
    assert " - instance = web-1\n" in details["firing"]
    assert "Source: http://prometheus.example/graph?g0.expr=latency&i=1" in details["firing"]
    assert fake.incidents == {GROUP_HASH: "triggered"}


async def test_trigger_acknowledge_and_resolve_meet_on_one_incident() -> None:
    async with pagerduty_fake() as fake:
        url = fake.url + "/v2/enqueue"
        await send(sample_notification(), url)
        await send(sample_notification(acknowledged=True), url)
        assert fake.incidents == {GROUP_HASH: "acknowledged"}
        await send(sample_notification(firing=0, resolved=1), url)
    assert [e["event_action"] for e in fake.accepted] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in fake.accepted} == {GROUP_HASH}
    assert fake.incidents == {GROUP_HASH: "resolved"}


async def test_resolved_event_says_resolved() -> None:
    async with pagerduty_fake() as fake:
        await send(sample_notification(firing=0, resolved=2), fake.url + "/v2/enqueue")
    event = fake.accepted[0]
    assert event["event_action"] == "resolve"
    assert event["payload"]["summary"] == "[RESOLVED] HighLatency"
    assert event["payload"]["custom_details"]["num_resolved"] == "2"


async def test_configured_details_links_and_images_are_added() -> None:
    async with pagerduty_fake() as fake:
        await send(
            sample_notification(),
            fake.url + "/v2/enqueue",
            details={"num_firing": "many", "env": "{{ common_labels.env }}"},
            links=[{"href": "{{ external_url }}", "text": "pudimd"}, {"href": ""}],
            images=[{"src": "https://example.com/g.png", "alt": "graph"}, {"src": ""}],
        )
    event = fake.accepted[0]
    details = event["payload"]["custom_details"]
    assert details["num_firing"] == "many" and details["env"] == "prod"
    assert set(details) == {"firing", "resolved", "num_firing", "num_resolved", "env"}
    assert event["links"] == [{"href": "http://pudimd.example:9093", "text": "pudimd"}]
    assert event["images"] == [{"src": "https://example.com/g.png", "alt": "graph"}]


async def test_broken_custom_template_falls_back_to_the_default() -> None:
    notification = sample_notification()
    async with pagerduty_fake() as fake:
        await send(notification, fake.url + "/v2/enqueue", description="{{ 1 // 0 }}")
    assert fake.accepted[0]["payload"]["summary"] == "[FIRING:1] HighLatency"
    assert notification.template_errors == ["ZeroDivisionError: integer division or modulo by zero"]


async def test_invalid_severity_is_sent_as_error_and_recorded() -> None:
    notification = sample_notification()
    async with pagerduty_fake() as fake:
        await send(notification, fake.url + "/v2/enqueue", severity="{{ common_labels.env }}")
    assert fake.accepted[0]["payload"]["severity"] == "error"
    assert notification.template_errors == [
        "severity rendered 'prod', not one of critical, error, warning, info: sent 'error'"
    ]


async def test_huge_annotations_are_cut_to_pagerduty_limits() -> None:
    base = sample_notification(firing=4)
    alerts = tuple(
        dataclasses.replace(
            alert, annotations={"summary": "s" * 5000, "description": 'é"\n' * 100_000}
        )
        for alert in base.alerts
    )
    async with pagerduty_fake() as fake:
        await send(
            dataclasses.replace(base, alerts=alerts),
            fake.url + "/v2/enqueue",
            description="{{ alerts[0].annotations.summary }}",
            details={"extra": "{{ alerts[1].annotations.description }}"},
        )
    assert PAGERDUTY_EVENT_LIMIT - 1024 < len(fake.last.body) <= PAGERDUTY_EVENT_LIMIT
    payload = fake.accepted[0]["payload"]
    assert len(payload["summary"]) == 1024 and payload["summary"].endswith("…")
    details = payload["custom_details"]
    assert details["num_firing"] == "4" and details["resolved"] == ""
    # The two large details share the room evenly.
    assert details["firing"].endswith("…") and details["extra"].endswith("…")
    assert abs(len(details["firing"]) - len(details["extra"])) < 1000
    assert len(details["extra"]) > 100_000


async def test_routing_key_may_be_a_template() -> None:
    async with pagerduty_fake() as fake:
        await send(
            sample_notification(common_labels={"team_key": KEY}),
            fake.url + "/v2/enqueue",
            routing_key="{{ common_labels.team_key }}",
        )
    assert fake.accepted[0]["routing_key"] == KEY


async def test_invalid_event_fails_for_good_with_pagerduty_errors() -> None:
    async with pagerduty_fake() as fake:
        with pytest.raises(DeliveryError) as caught:
            await send(sample_notification(), fake.url + "/v2/enqueue", routing_key="too-short")
    assert caught.value.retryable is False
    assert caught.value.message.startswith("PagerDuty refused the event: HTTP 400")
    assert "Length of 'routing_key' is incorrect" in caught.value.message
    assert fake.accepted == []


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "group-1",
        "payload": {
            "summary": "disk full",
            "source": "db-1",
            "severity": "critical",
            "timestamp": "2026-11-23T10:00:00.000+00:00",
        },
    }
    for key, value in changes.items():
        if key.startswith("payload_"):
            event["payload"][key.removeprefix("payload_")] = value
        else:
            event[key] = value
    return event


def test_fake_accepts_a_valid_event() -> None:
    assert pagerduty_errors(_event()) == []


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (_event(routing_key="abc"), "Length of 'routing_key' is incorrect"),
        (_event(event_action="page"), "'event_action' is invalid"),
        (_event(dedup_key="d" * 256), "'dedup_key' is longer than 255"),
        (_event(event_action="resolve", dedup_key=None), "'dedup_key' is required"),
        (_event(payload=None), "'payload' is missing"),
        (_event(payload_summary=""), "'payload.summary' is missing or blank"),
        (_event(payload_summary="s" * 1025), "'payload.summary' is longer than 1024"),
        (_event(payload_source=""), "'payload.source' is missing or blank"),
        (_event(payload_severity="high"), "'payload.severity' is invalid"),
        (_event(payload_timestamp="yesterday"), "'payload.timestamp' is not a valid"),
        (_event(links=[{"text": "no href"}]), "'links[0].href' is missing"),
    ],
)
async def test_fake_refuses_invalid_events(event: dict[str, Any], error: str) -> None:
    assert any(error in e for e in pagerduty_errors(event))
    async with pagerduty_fake() as fake:
        status, text = await post_raw(fake.url + "/v2/enqueue", event)
    answer = json.loads(text)
    assert status == 400 and answer["status"] == "invalid event"
    assert any(error in e for e in answer["errors"])
    assert fake.incidents == {}


async def test_fake_refuses_an_event_over_512_kb() -> None:
    event = _event(payload_custom_details={"blob": "x" * PAGERDUTY_EVENT_LIMIT})
    async with pagerduty_fake() as fake:
        status, _ = await post_raw(fake.url + "/v2/enqueue", event)
    assert status == 400
