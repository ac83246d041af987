"""The ``teams`` notifier (Alertmanager's ``msteamsv2``) against a fake Teams Workflows
webhook on loopback that validates the Adaptive Card message and its size."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pudimd_plugins.notifiers.teams import TeamsNotifier, TeamsSettings, pudimd_notifier_types
from pydantic import ValidationError

from pudimd.alerting.notification import DeliveryError, Notification
from tests.unit.notifiers.notifier_helpers import action_links_on, sample_notification
from tests.unit.notifiers.saas_fakes import (
    TEAMS_MESSAGE_LIMIT,
    post_raw,
    teams_errors,
    teams_fake,
)

pytestmark = pytest.mark.anyio

HOOK = "/workflows/0a1b/triggers/manual/paths/invoke?api-version=1&sig=s3cret"


async def send(notification: Notification, **settings: Any) -> str | None:
    notifier = TeamsNotifier(TeamsSettings.model_validate(settings))
    try:
        return await notifier.send(notification, 5)
    finally:
        await notifier.aclose()


def card(message: dict[str, Any]) -> dict[str, Any]:
    (attachment,) = message["attachments"]
    content: dict[str, Any] = attachment["content"]
    return content


def test_plugin_registers_teams_as_msteamsv2() -> None:
    assert pudimd_notifier_types() == [TeamsNotifier]
    assert TeamsNotifier.type == "teams"
    assert TeamsNotifier.config_key == "msteamsv2_configs"
    assert TeamsSettings.model_fields["send_resolved"].default is True


def test_alertmanager_msteamsv2_config_validates_unchanged() -> None:
    settings = TeamsSettings.model_validate(
        {
            "send_resolved": True,
            "webhook_url": "https://prod-1.westeurope.logic.azure.com/workflows/abc",
            "title": "{{ common_labels.alertname }}",
            "text": "{{ common_annotations.description }}",
            "http_config": {"tls_config": {"insecure_skip_verify": False}},
        }
    )
    assert settings.title == "{{ common_labels.alertname }}"


def test_webhook_url_is_read_from_webhook_url_file(tmp_path: Path) -> None:
    path = tmp_path / "teams-url"
    path.write_text("https://prod-1.westeurope.logic.azure.com/workflows/abc?sig=x\n")
    settings = TeamsSettings.model_validate({"webhook_url_file": str(path)})
    assert settings.webhook_url is not None
    assert settings.webhook_url.get_secret_value().endswith("sig=x")


def test_settings_need_a_webhook_url() -> None:
    with pytest.raises(ValidationError, match="one of webhook_url or webhook_url_file"):
        TeamsSettings.model_validate({"title": "x"})


async def test_card_carries_the_alerts() -> None:
    async with teams_fake() as fake:
        answer = await send(sample_notification(firing=2), webhook_url=fake.url + HOOK)
    assert answer is None and fake.last.status == 202
    assert fake.last.headers["Content-Type"] == "application/json; charset=utf-8"
    message = fake.accepted[0]
    assert message["type"] == "message"
    attachment = message["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content = card(message)
    assert content["type"] == "AdaptiveCard" and content["version"] == "1.4"
    assert content["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert content["msteams"] == {"width": "Full"}
    title, text, facts = content["body"]
    assert title["text"] == "[FIRING:2] HighLatency"
    assert title["color"] == "Attention" and title["weight"] == "Bolder"
    assert text["wrap"] is True
    assert "**FIRING** HighLatency: Latency is high on web-1" in text["text"]
    assert "[Source](http://prometheus.example/graph?g0.expr=latency&i=0)" in text["text"]
    assert facts["facts"] == [
        {"title": "alertname", "value": "HighLatency"},
        {"title": "env", "value": "prod"},
    ]
    assert content["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open pudimd", "url": "http://pudimd.example:9093"}
    ]


async def test_resolved_notification_is_marked_good() -> None:
    async with teams_fake() as fake:
        await send(sample_notification(firing=0, resolved=1), webhook_url=fake.url + HOOK)
    title = card(fake.accepted[0])["body"][0]
    assert title["text"] == "[RESOLVED] HighLatency" and title["color"] == "Good"


async def test_broken_custom_template_falls_back_to_the_default() -> None:
    notification = sample_notification()
    async with teams_fake() as fake:
        await send(notification, webhook_url=fake.url + HOOK, text="{{ 1 // 0 }}")
    assert "Latency is high on web-0" in card(fake.accepted[0])["body"][1]["text"]
    assert notification.template_errors == ["ZeroDivisionError: integer division or modulo by zero"]


async def test_huge_annotations_keep_the_message_under_28_kb() -> None:
    alert = sample_notification().alerts[0]
    # Multi-byte characters, quotes and control characters all cost more once escaped.
    description = 'é "x"\n\x01😀 ' * 60_000
    big = dataclasses.replace(alert, annotations={"description": description})
    async with teams_fake() as fake:
        await send(sample_notification(alerts=(big,)), webhook_url=fake.url + HOOK)
    # Cut to pudimd's 27 KB budget, not much below.
    assert 26 * 1024 < len(fake.last.body) <= TEAMS_MESSAGE_LIMIT - 1024
    _, text, facts = card(fake.accepted[0])["body"]
    assert text["text"].endswith("…") and len(text["text"]) > 1000
    assert facts["type"] == "FactSet"


async def test_refused_message_fails_for_good() -> None:
    async with teams_fake() as fake:
        with pytest.raises(DeliveryError) as caught:
            await send(sample_notification(), webhook_url=fake.url + "/not-a-workflow")
    assert caught.value.retryable is False and caught.value.message.startswith("HTTP 404")


def _json(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def _message(**content: Any) -> dict[str, Any]:
    body = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [{"type": "TextBlock", "text": "hi"}],
        **content,
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": body}
        ],
    }


def test_fake_accepts_a_minimal_card() -> None:
    assert teams_errors(_json(_message())) == (202, [])


OPEN = {"type": "Action.OpenUrl", "title": "Open", "url": "https://pudimd.example/"}


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({**_message(), "type": "card"}, "type: must be 'message'"),
        ({"type": "message", "attachments": []}, "attachments: required non-empty array"),
        (
            {"type": "message", "attachments": [{"contentType": "text/html", "content": {}}]},
            "contentType: must be application/vnd.microsoft.card.adaptive",
        ),
        (_message(type="HeroCard"), "content.type: must be AdaptiveCard"),
        (_message(version="2.0"), "content.version"),
        (_message(body=[]), "content.body: required non-empty array"),
        (_message(body=[{"type": "TextBlock"}]), "text: required string"),
        (_message(body=[{"type": "FactSet", "facts": []}]), "facts: required non-empty"),
        (_message(actions=[{"type": "Action.OpenUrl"}]), "url: required URL"),
        (_message(actions=[OPEN] * 7), "content.actions: at most 6 actions"),
        (_message(actions=[{**OPEN, "style": "loud"}]), "style: default, positive"),
        (_message(actions=[{**OPEN, "title": 3}]), "title: must be a string"),
    ],
)
async def test_fake_refuses_invalid_cards(message: dict[str, Any], error: str) -> None:
    status, errors = teams_errors(_json(message))
    assert status == 400 and any(error in e for e in errors)
    async with teams_fake() as fake:
        assert (await post_raw(fake.url + HOOK, message))[0] == 400
    assert fake.accepted == []


async def test_fake_refuses_a_message_over_28_kb() -> None:
    message = _message(body=[{"type": "TextBlock", "text": "x" * TEAMS_MESSAGE_LIMIT}])
    async with teams_fake() as fake:
        status, _ = await post_raw(fake.url + HOOK, message)
    assert status == 413


# -- action links and acknowledgement ---------------------------------------------------


async def test_a_lone_firing_alert_has_open_url_actions() -> None:
    notification = sample_notification(firing=1, resolved=1)
    with action_links_on() as checker:
        async with teams_fake() as fake:
            await send(notification, webhook_url=fake.url + HOOK)
        content = card(fake.accepted[0])
        actions = content["actions"]
        assert [(a["type"], a["title"], a.get("style")) for a in actions] == [
            ("Action.OpenUrl", "Acknowledge", "positive"),
            ("Action.OpenUrl", "Snooze 1h", None),
            ("Action.OpenUrl", "Resolve", None),
            ("Action.OpenUrl", "Open pudimd", None),
        ]
        firing = notification.alerts[0].fingerprint
        found = [checker.verify(a["url"]) for a in actions[:3]]
        assert [(f.fingerprint, f.action) for f in found] == [
            (firing, "ack"),
            (firing, "snooze"),
            (firing, "resolve"),
        ]
        assert checker.found(content["body"][1]["text"]) == []


async def test_several_firing_alerts_have_their_links_in_the_text() -> None:
    notification = sample_notification(firing=2)
    with action_links_on() as checker:
        async with teams_fake() as fake:
            await send(notification, webhook_url=fake.url + HOOK)
        content = card(fake.accepted[0])
        text = content["body"][1]["text"]
        found = checker.found(text)
    assert [a["title"] for a in content["actions"]] == ["Open pudimd"]
    fps = [alert.fingerprint for alert in notification.alerts]
    assert [(f.fingerprint, f.action) for f in found] == [
        (fps[0], "ack"),
        (fps[0], "resolve"),
        (fps[1], "ack"),
        (fps[1], "resolve"),
    ]
    assert "[Acknowledge](http://pudimd.example:9093/api/v1/actions/" in text


async def test_an_acknowledged_group_says_so_and_offers_only_resolve() -> None:
    with action_links_on() as checker:
        async with teams_fake() as fake:
            await send(
                sample_notification(firing=1, acknowledged=True), webhook_url=fake.url + HOOK
            )
        content = card(fake.accepted[0])
        title, text, _ = content["body"]
        assert title["text"] == "[ACK] [FIRING:1] HighLatency" and title["color"] == "Warning"
        assert text["text"].startswith("**Acknowledged**: someone is on it")
        assert [a["title"] for a in content["actions"]] == ["Resolve", "Open pudimd"]
        assert checker.verify(content["actions"][0]["url"]).action == "resolve"
