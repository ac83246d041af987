"""The generic ``http`` notifier against a real aiohttp server on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from pudimd_plugins.notifiers.http import HttpNotifier, HttpNotifierSettings, pudimd_notifier_types
from pydantic import ValidationError

from pudimd.alerting.notification import DeliveryError, Notification
from tests.helpers import free_port
from tests.unit.notifiers.notifier_helpers import recording_server, sample_notification

pytestmark = pytest.mark.anyio

JSON_BODY = (
    '{"title": {{ ("[" ~ status ~ "] " ~ common_labels.alertname) | tojson }},'
    ' "count": {{ alerts | length }}, "first": {{ alerts[0].labels.instance | tojson }}}'
)


async def deliver(notification: Notification, within: float = 5.0, **settings: Any) -> str | None:
    """Send ``notification`` once (``within``: the dispatcher's timeout) with ``settings``."""
    notifier = HttpNotifier(HttpNotifierSettings.model_validate(settings))
    try:
        return await notifier.send(notification, within)
    finally:
        await notifier.aclose()


def test_plugin_registers_the_http_type() -> None:
    assert pudimd_notifier_types() == [HttpNotifier]
    assert HttpNotifier.config_key == "http_configs"


def test_body_is_required_and_checked_when_loaded() -> None:
    with pytest.raises(ValidationError, match="body\n  Field required"):
        HttpNotifierSettings.model_validate({"url": "http://a.example/"})
    with pytest.raises(ValidationError, match="body\n  Value error, template error on line 1"):
        HttpNotifierSettings.model_validate({"url": "http://a.example/", "body": "{{ x"})


def test_header_templates_are_checked_when_loaded() -> None:
    with pytest.raises(ValidationError, match=r"headers\.X-A\n  Value error, template error"):
        HttpNotifierSettings.model_validate(
            {"url": "http://a.example/", "body": "{}", "headers": {"X-A": "{% if %}"}}
        )


def test_content_type_header_points_to_content_type() -> None:
    with pytest.raises(ValidationError, match="cannot be set in headers: use content_type"):
        HttpNotifierSettings.model_validate(
            {"url": "http://a.example/", "body": "{}", "headers": {"Content-Type": "text/x"}}
        )


def test_url_or_url_file_is_required() -> None:
    with pytest.raises(ValidationError, match="one of url or url_file must be configured"):
        HttpNotifierSettings.model_validate({"body": "{}"})


async def test_rendered_body_is_received() -> None:
    notification = sample_notification(firing=2)
    async with recording_server() as server:
        await deliver(notification, url=server.url + "/incidents", body=JSON_BODY)
    request = server.last
    assert request.method == "POST"
    assert request.path == "/incidents"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Pudimd-Idempotency-Key"] == notification.idempotency_key
    assert request.json() == {"title": "[firing] HighLatency", "count": 2, "first": "web-0"}
    assert notification.template_errors == []


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_put_and_patch_send_with_their_method(method: str) -> None:
    async with recording_server() as server:
        await deliver(
            sample_notification(),
            url=server.url,
            method=method,
            content_type="text/plain; charset=utf-8",
            body="{{ status }}: {{ common_labels.alertname }}",
            http_config={"authorization": {"credentials": "t0k"}},
        )
    assert server.last.method == method
    assert server.last.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert server.last.headers["Authorization"] == "Bearer t0k"
    assert server.last.body == b"firing: HighLatency"


async def test_header_templates_are_rendered() -> None:
    headers = {
        "X-Alert": "{{ common_labels.alertname }}",
        "X-Count": "{{ firing | length }}/{{ alerts | length }}",
        "X-Empty": "{{ common_labels.nothing }}",
    }
    async with recording_server() as server:
        await deliver(
            sample_notification(firing=1, resolved=2), url=server.url, body="{}", headers=headers
        )
    assert server.last.headers["X-Alert"] == "HighLatency"
    assert server.last.headers["X-Count"] == "1/3"
    assert "X-Empty" not in server.last.headers


async def test_broken_body_template_falls_back_to_the_webhook_payload() -> None:
    notification = sample_notification(firing=2)
    async with recording_server() as server:
        await deliver(
            notification,
            url=server.url,
            content_type="text/plain",
            body="{{ (alerts | length) / 0 }}",
        )
    assert server.last.headers["Content-Type"] == "application/json"
    assert server.last.json() == notification.webhook_payload()
    assert len(notification.template_errors) == 1
    assert notification.template_errors[0].startswith("ZeroDivisionError")


async def test_body_that_is_not_json_falls_back_to_the_webhook_payload() -> None:
    notification = sample_notification()
    async with recording_server() as server:
        await deliver(notification, url=server.url, body='{"status": {{ status }}}')
    assert server.last.json()["version"] == "4"
    assert len(notification.template_errors) == 1
    assert "not valid JSON" in notification.template_errors[0]


async def test_broken_header_template_is_left_out_and_recorded() -> None:
    notification = sample_notification()
    headers = {"X-Bad": "{{ 1 / 0 }}", "X-Good": "{{ status }}"}
    async with recording_server() as server:
        await deliver(notification, url=server.url, body="{}", headers=headers)
    assert "X-Bad" not in server.last.headers
    assert server.last.headers["X-Good"] == "firing"
    assert server.last.body == b"{}"
    assert len(notification.template_errors) == 1
    assert notification.template_errors[0].startswith("header X-Bad: ZeroDivisionError")


async def test_header_value_line_breaks_are_folded() -> None:
    async with recording_server() as server:
        await deliver(
            sample_notification(),
            url=server.url,
            body="{}",
            headers={"X-Multi": "a\r\nX-Injected: yes\nb"},
        )
    assert server.last.headers["X-Multi"] == "a X-Injected: yes b"
    assert "X-Injected" not in server.last.headers


@pytest.mark.parametrize(("method", "status"), [("POST", 503), ("PUT", 503), ("PATCH", 429)])
async def test_server_failures_are_retryable(method: str, status: int) -> None:
    async with recording_server() as server:
        server.status, server.headers = status, {"Retry-After": "3"}
        with pytest.raises(DeliveryError) as caught:
            await deliver(sample_notification(), url=server.url, method=method, body="{}")
    assert caught.value.retryable
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_refused_payload_is_not_retryable(method: str) -> None:
    async with recording_server() as server:
        server.status, server.body = 422, "missing field"
        with pytest.raises(DeliveryError) as caught:
            await deliver(sample_notification(), url=server.url, method=method, body="{}")
    assert not caught.value.retryable
    assert caught.value.message == "HTTP 422: missing field"


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_connection_refused_is_retryable(method: str) -> None:
    with pytest.raises(DeliveryError) as caught:
        await deliver(
            sample_notification(), url=f"http://127.0.0.1:{free_port()}/", method=method, body="{}"
        )
    assert caught.value.retryable
