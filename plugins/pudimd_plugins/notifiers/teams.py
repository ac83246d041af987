"""The ``teams`` notifier: post an Adaptive Card to Microsoft Teams through a Workflows
(Power Automate) webhook.

This is Alertmanager's ``msteamsv2`` integration (the old Office 365 connectors that
``msteams_configs`` used are retired by Microsoft), configured in a receiver's
``msteamsv2_configs`` with Alertmanager's fields, so an ``alertmanager.yml`` receiver entry
validates unchanged::

    msteamsv2_configs:
      - webhook_url: https://prod-00.westeurope.logic.azure.com/workflows/...  # or webhook_url_file
        send_resolved: true      # default true, as in Alertmanager
        title: ...               # the card's heading
        text: ...                # the card's body (Markdown)
        http_config: {...}       # Alertmanager's http_config

The webhook comes from the Teams *Workflows* app: the template "Post to a channel when a
webhook request is received".  ``title`` and ``text`` are Jinja2 templates (see
:mod:`pudimd.alerting.templates`); one that fails to render is recorded in the
notification's template errors and its default is used instead.  The default title says
the status and how many alerts fire (``[FIRING:2] HighLatency``); the default text lists
the alerts with their summary, description, labels, start (or resolution) time and links
to their source and ``runbook_url``.

Payload, as Alertmanager sends it::

    {"type": "message",
     "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                      "contentUrl": null,
                      "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                                  "type": "AdaptiveCard", "version": "1.4",
                                  "body": [...], "msteams": {"width": "Full"}}}]}

The body holds the title (a bold ``TextBlock`` coloured ``Attention`` while firing,
``Good`` when resolved), the text (a wrapping ``TextBlock``) and a ``FactSet`` of the
common labels; an ``Action.OpenUrl`` links to the external URL.

Acknowledgement and action links: once every firing alert of the group is acknowledged,
the follow-up's default title starts with ``[ACK]`` (coloured ``Warning``) and its text
opens with **Acknowledged**.  With signed action links on (``alerting.external_url`` set;
see :mod:`pudimd.alerting.links`), a group with one firing alert gets ``Action.OpenUrl``
actions *Acknowledge*, *Snooze 1h* and *Resolve* before *Open pudimd* (only *Resolve* once
acknowledged; Teams shows six actions at most); with several firing alerts, each alert's
line ends with its own *Acknowledge* and *Resolve* links.  Alertmanager declares
card version 1.2; pudimd declares 1.4 (Teams renders cards up to 1.5; a client that does
not know a property, such as the heading style, ignores it).

Limit: Teams refuses a message over 28 KB; the text is cut (then the facts dropped, then
the title cut) so the whole payload stays under 27 KB of UTF-8, which leaves room for what
the workflow adds.  The body is sent as ``application/json; charset=utf-8`` (without the
charset the service counts each character as two bytes).

Errors: connection failures, timeouts, HTTP 408, 429 and 5xx are retried (honouring
``Retry-After``); any other refusal (400, 413) fails the notification at once.

Not supported (a config error if given): the ``http_config`` fields beyond those of
:class:`pudimd_plugins.notifiers._http.HttpConfig`.
"""

from __future__ import annotations

import json
from typing import Any, Self

from pydantic import ConfigDict, Field, SecretStr, model_validator

from pudimd.alerting.notification import Notification
from pudimd.alerting.templates import Template, action_buttons, truncate
from pudimd.hookspecs import hookimpl
from pudimd.settings import NotifierSettings, SecretFile
from pudimd_plugins.notifiers._http import HttpClient, HttpConfig
from pudimd_plugins.notifiers._http import check_url as _check_url

__all__ = ["TeamsNotifier", "TeamsSettings", "pudimd_notifier_types"]

PAYLOAD_LIMIT = 27 * 1024
"""Bytes of JSON pudimd sends at most (Teams' limit is 28 KB)."""
TITLE_LIMIT = 1024
FACT_LIMIT = 500
CARD_VERSION = "1.4"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"

DEFAULT_TITLE = (
    "{% if acknowledged %}[ACK] {% endif %}"
    '[{{ status | upper }}{% if status == "firing" %}:{{ firing | length }}{% endif %}] '
    '{{ common_labels.alertname or "Alerts" }}'
    '{% for name, value in group_labels | sortedpairs if name != "alertname" %}'
    " {{ value }}{% endfor %}"
)
DEFAULT_TEXT = """\
{% if acknowledged %}
**Acknowledged**: someone is on it; repeats are paused.

{% endif %}
{% for alert in alerts %}
{% if not loop.first +%}
{% endif %}
**{{ alert.status | upper }}** {{ alert.labels.alertname }}\
{% if alert.annotations.summary %}: {{ alert.annotations.summary }}{% endif +%}

{% if alert.annotations.description %}
{{ alert.annotations.description }}

{% endif %}
Labels:{% for name, value in alert.labels | sortedpairs if name != "alertname" %}\
 `{{ name }}={{ value }}`{% endfor +%}

{% if alert.status == "resolved" and alert.ends_at %}\
Resolved {{ alert.ends_at.strftime("%Y-%m-%d %H:%M:%S UTC") }}\
{% else %}Since {{ alert.starts_at.strftime("%Y-%m-%d %H:%M:%S UTC") }}{% endif %}\
{% if alert.generator_url %} · [Source]({{ alert.generator_url }}){% endif %}\
{% if alert.annotations.runbook_url %} · [Runbook]({{ alert.annotations.runbook_url }}){% endif %}\
{% if alert.ack_url and not ack_url %}
{% if not acknowledged %} · [Acknowledge]({{ alert.ack_url }}){% endif %}\
 · [Resolve]({{ alert.resolve_url }})\
{% endif +%}
{% endfor %}
{% if truncated_alerts %}

…and {{ truncated_alerts }} more alerts
{% endif %}
"""


class TeamsSettings(NotifierSettings):
    """One entry of a receiver's ``msteamsv2_configs`` (see the module docstring)."""

    # Secrets (URLs with tokens, keys) must not be echoed in config errors.
    model_config = ConfigDict(hide_input_in_errors=True)

    send_resolved: bool = True
    webhook_url: SecretStr | None = Field(None, description="The workflow's webhook URL")
    webhook_url_file: SecretFile | None = Field(None, description="File holding webhook_url")
    http_config: HttpConfig | None = None
    title: Template | None = None
    text: Template | None = None

    @model_validator(mode="after")
    def _webhook_url(self) -> Self:
        if self.webhook_url is None:
            raise ValueError("one of webhook_url or webhook_url_file must be configured")
        _check_url(self.webhook_url.get_secret_value(), "webhook_url")
        return self


def encode(payload: dict[str, Any]) -> bytes:
    """``payload`` as the bytes sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class TeamsNotifier:
    """Post notifications to a Teams Workflows webhook (see the module docstring)."""

    type = "teams"
    config_key = "msteamsv2_configs"
    Settings = TeamsSettings

    def __init__(self, settings: TeamsSettings) -> None:
        self.settings = settings
        self._http = HttpClient(settings.http_config)

    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON document posted for ``notification`` (at most :data:`PAYLOAD_LIMIT`
        bytes once encoded)."""
        st = self.settings
        title_block: dict[str, Any] = {
            "type": "TextBlock",
            "text": truncate(notification.render(st.title, DEFAULT_TITLE).strip(), TITLE_LIMIT),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "style": "heading",
            "color": (
                "Good"
                if notification.status != "firing"
                else "Warning"
                if notification.acknowledged
                else "Attention"
            ),
        }
        text_block: dict[str, Any] = {
            "type": "TextBlock",
            "text": notification.render(st.text, DEFAULT_TEXT).strip(),
            "wrap": True,
        }
        facts = [
            {"title": truncate(name, FACT_LIMIT), "value": truncate(value, FACT_LIMIT)}
            for name, value in sorted(notification.common_labels.items())
            if value
        ]
        facts_block: dict[str, Any] = {"type": "FactSet", "facts": facts}
        content: dict[str, Any] = {
            "$schema": CARD_SCHEMA,
            "type": "AdaptiveCard",
            "version": CARD_VERSION,
            "body": [title_block, text_block] + ([facts_block] if facts else []),
            "msteams": {"width": "Full"},
        }
        actions = [
            {"type": "Action.OpenUrl", "title": label, "url": url}
            | ({"style": "positive"} if action == "ack" else {})
            for action, label, url in action_buttons(notification)
        ]
        if notification.external_url.startswith(("http://", "https://")):
            actions.append(
                {"type": "Action.OpenUrl", "title": "Open pudimd", "url": notification.external_url}
            )
        if actions:
            content["actions"] = actions
        payload: dict[str, Any] = {
            "type": "message",
            "attachments": [
                {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": content}
            ],
        }
        _fit(payload, content, title_block, text_block)
        return payload

    async def send(self, notification: Notification, timeout: float) -> str | None:
        assert self.settings.webhook_url is not None  # the settings' validator saw to it
        await self._http.post(
            self.settings.webhook_url.get_secret_value(),
            data=encode(self.payload(notification)),
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=timeout,
        )
        return None

    async def aclose(self) -> None:
        await self._http.aclose()


def _encoded_size(text: str) -> int:
    """Bytes ``text`` takes inside the JSON sent (escapes included, quotes not)."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def cut_to_encoded(text: str, budget: int) -> str:
    """The longest ``truncate(text, n)`` whose JSON encoding takes at most ``budget`` bytes
    (escapes make a character cost up to six bytes, so the cut is searched for)."""
    if _encoded_size(text) <= budget:
        return text
    low, high = 0, min(len(text), max(0, budget))
    while low < high:
        middle = (low + high + 1) // 2
        if _encoded_size(truncate(text, middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    return truncate(text, low)


def _fit(
    payload: dict[str, Any],
    content: dict[str, Any],
    title_block: dict[str, Any],
    text_block: dict[str, Any],
) -> None:
    """Cut the text (then drop the facts, then cut the title) until ``payload`` encodes to
    at most :data:`PAYLOAD_LIMIT` bytes."""
    excess = len(encode(payload)) - PAYLOAD_LIMIT
    if excess > 0:
        text = text_block["text"]
        text_block["text"] = cut_to_encoded(text, _encoded_size(text) - excess)
        excess = len(encode(payload)) - PAYLOAD_LIMIT
    if excess > 0 and content["body"][-1].get("type") == "FactSet":
        content["body"].pop()
        excess = len(encode(payload)) - PAYLOAD_LIMIT
    if excess > 0:
        title = title_block["text"]
        title_block["text"] = cut_to_encoded(title, _encoded_size(title) - excess)


@hookimpl
def pudimd_notifier_types() -> list[type[Any]]:
    """The ``teams`` notifier."""
    return [TeamsNotifier]
