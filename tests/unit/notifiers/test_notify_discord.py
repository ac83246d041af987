"""The ``discord`` notifier against a fake Discord webhook on loopback that enforces
Discord's message and embed limits."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pudimd_plugins.notifiers.discord import (
    DiscordNotifier,
    DiscordSettings,
    pudimd_notifier_types,
)
from pydantic import ValidationError

from pudimd.alerting.notification import DeliveryError, Notification
from tests.unit.notifiers.notifier_helpers import action_links_on, sample_notification
from tests.unit.notifiers.saas_fakes import discord_errors, discord_fake, post_raw

pytestmark = pytest.mark.anyio

HOOK = "/api/webhooks/123456/token-abc"


async def send(notification: Notification, **settings: Any) -> str | None:
    notifier = DiscordNotifier(DiscordSettings.model_validate(settings))
    try:
        return await notifier.send(notification, 5)
    finally:
        await notifier.aclose()


def embed_size(embed: dict[str, Any]) -> int:
    size = len(embed.get("title", "")) + len(embed.get("description", ""))
    size += len(embed.get("footer", {}).get("text", ""))
    return size + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))


def test_plugin_registers_discord_with_alertmanager_names() -> None:
    assert pudimd_notifier_types() == [DiscordNotifier]
    assert DiscordNotifier.type == "discord"
    assert DiscordNotifier.config_key == "discord_configs"
    assert DiscordSettings.model_fields["send_resolved"].default is True


def test_alertmanager_discord_config_validates_unchanged() -> None:
    settings = DiscordSettings.model_validate(
        {
            "send_resolved": False,
            "webhook_url": "https://discord.com/api/webhooks/1/abc",
            "title": "{{ common_labels.alertname }}",
            "message": "{{ common_annotations.description }}",
            "content": "<@&123> look",
            "username": "Alerts",
            "avatar_url": "https://example.com/a.png",
            "http_config": {"proxy_url": "http://proxy.example:3128"},
        }
    )
    assert settings.username == "Alerts" and settings.send_resolved is False


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({}, "one of webhook_url or webhook_url_file"),
        ({"webhook_url": "discord.com/api/webhooks/1/x"}, "absolute http"),
        ({"webhook_url": "https://d.example/h", "username": "My Discord bot"}, "'discord'"),
        ({"webhook_url": "https://d.example/h", "username": "x" * 81}, "longer than 80"),
    ],
)
def test_invalid_settings_are_config_errors(entry: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        DiscordSettings.model_validate(entry)


def test_config_error_does_not_show_the_webhook_url() -> None:
    with pytest.raises(ValidationError) as caught:
        DiscordSettings.model_validate({"webhook_url": "ftp://secret-token@d.example/h"})
    assert "secret-token" not in str(caught.value)


async def test_message_embed_carries_the_alerts() -> None:
    async with discord_fake() as fake:
        answer = await send(
            sample_notification(firing=2, resolved=1),
            webhook_url=fake.url + HOOK,
            username="pudimd",
            avatar_url="https://example.com/a.png",
        )
    assert answer is None and fake.last.status == 204
    message = fake.accepted[0]
    assert "content" not in message
    assert message["username"] == "pudimd"
    assert message["avatar_url"] == "https://example.com/a.png"
    (embed,) = message["embeds"]
    assert embed["title"] == "[FIRING:2] HighLatency"
    assert embed["color"] == 0x992D22
    assert embed["url"] == "http://pudimd.example:9093"
    assert embed["footer"] == {"text": "pudimd · team-x"}
    assert embed["fields"] == [{"name": "env", "value": "prod", "inline": True}]
    description = embed["description"]
    firing, resolved = description.split("__Resolved__")
    assert "Latency is high on web-0" in firing and "Latency is high on web-1" in firing
    assert "Latency is high on web-2" in resolved
    assert "[Source](http://prometheus.example/graph?g0.expr=latency&i=0)" in firing


async def test_content_is_rendered_above_the_embed() -> None:
    async with discord_fake() as fake:
        await send(
            sample_notification(),
            webhook_url=fake.url + HOOK,
            content="{{ firing | length }} alert(s) in {{ common_labels.env }}",
        )
    assert fake.accepted[0]["content"] == "1 alert(s) in prod"


async def test_resolved_notification_is_green() -> None:
    async with discord_fake() as fake:
        await send(sample_notification(firing=0, resolved=1), webhook_url=fake.url + HOOK)
    (embed,) = fake.accepted[0]["embeds"]
    assert embed["color"] == 0x2ECC71
    assert embed["title"] == "[RESOLVED] HighLatency"
    assert embed["description"].startswith("__Resolved__")


async def test_broken_custom_template_falls_back_to_the_default() -> None:
    notification = sample_notification()
    async with discord_fake() as fake:
        await send(notification, webhook_url=fake.url + HOOK, message="{{ 1 // 0 }}")
    assert "Latency is high on web-0" in fake.accepted[0]["embeds"][0]["description"]
    assert notification.template_errors == ["ZeroDivisionError: integer division or modulo by zero"]


async def test_huge_texts_are_cut_to_discord_limits() -> None:
    alert = sample_notification().alerts[0]
    big = dataclasses.replace(
        alert, annotations={"summary": "s" * 9000, "description": "d" * 90_000}
    )
    labels = {f"label_{i:02d}": "v" * 2000 for i in range(40)}
    notification = sample_notification(alerts=(big,), common_labels=labels)
    async with discord_fake() as fake:
        await send(
            notification,
            webhook_url=fake.url + HOOK,
            title="{{ alerts[0].annotations.summary }}",
            content="{{ alerts[0].annotations.description }}",
        )
    message = fake.accepted[0]
    assert len(message["content"]) == 2000
    (embed,) = message["embeds"]
    assert len(embed["title"]) == 256 and embed["title"].endswith("…")
    assert len(embed["description"]) == 4096 and embed["description"].endswith("…")
    assert embed_size(embed) <= 6000
    # What room the title, description and footer leave holds one 1024-character field.
    assert [(f["name"], len(f["value"])) for f in embed["fields"]] == [("label_00", 1024)]


async def test_many_common_labels_make_at_most_25_fields() -> None:
    labels = {f"l{i:02d}": str(i) for i in range(40)}
    async with discord_fake() as fake:
        await send(sample_notification(common_labels=labels), webhook_url=fake.url + HOOK)
    fields = fake.accepted[0]["embeds"][0]["fields"]
    assert [f["name"] for f in fields] == [f"l{i:02d}" for i in range(25)]


async def test_rate_limit_is_retried_after_the_retry_after_header() -> None:
    async with discord_fake() as fake:
        fake.rate_limited, fake.retry_after = 1, 3.2
        with pytest.raises(DeliveryError) as caught:
            await send(sample_notification(), webhook_url=fake.url + HOOK)
        await send(sample_notification(), webhook_url=fake.url + HOOK)
    assert caught.value.retryable is True
    assert caught.value.retry_after == 4.0  # the header is rounded up to whole seconds
    assert len(fake.accepted) == 1


async def test_rate_limit_without_header_uses_the_json_retry_after() -> None:
    async with discord_fake() as fake:
        fake.rate_limited, fake.retry_after, fake.retry_after_header = 1, 0.75, False
        with pytest.raises(DeliveryError) as caught:
            await send(sample_notification(), webhook_url=fake.url + HOOK)
    assert caught.value.retryable is True
    assert caught.value.retry_after == 0.75


async def test_unknown_webhook_fails_for_good() -> None:
    async with discord_fake() as fake:
        with pytest.raises(DeliveryError) as caught:
            await send(sample_notification(), webhook_url=fake.url + "/api/webhooks/1/deleted")
    assert caught.value.retryable is False
    assert caught.value.message.startswith("HTTP 404")


@pytest.mark.parametrize(
    ("message", "code", "error"),
    [
        ({}, 50006, "Cannot send an empty message"),
        ({"content": "   "}, 50006, "Cannot send an empty message"),
        ({"content": "c" * 2001}, 50035, "content: must be 2000 or fewer in length"),
        ({"embeds": [{"title": "t" * 257}]}, 50035, "embeds[0].title: must be 256 or fewer"),
        (
            {"embeds": [{"description": "d" * 4097}]},
            50035,
            "embeds[0].description: must be 4096 or fewer",
        ),
        ({"embeds": [{"title": "t"}] * 11}, 50035, "embeds: must be 10 or fewer"),
        (
            {"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]},
            50035,
            "embeds[0].fields: must be 25 or fewer",
        ),
        (
            {"embeds": [{"fields": [{"name": "n", "value": ""}]}]},
            50035,
            "embeds[0].fields[0].value: this field is required",
        ),
        (
            {"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]},
            50035,
            "embed size exceeds maximum size of 6000",
        ),
        ({"content": "c", "username": "Discord"}, 50035, "username: cannot contain"),
    ],
)
async def test_fake_refuses_invalid_messages(
    message: dict[str, Any], code: int, error: str
) -> None:
    found_code, errors = discord_errors(message)
    assert found_code == code and any(error in e for e in errors)
    async with discord_fake() as fake:
        status, text = await post_raw(fake.url + HOOK, message)
    assert status == 400 and json.loads(text)["code"] == code


# -- action links and acknowledgement ---------------------------------------------------


async def test_each_firing_alert_has_markdown_links() -> None:
    notification = sample_notification(firing=2, resolved=1)
    with action_links_on() as checker:
        async with discord_fake() as fake:
            await send(notification, webhook_url=fake.url + HOOK)
        (embed,) = fake.accepted[0]["embeds"]
        firing, resolved = embed["description"].split("__Resolved__")
        found = checker.found(firing)
        assert checker.found(resolved) == []  # nothing to do about a resolved alert
    fps = [alert.fingerprint for alert in notification.alerts]
    assert [(f.fingerprint, f.action) for f in found] == [
        (fps[0], "ack"),
        (fps[0], "snooze"),
        (fps[0], "resolve"),
        (fps[1], "ack"),
        (fps[1], "snooze"),
        (fps[1], "resolve"),
    ]
    assert "[Acknowledge](http://pudimd.example:9093/api/v1/actions/" in firing
    assert "[Snooze 1h](" in firing and "[Resolve](" in firing


async def test_an_acknowledged_group_says_so_and_offers_only_resolve() -> None:
    notification = sample_notification(firing=1, acknowledged=True)
    with action_links_on() as checker:
        async with discord_fake() as fake:
            await send(notification, webhook_url=fake.url + HOOK)
        (embed,) = fake.accepted[0]["embeds"]
        assert embed["title"] == "[ACK] [FIRING:1] HighLatency"
        assert embed["color"] == 0xE67E22
        assert embed["description"].startswith("**Acknowledged**: someone is on it")
        assert [f.action for f in checker.found(embed["description"])] == ["resolve"]


async def test_no_links_without_links_turned_on() -> None:
    async with discord_fake() as fake:
        await send(sample_notification(firing=2), webhook_url=fake.url + HOOK)
    (embed,) = fake.accepted[0]["embeds"]
    assert (
        "/api/v1/actions/" not in embed["description"] and "[Resolve]" not in embed["description"]
    )
