"""The ``webhook`` notifier against a real aiohttp server on loopback (HTTPS with a trustme CA)."""

from __future__ import annotations

import base64
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from pudimd_plugins.notifiers.webhook import (
    WebhookNotifier,
    WebhookSettings,
    pudimd_notifier_types,
    verify_signature,
)
from pydantic import ValidationError

from pudimd.alerting.notification import ZERO_TIME, DeliveryError, Notification
from tests.helpers import free_port
from tests.unit.notifiers.notifier_helpers import recording_server, sample_notification

pytestmark = pytest.mark.anyio


async def deliver(notification: Notification, within: float = 5.0, **settings: Any) -> str | None:
    """Send ``notification`` once (``within``: the dispatcher's timeout) with ``settings``."""
    notifier = WebhookNotifier(WebhookSettings.model_validate(settings))
    try:
        return await notifier.send(notification, within)
    finally:
        await notifier.aclose()


def test_plugin_registers_the_webhook_type() -> None:
    assert pudimd_notifier_types() == [WebhookNotifier]
    assert WebhookNotifier.config_key == "webhook_configs"


def test_alertmanager_receiver_entry_validates_unchanged(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    entry = {
        "send_resolved": False,
        "url": "https://hooks.example/alerts?token=abc",
        "max_alerts": 10,
        "timeout": "15s",
        "http_config": {
            "basic_auth": {"username": "am", "password_file": str(tmp_path / "pw")},
            "tls_config": {"insecure_skip_verify": True},
            "follow_redirects": False,
        },
    }
    settings = WebhookSettings.model_validate(entry)
    assert settings.timeout is not None and settings.timeout.total_seconds() == 15
    assert settings.http_config is not None and settings.http_config.basic_auth is not None
    assert settings.http_config.basic_auth.password is not None
    assert settings.http_config.basic_auth.password.get_secret_value() == "s3cret"
    assert "token=abc" not in repr(settings)  # the URL is a secret


def test_send_resolved_defaults_to_true() -> None:
    assert WebhookSettings.model_validate({"url": "http://x.example/"}).send_resolved is True


def test_url_or_url_file_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="one of url or url_file must be configured"):
        WebhookSettings.model_validate({})
    with pytest.raises(ValidationError, match="set url or url_file, not both"):
        WebhookSettings.model_validate({"url": "http://a.example/", "url_file": __file__})
    with pytest.raises(ValidationError, match="absolute http"):
        WebhookSettings.model_validate({"url": "ftp://a.example/"})
    (tmp_path / "url").write_text("http://from-file.example/hook\n")
    settings = WebhookSettings.model_validate({"url_file": str(tmp_path / "url")})
    assert settings.url is not None
    assert settings.url.get_secret_value() == "http://from-file.example/hook"


def test_unsupported_alertmanager_field_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="oauth2"):
        WebhookSettings.model_validate(
            {"url": "http://a.example/", "http_config": {"oauth2": {"client_id": "x"}}}
        )


@pytest.mark.parametrize("name", ["Authorization", "content-type", "X-Pudimd-Signature"])
def test_headers_refuse_what_pudimd_or_http_config_sets(name: str) -> None:
    with pytest.raises(ValidationError, match=f"header '{name}' cannot be set in headers"):
        WebhookSettings.model_validate({"url": "http://a.example/", "headers": {name: "x"}})


def test_headers_point_authorization_to_http_config() -> None:
    with pytest.raises(ValidationError, match="set credentials in http_config"):
        WebhookSettings.model_validate(
            {"url": "http://a.example/", "headers": {"Authorization": "Bearer x"}}
        )


def test_header_value_with_line_break_is_refused() -> None:
    with pytest.raises(ValidationError, match="contains a line break"):
        WebhookSettings.model_validate(
            {"url": "http://a.example/", "headers": {"X-A": "a\r\nX-B: b"}}
        )


async def test_posts_the_v4_payload_with_every_field() -> None:
    notification = sample_notification(firing=2, resolved=1)
    async with recording_server() as server:
        result = await deliver(notification, url=server.url + "/hook?x=1")
    assert result is None
    request = server.last
    assert request.method == "POST"
    assert request.path == "/hook?x=1"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("pudimd/")
    assert request.headers["X-Pudimd-Idempotency-Key"] == notification.idempotency_key
    assert "X-Pudimd-Signature" not in request.headers
    body = request.json()
    assert body == {
        "version": "4",
        "groupKey": '{}:{alertname="HighLatency"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "team-x",
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency", "env": "prod"},
        "commonAnnotations": {"description": "p99 above 500ms for 5 minutes"},
        "externalURL": "http://pudimd.example:9093",
        "alerts": body["alerts"],
    }
    assert len(body["alerts"]) == 3
    for alert, sent in zip(notification.alerts, body["alerts"], strict=True):
        assert set(sent) == {
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        }
        assert sent["labels"] == alert.labels
        assert sent["fingerprint"] == alert.fingerprint
    assert body["alerts"][0]["startsAt"] == "2026-11-23T10:00:00.000Z"
    assert body["alerts"][0]["endsAt"] == ZERO_TIME
    assert body["alerts"][2]["status"] == "resolved"
    assert body["alerts"][2]["endsAt"] == "2026-11-23T10:32:00.000Z"


async def test_max_alerts_cuts_alerts_and_counts_the_rest() -> None:
    notification = sample_notification(firing=5, truncated_alerts=1)
    async with recording_server() as server:
        await deliver(notification, url=server.url, max_alerts=2)
        await deliver(notification, url=server.url, max_alerts=0)
    cut, whole = (request.json() for request in server.requests)
    assert [a["labels"]["instance"] for a in cut["alerts"]] == ["web-0", "web-1"]
    assert cut["truncatedAlerts"] == 1 + 3
    assert len(whole["alerts"]) == 5
    assert whole["truncatedAlerts"] == 1


async def test_basic_auth_from_http_config() -> None:
    async with recording_server() as server:
        await deliver(
            sample_notification(),
            url=server.url,
            http_config={"basic_auth": {"username": "am", "password": "pa:ss"}},
        )
    scheme, _, encoded = server.last.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded) == b"am:pa:ss"


async def test_bearer_credentials_from_http_config_authorization() -> None:
    async with recording_server() as server:
        await deliver(
            sample_notification(),
            url=server.url,
            http_config={"authorization": {"credentials": "tok3n"}},
        )
    assert server.last.headers["Authorization"] == "Bearer tok3n"


async def test_custom_headers_are_sent() -> None:
    async with recording_server() as server:
        await deliver(sample_notification(), url=server.url, headers={"X-Team": "sre"})
    assert server.last.headers["X-Team"] == "sre"


async def test_signature_verifies_and_tampering_or_replay_fails(tmp_path: Path) -> None:
    (tmp_path / "hmac").write_text("k3y\n")
    async with recording_server() as server:
        await deliver(
            sample_notification(), url=server.url, hmac_secret_file=str(tmp_path / "hmac")
        )
    header = server.last.headers["X-Pudimd-Signature"]
    body = server.last.body
    stamp = int(header.split(",")[0].removeprefix("t="))
    assert verify_signature("k3y", header, body)
    assert verify_signature(b"k3y", header, body, now=stamp + 299)
    assert not verify_signature("k3y", header, body.replace(b"team-x", b"team-y"))
    assert not verify_signature("other", header, body)
    assert not verify_signature("k3y", header, body, now=stamp + 301)  # a replay
    assert not verify_signature("k3y", header, body, now=stamp - 301)
    assert not verify_signature("k3y", "v1=" + header.rpartition("v1=")[2], body)
    assert not verify_signature("k3y", "garbage", body)


async def test_server_error_is_retryable() -> None:
    async with recording_server() as server:
        server.status, server.body = 500, "database is down"
        with pytest.raises(DeliveryError) as caught:
            await deliver(sample_notification(), url=server.url)
    assert caught.value.retryable
    assert caught.value.message == "HTTP 500: database is down"


async def test_client_error_is_not_retryable() -> None:
    async with recording_server() as server:
        server.status, server.body = 400, "bad payload"
        with pytest.raises(DeliveryError) as caught:
            await deliver(sample_notification(), url=server.url)
    assert not caught.value.retryable
    assert caught.value.message == "HTTP 400: bad payload"


async def test_too_many_requests_is_retried_after_the_servers_delay() -> None:
    async with recording_server() as server:
        server.status, server.headers = 429, {"Retry-After": "7"}
        with pytest.raises(DeliveryError) as caught:
            await deliver(sample_notification(), url=server.url)
    assert caught.value.retryable
    assert caught.value.retry_after == 7.0


async def test_connection_refused_is_retryable() -> None:
    with pytest.raises(DeliveryError) as caught:
        await deliver(sample_notification(), url=f"http://127.0.0.1:{free_port()}/")
    assert caught.value.retryable


async def test_timeout_setting_caps_the_attempt() -> None:
    async with recording_server() as server:
        server.delay = 2.0
        started = time.monotonic()
        with pytest.raises(DeliveryError) as caught:
            await deliver(sample_notification(), within=5.0, url=server.url, timeout="200ms")
        assert time.monotonic() - started < 1.5
    assert caught.value.retryable
    assert caught.value.message == "timeout after 0.2s posting to the receiver"


async def test_https_with_a_private_ca(ca: trustme.CA, ca_file: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    async with recording_server(context) as server:
        await deliver(
            sample_notification(),
            url=server.url,
            http_config={"tls_config": {"ca_file": str(ca_file)}},
        )
        with pytest.raises(DeliveryError) as caught:
            await deliver(sample_notification(), url=server.url)
    assert server.url.startswith("https://")
    assert len(server.requests) == 1
    assert "certificate" in caught.value.message.lower()
