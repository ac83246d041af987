"""The ``slack`` notifier: post a message to Slack, through an incoming webhook or the Web API's
``chat.postMessage`` with a bot token.

Configured in a receiver's ``slack_configs`` with Alertmanager's fields, so an
``alertmanager.yml`` receiver entry validates unchanged::

    slack_configs:
      - api_url: https://hooks.slack.com/services/T000/B000/XXXX  # or api_url_file
        # default: global slack_api_url / slack_api_url_file
        send_resolved: false       # default false, as in Alertmanager
        channel: "#alerts"         # a channel override (webhooks), or the channel (bot token)
        username: pudimd
        color: ...                 # default: danger when firing, good when resolved
        title: ...
        title_link: ...            # default: the external URL
        pretext: ...
        text: ...
        fields: [{title: Env, value: "{{ common_labels.env }}", short: true}]
        short_fields: false        # the default of each field's short
        footer: ...
        fallback: ...              # the plain-text summary notifications show
        callback_id: ...
        icon_emoji: ":fire:"
        icon_url: ...
        image_url: ...
        thumb_url: ...
        link_names: false
        mrkdwn_in: [fallback, pretext, text]
        timeout: 10s               # optional; unset or 0: the dispatcher's timeout
        http_config: {...}         # Alertmanager's http_config
        # pudimd's addition:
        blocks: false              # true: send Block Kit blocks instead of an attachment

Every text field is a Jinja2 template (see :mod:`pudimd.alerting.templates`); one that fails
to render is recorded in the notification's template errors and its default is used instead.
The defaults say the status and how many alerts fire (``[FIRING:2] HighLatency``), then
each alert's summary, description, labels, start (or resolution) time and links to its
source and its ``runbook_url`` annotation.

Acknowledgement and action links: once every firing alert of the group is acknowledged,
the follow-up message's default title starts with ``[ACK]``, its colour is ``warning`` and
its text opens with *Acknowledged*.  With signed action links on (``alerting.external_url``
set; see :mod:`pudimd.alerting.links`), a group with one firing alert gets link buttons
*Acknowledge*, *Snooze 1h* and *Resolve* (only *Resolve* once acknowledged): attachment
actions, or an ``actions`` block with ``blocks: true``; with several firing alerts, each
alert's line ends with its own *Acknowledge* and *Resolve* links.

Incoming webhook: ``api_url`` is the webhook's URL; Slack answers ``ok``.  Bot token:
``api_url: https://slack.com/api/chat.postMessage``, the token in
``http_config.authorization.credentials`` (type ``Bearer``) and ``channel`` set; Slack
answers HTTP 200 with ``{"ok": false, "error": ...}`` on failure (a non-retryable
failure, except Slack's own transient errors), and the message's ``ts`` is recorded with
the delivery.

Payload: Alertmanager's legacy form, one attachment (``title``, ``title_link``,
``pretext``, ``text``, ``fallback``, ``callback_id``, ``fields``, ``image_url``,
``thumb_url``, ``footer``, ``color``, ``mrkdwn_in``) next to ``channel``, ``username``,
``icon_emoji``, ``icon_url`` and ``link_names``.  With ``blocks: true``: Block Kit, a
``header`` block (the title), ``section`` blocks (pretext, text, fields; ``thumb_url`` as
the first section's accessory), an ``image`` block (``image_url``) and a ``context`` block
(footer and title link), with ``fallback`` as the message's ``text`` and the link buttons
in an ``actions`` block before the context; ``color`` and
``callback_id`` have no place there and are left out.

Limits: texts are cut, never refused: the title to 1024 characters (150 in a header block),
the attachment text to 30000, a footer to 300, a section to 3000 characters (a long text is
spread over several sections, at most 50 blocks in all), a field to 2000.

Errors: connection failures, timeouts, HTTP 408, 429 and 5xx are retried (honouring
``Retry-After``); any other refusal fails the notification at once.

Not supported (a config error if given): Alertmanager's ``actions`` (interactive buttons),
``app_token``/``app_token_file``/``app_url`` (use ``api_url`` and
``http_config.authorization``), ``message_text``, ``update_message``,
``post_updates_to_thread``, and the ``http_config`` fields beyond those of
:class:`pudimd_plugins.notifiers._http.HttpConfig`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Self

from pydantic import ConfigDict, Field, SecretStr, model_validator

from pudimd.alerting.notification import DeliveryError, Notification
from pudimd.alerting.templates import Template, action_buttons, truncate
from pudimd.durations import Duration
from pudimd.hookspecs import hookimpl
from pudimd.settings import NotifierSettings, SecretFile, StrictModel
from pudimd_plugins.notifiers._http import HttpClient, HttpConfig, Response
from pudimd_plugins.notifiers._http import check_url as _check_url

__all__ = ["SlackField", "SlackNotifier", "SlackSettings", "pudimd_notifier_types"]

TITLE_LIMIT = 1024
"""Alertmanager's (and Slack's legacy attachment) limit on a title."""
TEXT_LIMIT = 30000
"""The attachment text: Slack cuts messages beyond 40000 characters; leave room."""
SHORT_LIMIT = 3000
"""Pretext, fallback, a section block's text, a context element."""
FOOTER_LIMIT = 300
FIELD_TITLE_LIMIT = 300
FIELD_VALUE_LIMIT = 2000
HEADER_LIMIT = 150
MAX_BLOCKS = 50
SECTION_FIELDS = 10
"""At most this many fields in one section block."""
BUTTON_TEXT_LIMIT = 75
"""A button's label (Block Kit)."""

_TRANSIENT = {
    "internal_error",
    "fatal_error",
    "ratelimited",
    "rate_limited",
    "request_timeout",
    "service_unavailable",
    "team_added_to_org",
}
"""Web API errors worth retrying; any other ``ok: false`` answer is final."""

DEFAULT_COLOR = (
    '{% if status == "firing" %}{% if acknowledged %}warning{% else %}danger{% endif %}'
    "{% else %}good{% endif %}"
)
DEFAULT_USERNAME = "pudimd"
DEFAULT_TITLE = (
    "{% if acknowledged %}[ACK] {% endif %}"
    '[{{ status | upper }}{% if status == "firing" %}:{{ firing | length }}{% endif %}] '
    '{{ common_labels.alertname or "Alerts" }}'
    '{% for name, value in group_labels | sortedpairs if name != "alertname" %}'
    " {{ value }}{% endfor %}"
)
DEFAULT_TITLE_LINK = "{{ external_url }}"
DEFAULT_TEXT = """\
{% if acknowledged %}
*Acknowledged*: someone is on it; repeats are paused.

{% endif %}
{% for alert in alerts %}
{% if not loop.first +%}
{% endif %}
*{{ alert.status | upper }}* {{ alert.labels.alertname }}\
{% if alert.annotations.summary %}: {{ alert.annotations.summary }}{% endif +%}
{% if alert.annotations.description %}
{{ alert.annotations.description }}
{% endif %}
Labels:{% for name, value in alert.labels | sortedpairs if name != "alertname" %}\
 `{{ name }}={{ value }}`{% endfor +%}
{% if alert.status == "resolved" and alert.ends_at %}\
Resolved {{ alert.ends_at.strftime("%Y-%m-%d %H:%M:%S UTC") }}\
{% else %}Since {{ alert.starts_at.strftime("%Y-%m-%d %H:%M:%S UTC") }}{% endif %}\
{% if alert.generator_url %} · <{{ alert.generator_url }}|Source>{% endif %}\
{% if alert.annotations.runbook_url %} · <{{ alert.annotations.runbook_url }}|Runbook>{% endif %}\
{% if alert.ack_url and not ack_url %}
{% if not acknowledged %} · <{{ alert.ack_url }}|Acknowledge>{% endif %}\
 · <{{ alert.resolve_url }}|Resolve>\
{% endif +%}
{% endfor %}
{% if truncated_alerts %}

…and {{ truncated_alerts }} more alerts
{% endif %}
"""
DEFAULT_FALLBACK = DEFAULT_TITLE + "{% if external_url %} | {{ external_url }}{% endif %}"
DEFAULT_FOOTER = "pudimd · {{ receiver }}"


class SlackField(StrictModel):
    """One field of the attachment (``fields``): a title and a value, both templates."""

    title: Template
    value: Template
    short: bool | None = Field(None, description="Shown side by side; default: short_fields")


class SlackSettings(NotifierSettings):
    """One entry of a receiver's ``slack_configs`` (see the module docstring)."""

    # Secrets (URLs with tokens, keys) must not be echoed in config errors.
    model_config = ConfigDict(hide_input_in_errors=True)

    send_resolved: bool = False
    api_url: SecretStr | None = Field(
        None, description="Incoming webhook URL, or https://slack.com/api/chat.postMessage"
    )
    api_url_file: SecretFile | None = Field(None, description="File holding api_url")
    http_config: HttpConfig | None = None
    timeout: Duration | None = Field(
        None, description="Time allowed per request; 0 or unset: the dispatcher's timeout"
    )
    channel: Template | None = Field(None, description="Channel (or @user) to post to")
    username: Template | None = None
    color: Template | None = Field(None, description="good, warning, danger or #rrggbb")
    title: Template | None = None
    title_link: Template | None = None
    pretext: Template | None = None
    text: Template | None = None
    fields: list[SlackField] = Field(default_factory=list)
    short_fields: bool = False
    footer: Template | None = None
    fallback: Template | None = None
    callback_id: Template | None = None
    icon_emoji: Template | None = None
    icon_url: Template | None = None
    image_url: Template | None = None
    thumb_url: Template | None = None
    link_names: bool = False
    mrkdwn_in: list[str] | None = Field(
        None, description="Attachment fields read as mrkdwn; default fallback, pretext, text"
    )
    blocks: bool = Field(False, description="pudimd: send Block Kit blocks, not an attachment")

    @model_validator(mode="after")
    def _api_url(self) -> Self:
        if self.api_url is None:
            raise ValueError(
                "one of api_url or api_url_file must be configured "
                "(or global slack_api_url / slack_api_url_file)"
            )
        _check_url(self.api_url.get_secret_value(), "api_url")
        return self


def _chunks(text: str, size: int) -> list[str]:
    """``text`` in pieces of at most ``size`` characters, cut at line ends when one is near."""
    pieces: list[str] = []
    while text:
        if len(text) <= size:
            pieces.append(text)
            break
        cut = text.rfind("\n", 0, size + 1)
        if cut < size // 2:
            cut = size
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    return [piece for piece in (p.strip() for p in pieces) if piece]


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


class SlackNotifier:
    """Post notifications to Slack (see the module docstring)."""

    type = "slack"
    config_key = "slack_configs"
    Settings = SlackSettings
    global_defaults: dict[str, str] = {
        "slack_api_url": "api_url",
        "slack_api_url_file": "api_url_file",
    }

    def __init__(self, settings: SlackSettings) -> None:
        self.settings = settings
        self._http = HttpClient(settings.http_config)

    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON document posted for ``notification``."""
        st = self.settings
        render = notification.render
        message: dict[str, Any] = {}
        for key, value in (
            ("channel", render(st.channel, "")),
            ("username", render(st.username, DEFAULT_USERNAME)),
            ("icon_emoji", render(st.icon_emoji, "")),
            ("icon_url", render(st.icon_url, "")),
        ):
            if value.strip():
                message[key] = value.strip()
        if st.link_names:
            message["link_names"] = True
        title = truncate(render(st.title, DEFAULT_TITLE).strip(), TITLE_LIMIT)
        fallback = truncate(render(st.fallback, DEFAULT_FALLBACK).strip(), SHORT_LIMIT)
        parts = {
            "title_link": render(st.title_link, DEFAULT_TITLE_LINK).strip(),
            "pretext": truncate(render(st.pretext, "").strip(), SHORT_LIMIT),
            "text": render(st.text, DEFAULT_TEXT).strip(),
            "image_url": render(st.image_url, "").strip(),
            "thumb_url": render(st.thumb_url, "").strip(),
            "footer": truncate(render(st.footer, DEFAULT_FOOTER).strip(), FOOTER_LIMIT),
        }
        fields = [
            {
                "title": truncate(render(field.title, "").strip(), FIELD_TITLE_LIMIT),
                "value": truncate(render(field.value, "").strip(), FIELD_VALUE_LIMIT),
                "short": st.short_fields if field.short is None else field.short,
            }
            for field in st.fields
        ]
        # Slack refuses a message with nothing to show: the fallback never is empty.
        fallback = fallback or truncate(title, SHORT_LIMIT) or "pudimd notification"
        buttons = action_buttons(notification)
        if st.blocks:
            message["text"] = fallback
            blocks = self._blocks(title, parts, fields, buttons)
            if blocks:
                message["blocks"] = blocks
            return message
        attachment: dict[str, Any] = {
            "title": title,
            "title_link": parts["title_link"],
            "pretext": parts["pretext"],
            "text": truncate(parts["text"], TEXT_LIMIT),
            "fallback": fallback,
            "callback_id": render(st.callback_id, "").strip(),
            "fields": fields,
            "image_url": parts["image_url"],
            "thumb_url": parts["thumb_url"],
            "footer": parts["footer"],
            "color": render(st.color, DEFAULT_COLOR).strip(),
            "mrkdwn_in": st.mrkdwn_in if st.mrkdwn_in else ["fallback", "pretext", "text"],
            # Link buttons: Slack opens the URL (legacy attachment actions, at most 5).
            "actions": [
                {"type": "button", "text": label, "url": url}
                | ({"style": "primary"} if action == "ack" else {})
                for action, label, url in buttons
            ],
        }
        # Slack treats an empty string like a missing key; leaving them out keeps the
        # message small and readable.
        message["attachments"] = [
            {key: value for key, value in attachment.items() if value not in ("", [])}
        ]
        return message

    @staticmethod
    def _blocks(
        title: str,
        parts: dict[str, str],
        fields: list[dict[str, Any]],
        buttons: Sequence[tuple[str, str, str]],
    ) -> list[dict[str, Any]]:
        head: list[dict[str, Any]] = []
        tail: list[dict[str, Any]] = []
        if title:
            head.append(
                {
                    "type": "header",
                    "text": {
                        "type": "plain_text",
                        "text": truncate(title, HEADER_LIMIT),
                        "emoji": True,
                    },
                }
            )
        if parts["pretext"]:
            head.append({"type": "section", "text": _mrkdwn(parts["pretext"])})
        shown = [f for f in fields if f["title"] or f["value"]]
        for start in range(0, len(shown), SECTION_FIELDS):
            tail.append(
                {
                    "type": "section",
                    "fields": [
                        _mrkdwn(truncate(f"*{f['title']}*\n{f['value']}", FIELD_VALUE_LIMIT))
                        for f in shown[start : start + SECTION_FIELDS]
                    ],
                }
            )
        if parts["image_url"]:
            tail.append(
                {
                    "type": "image",
                    "image_url": parts["image_url"],
                    "alt_text": truncate(title or "image", 2000),
                }
            )
        if buttons:
            tail.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {
                                "type": "plain_text",
                                "text": truncate(label, BUTTON_TEXT_LIMIT),
                                "emoji": True,
                            },
                            "url": url,
                            "action_id": f"pudimd-{action}",
                        }
                        | ({"style": "primary"} if action == "ack" else {})
                        for action, label, url in buttons
                    ],
                }
            )
        context = [
            _mrkdwn(text)
            for text in (
                parts["footer"],
                f"<{parts['title_link']}|Open in pudimd>" if parts["title_link"] else "",
            )
            if text
        ]
        if context:
            tail.append({"type": "context", "elements": context})
        # Whatever room is left goes to the text, spread over sections.
        room = MAX_BLOCKS - len(head) - len(tail)
        if room < 1:
            tail = tail[: max(0, MAX_BLOCKS - len(head) - 1)]
            room = MAX_BLOCKS - len(head) - len(tail)
        pieces = _chunks(parts["text"], SHORT_LIMIT)
        if len(pieces) > room:
            rest = "\n".join(pieces[room - 1 :])
            pieces = [*pieces[: room - 1], truncate(rest, SHORT_LIMIT)]
        sections: list[dict[str, Any]] = [
            {"type": "section", "text": _mrkdwn(piece)} for piece in pieces
        ]
        if parts["thumb_url"] and sections:
            sections[0]["accessory"] = {
                "type": "image",
                "image_url": parts["thumb_url"],
                "alt_text": "thumbnail",
            }
        blocks = [*head, *sections, *tail]
        return blocks[:MAX_BLOCKS]

    async def send(self, notification: Notification, timeout: float) -> str | None:
        if self.settings.timeout:
            timeout = min(timeout, self.settings.timeout.total_seconds())
        assert self.settings.api_url is not None  # the settings' validator saw to it
        response = await self._http.post(
            self.settings.api_url.get_secret_value(),
            json_body=self.payload(notification),
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=timeout,
        )
        return _answer(response)

    async def aclose(self) -> None:
        await self._http.aclose()


def _answer(response: Response) -> str | None:
    """What Slack's 2xx answer says: ``ok`` (a webhook), or the Web API's JSON (``ok`` and
    ``ts``, or ``error``)."""
    content_type = next(
        (value for key, value in response.headers.items() if key.lower() == "content-type"), ""
    )
    text = response.body.decode("utf-8", "replace").strip()
    if content_type.startswith("application/json"):
        try:
            data = json.loads(text)
        except ValueError:
            raise DeliveryError(f"Slack answered invalid JSON: {text[:200]!r}") from None
        if not isinstance(data, dict):
            raise DeliveryError(f"Slack answered unexpected JSON: {text[:200]!r}")
        if not data.get("ok"):
            error = str(data.get("error") or "unknown error")
            raise DeliveryError(
                f"Slack refused the message: {error}", retryable=error in _TRANSIENT
            )
        ts = data.get("ts")
        return str(ts) if ts else None
    if text != "ok":
        raise DeliveryError(f"Slack refused the message: {text[:200]}", retryable=False)
    return None


@hookimpl
def pudimd_notifier_types() -> list[type[Any]]:
    """The ``slack`` notifier."""
    return [SlackNotifier]
