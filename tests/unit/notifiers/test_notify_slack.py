"""The ``slack`` notifier against a fake Slack on loopback that validates every message
(incoming webhook and ``chat.postMessage``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pudimd_plugins.notifiers.slack import SlackNotifier, SlackSettings, pudimd_notifier_types
from pydantic import ValidationError

from pudimd.alerting.notification import DeliveryError, Notification
from tests.unit.notifiers.notifier_helpers import action_links_on, sample_notification
from tests.unit.notifiers.saas_fakes import post_raw, slack_error, slack_fake

pytestmark = pytest.mark.anyio

HOOK = "/services/T000/B000/XXXX"


async def send(notification: Notification, **settings: Any) -> str | None:
    notifier = SlackNotifier(SlackSettings.model_validate(settings))
    try:
        return await notifier.send(notification, 5)
    finally:
        await notifier.aclose()


def huge(notification: Notification, size: int) -> Notification:
    """``notification`` with every alert's description ``size`` characters long."""
    alerts = tuple(
        dataclasses.replace(
            alert, annotations={**alert.annotations, "description": "é<x> " * (size // 5)}
        )
        for alert in notification.alerts
    )
    return dataclasses.replace(notification, alerts=alerts)


def test_plugin_registers_slack_with_alertmanager_names() -> None:
    assert pudimd_notifier_types() == [SlackNotifier]
    assert SlackNotifier.type == "slack"
    assert SlackNotifier.config_key == "slack_configs"
    assert SlackNotifier.global_defaults == {
        "slack_api_url": "api_url",
        "slack_api_url_file": "api_url_file",
    }
    assert SlackSettings.model_fields["send_resolved"].default is False


def test_alertmanager_slack_config_validates_unchanged() -> None:
    entry = {
        "send_resolved": True,
        "api_url": "https://hooks.slack.com/services/T000/B000/XXXX",
        "channel": "#alerts",
        "username": "alertmanager",
        "color": '{{ "danger" if status == "firing" else "good" }}',
        "title": "{{ common_labels.alertname }}",
        "title_link": "{{ external_url }}",
        "pretext": "pre",
        "text": "{{ common_annotations.description }}",
        "fields": [{"title": "Env", "value": "{{ common_labels.env }}", "short": True}],
        "short_fields": False,
        "footer": "foot",
        "fallback": "fall",
        "callback_id": "cb",
        "icon_emoji": ":fire:",
        "icon_url": "https://example.com/i.png",
        "image_url": "https://example.com/img.png",
        "thumb_url": "https://example.com/thumb.png",
        "link_names": True,
        "mrkdwn_in": ["text"],
        "http_config": {"follow_redirects": True},
    }
    settings = SlackSettings.model_validate(entry)
    assert settings.fields[0].short is True and settings.channel == "#alerts"


def test_settings_need_an_api_url() -> None:
    with pytest.raises(ValidationError, match="api_url"):
        SlackSettings.model_validate({"channel": "#alerts"})


def test_api_url_is_read_from_api_url_file(tmp_path: Path) -> None:
    path = tmp_path / "slack-url"
    path.write_text("https://hooks.slack.com/services/T/B/secret\n")
    settings = SlackSettings.model_validate({"api_url_file": str(path)})
    assert settings.api_url is not None
    assert settings.api_url.get_secret_value() == "https://hooks.slack.com/services/T/B/secret"


def test_an_unsupported_alertmanager_field_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="actions"):
        SlackSettings.model_validate(
            {"api_url": "https://hooks.slack.com/x", "actions": [{"type": "button"}]}
        )


async def test_webhook_message_carries_the_alerts() -> None:
    async with slack_fake() as fake:
        answer = await send(
            sample_notification(firing=2), api_url=fake.url + HOOK, channel="#alerts"
        )
    assert answer is None
    message = fake.accepted[0]
    assert message["channel"] == "#alerts" and message["username"] == "pudimd"
    attachment = message["attachments"][0]
    assert attachment["title"] == "[FIRING:2] HighLatency"
    assert attachment["title_link"] == "http://pudimd.example:9093"
    assert attachment["color"] == "danger"
    assert attachment["mrkdwn_in"] == ["fallback", "pretext", "text"]
    text = attachment["text"]
    assert "Latency is high on web-0" in text and "Latency is high on web-1" in text
    assert "p99 above 500ms for 5 minutes" in text
    assert "`instance=web-1`" in text
    assert "<http://prometheus.example/graph?g0.expr=latency&i=0|Source>" in text
    assert attachment["fallback"].startswith("[FIRING:2] HighLatency")


async def test_fields_are_rendered_with_short_fields_as_their_default() -> None:
    async with slack_fake() as fake:
        await send(
            sample_notification(),
            api_url=fake.url + HOOK,
            short_fields=True,
            fields=[
                {"title": "Env", "value": "{{ common_labels.env }}"},
                {"title": "Count", "value": "{{ firing | length }}", "short": False},
            ],
        )
    fields = fake.accepted[0]["attachments"][0]["fields"]
    assert fields == [
        {"title": "Env", "value": "prod", "short": True},
        {"title": "Count", "value": "1", "short": False},
    ]


async def test_resolved_notification_is_green_and_says_resolved() -> None:
    async with slack_fake() as fake:
        await send(sample_notification(firing=0, resolved=2), api_url=fake.url + HOOK)
    attachment = fake.accepted[0]["attachments"][0]
    assert attachment["color"] == "good"
    assert attachment["title"] == "[RESOLVED] HighLatency"
    assert "Resolved 2026-11-23 10:30:00 UTC" in attachment["text"]


async def test_broken_custom_template_falls_back_to_the_default() -> None:
    notification = sample_notification()
    async with slack_fake() as fake:
        await send(notification, api_url=fake.url + HOOK, title="{{ 1 // 0 }}")
    assert fake.accepted[0]["attachments"][0]["title"] == "[FIRING:1] HighLatency"
    assert notification.template_errors == ["ZeroDivisionError: integer division or modulo by zero"]


async def test_huge_annotations_are_cut_and_the_message_stays_valid() -> None:
    async with slack_fake() as fake:
        await send(
            huge(sample_notification(firing=3), 400_000),
            api_url=fake.url + HOOK,
            title="{{ alerts[0].annotations.description }}",
        )
    attachment = fake.accepted[0]["attachments"][0]
    assert len(attachment["title"]) == 1024 and attachment["title"].endswith("…")
    assert len(attachment["text"]) == 30_000 and attachment["text"].endswith("…")


async def test_blocks_hold_header_sections_and_context() -> None:
    async with slack_fake() as fake:
        await send(
            sample_notification(firing=2),
            api_url=fake.url + HOOK,
            blocks=True,
            pretext="Heads up",
            fields=[{"title": "Env", "value": "{{ common_labels.env }}"}],
            thumb_url="https://example.com/t.png",
        )
    message = fake.accepted[0]
    assert message["text"].startswith("[FIRING:2] HighLatency")
    assert "attachments" not in message
    kinds = [block["type"] for block in message["blocks"]]
    assert kinds == ["header", "section", "section", "section", "context"]
    header, pretext, text, fields, context = message["blocks"]
    assert header["text"] == {"type": "plain_text", "text": "[FIRING:2] HighLatency", "emoji": True}
    assert pretext["text"]["text"] == "Heads up"
    assert "Latency is high on web-1" in text["text"]["text"]
    assert text["accessory"]["image_url"] == "https://example.com/t.png"
    assert fields["fields"] == [{"type": "mrkdwn", "text": "*Env*\nprod"}]
    assert context["elements"][1]["text"] == "<http://pudimd.example:9093|Open in pudimd>"


async def test_blocks_respect_block_kit_limits_with_huge_annotations() -> None:
    notification = huge(sample_notification(firing=40), 20_000)
    async with slack_fake() as fake:
        await send(
            notification,
            api_url=fake.url + HOOK,
            blocks=True,
            title="{{ alerts[0].annotations.description }}",
            fields=[{"title": f"f{i}", "value": "v" * 5000} for i in range(12)],
        )
    blocks = fake.accepted[0]["blocks"]
    assert len(blocks) == 50
    assert len(blocks[0]["text"]["text"]) == 150
    sections = [block for block in blocks if block["type"] == "section" and "text" in block]
    assert all(len(block["text"]["text"]) <= 3000 for block in sections)
    assert sections[-1]["text"]["text"].endswith("…")
    assert [len(block["fields"]) for block in blocks if "fields" in block] == [10, 2]


async def test_bot_token_post_returns_the_message_ts() -> None:
    async with slack_fake() as fake:
        answer = await send(
            sample_notification(),
            api_url=fake.url + "/api/chat.postMessage",
            channel="C0FAKE",
            http_config={"authorization": {"credentials": fake.token}},
        )
    assert answer is not None and answer.startswith("1795428000.")
    assert fake.last.headers["Authorization"] == f"Bearer {fake.token}"
    assert fake.accepted[0]["channel"] == "C0FAKE"


async def test_bot_token_error_answer_fails_for_good() -> None:
    async with slack_fake() as fake:
        with pytest.raises(DeliveryError) as caught:
            await send(
                sample_notification(),
                api_url=fake.url + "/api/chat.postMessage",
                channel="C0FAKE",
                http_config={"authorization": {"credentials": "xoxb-wrong"}},
            )
    assert caught.value.retryable is False
    assert caught.value.message == "Slack refused the message: invalid_auth"


async def test_webhook_refusal_fails_for_good() -> None:
    async with slack_fake() as fake:
        with pytest.raises(DeliveryError) as caught:
            await send(sample_notification(), api_url=fake.url + HOOK, color="purple")
    assert caught.value.retryable is False
    assert caught.value.message == "HTTP 400: invalid_attachments"


async def test_message_is_never_empty_even_when_every_text_renders_empty() -> None:
    empty = {
        key: ""
        for key in ("title", "title_link", "pretext", "text", "fallback", "footer", "username")
    }
    async with slack_fake() as fake:
        await send(sample_notification(), api_url=fake.url + HOOK, **empty)
        await send(sample_notification(), api_url=fake.url + HOOK, blocks=True, **empty)
    attachment, blocks = fake.accepted
    assert attachment["attachments"][0]["fallback"] == "pudimd notification"
    assert blocks == {"text": "pudimd notification"}


BUTTON = {"type": "button", "text": "Ack", "url": "https://pudimd.example/a"}
BLOCK_BUTTON = {
    "type": "button",
    "text": {"type": "plain_text", "text": "Ack"},
    "url": "https://pudimd.example/a",
    "action_id": "same",
}


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"channel": "#alerts"}, "no_text"),
        ({"text": "x" * 40_001}, "msg_too_long"),
        (
            {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
            "invalid_blocks",
        ),
        (
            {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}]},
            "invalid_blocks",
        ),
        ({"blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        ({"attachments": [{"title": "t", "color": "purple"}]}, "invalid_attachments"),
        ({"attachments": [{"text": "t"}] * 101}, "too_many_attachments"),
        (
            {"attachments": [{"text": "t", "actions": [BUTTON] * 6}]},
            "invalid_attachments",
        ),
        (
            {"attachments": [{"text": "t", "actions": [{**BUTTON, "url": "nope"}]}]},
            "invalid_attachments",
        ),
        ({"blocks": [{"type": "actions", "elements": []}]}, "invalid_blocks"),
        ({"blocks": [{"type": "actions", "elements": [BLOCK_BUTTON] * 2}]}, "invalid_blocks"),
        (
            {
                "blocks": [
                    {
                        "type": "actions",
                        "elements": [
                            {**BLOCK_BUTTON, "text": {"type": "plain_text", "text": "b" * 76}}
                        ],
                    }
                ]
            },
            "invalid_blocks",
        ),
        (
            {"blocks": [{"type": "actions", "elements": [{**BLOCK_BUTTON, "style": "blue"}]}]},
            "invalid_blocks",
        ),
    ],
)
async def test_fake_webhook_refuses_invalid_messages(message: dict[str, Any], code: str) -> None:
    assert slack_error(message)[0] == code
    async with slack_fake() as fake:
        assert await post_raw(fake.url + HOOK, message) == (400, code)
    assert fake.accepted == []


async def test_fake_post_message_needs_a_channel() -> None:
    async with slack_fake() as fake:
        status, text = await post_raw(
            fake.url + "/api/chat.postMessage",
            {"text": "hello"},
            headers={"Authorization": f"Bearer {fake.token}"},
        )
    assert (status, json.loads(text)) == (200, {"ok": False, "error": "channel_not_found"})


# -- action links and acknowledgement ---------------------------------------------------


async def test_a_lone_firing_alert_has_link_buttons() -> None:
    notification = sample_notification(firing=1, resolved=1)
    with action_links_on() as checker:
        async with slack_fake() as fake:
            await send(notification, api_url=fake.url + HOOK)
        attachment = fake.accepted[0]["attachments"][0]
        actions = attachment["actions"]
        assert [(a["type"], a["text"], a.get("style")) for a in actions] == [
            ("button", "Acknowledge", "primary"),
            ("button", "Snooze 1h", None),
            ("button", "Resolve", None),
        ]
        found = [checker.verify(a["url"]) for a in actions]
        firing = notification.alerts[0].fingerprint
        assert [(f.fingerprint, f.action) for f in found] == [
            (firing, "ack"),
            (firing, "snooze"),
            (firing, "resolve"),
        ]
        assert checker.found(attachment["text"]) == []  # the buttons are enough
        assert actions[0]["url"].startswith("http://pudimd.example:9093/api/v1/actions/")


async def test_several_firing_alerts_have_their_links_in_the_text() -> None:
    notification = sample_notification(firing=2, resolved=1)
    with action_links_on() as checker:
        async with slack_fake() as fake:
            await send(notification, api_url=fake.url + HOOK)
        attachment = fake.accepted[0]["attachments"][0]
        assert "actions" not in attachment
        found = checker.found(attachment["text"])
    fps = [alert.fingerprint for alert in notification.alerts]
    assert [(f.fingerprint, f.action) for f in found] == [
        (fps[0], "ack"),
        (fps[0], "resolve"),
        (fps[1], "ack"),
        (fps[1], "resolve"),
    ]
    assert "|Acknowledge>" in attachment["text"] and "|Resolve>" in attachment["text"]


async def test_no_links_without_an_external_url_or_without_links() -> None:
    with action_links_on():
        async with slack_fake() as fake:
            await send(sample_notification(external_url=""), api_url=fake.url + HOOK)
    async with slack_fake() as without:
        await send(sample_notification(), api_url=without.url + HOOK)
    for message in (fake.accepted[0], without.accepted[0]):
        attachment = message["attachments"][0]
        assert "actions" not in attachment and "/api/v1/actions/" not in attachment["text"]


async def test_an_acknowledged_group_says_so_and_offers_only_resolve() -> None:
    notification = sample_notification(firing=1, acknowledged=True)
    with action_links_on() as checker:
        async with slack_fake() as fake:
            await send(notification, api_url=fake.url + HOOK)
            await send(notification, api_url=fake.url + HOOK, blocks=True)
        attachment = fake.accepted[0]["attachments"][0]
        assert attachment["title"] == "[ACK] [FIRING:1] HighLatency"
        assert attachment["fallback"].startswith("[ACK] [FIRING:1] HighLatency")
        assert attachment["color"] == "warning"
        assert attachment["text"].startswith("*Acknowledged*: someone is on it")
        assert [a["text"] for a in attachment["actions"]] == ["Resolve"]
        assert checker.verify(attachment["actions"][0]["url"]).action == "resolve"
        blocks = fake.accepted[1]["blocks"]
        assert blocks[0]["text"]["text"] == "[ACK] [FIRING:1] HighLatency"
        (actions,) = [block for block in blocks if block["type"] == "actions"]
        assert [e["action_id"] for e in actions["elements"]] == ["pudimd-resolve"]


async def test_blocks_carry_the_buttons_in_an_actions_block() -> None:
    notification = sample_notification(firing=1)
    with action_links_on() as checker:
        async with slack_fake() as fake:
            await send(notification, api_url=fake.url + HOOK, blocks=True)
        blocks = fake.accepted[0]["blocks"]
        assert [block["type"] for block in blocks] == ["header", "section", "actions", "context"]
        elements = blocks[2]["elements"]
        assert [e["text"]["text"] for e in elements] == ["Acknowledge", "Snooze 1h", "Resolve"]
        assert [e["action_id"] for e in elements] == [
            "pudimd-ack",
            "pudimd-snooze",
            "pudimd-resolve",
        ]
        assert elements[0]["style"] == "primary" and "style" not in elements[1]
        assert [checker.verify(e["url"]).action for e in elements] == ["ack", "snooze", "resolve"]
