"""The ``discord`` notifier: post a message with an embed to a Discord webhook.

Configured in a receiver's ``discord_configs`` with Alertmanager's fields, so an
``alertmanager.yml`` receiver entry validates unchanged::

    discord_configs:
      - webhook_url: https://discord.com/api/webhooks/123/abc   # or webhook_url_file
        send_resolved: true      # default true, as in Alertmanager
        title: ...               # the embed's title
        message: ...             # the embed's description
        content: ...             # the message text above the embed (default: none)
        username: pudimd         # overrides the webhook's name (default: the webhook's)
        avatar_url: ...          # overrides the webhook's avatar
        http_config: {...}       # Alertmanager's http_config

``title``, ``message`` and ``content`` are Jinja2 templates (see
:mod:`pudimd.alerting.templates`); one that fails to render is recorded in the
notification's template errors and its default is used instead.  The default title says the
status and how many alerts fire (``[FIRING:2] HighLatency``); the default message lists the
firing then the resolved alerts with their summary, description, labels, start (or
resolution) time and links to their source and ``runbook_url``.

Acknowledgement and action links: once every firing alert of the group is acknowledged,
the follow-up's default title starts with ``[ACK]``, its embed is orange (``0xE67E22``)
and its message opens with **Acknowledged**.  With signed action links on
(``alerting.external_url`` set; see :mod:`pudimd.alerting.links`), each firing alert ends
with Markdown links *Acknowledge*, *Snooze 1h* and *Resolve* (only *Resolve* once
acknowledged): a webhook message cannot carry buttons.

Payload: Discord's *Execute Webhook* body: ``content`` (when not empty), ``username``,
``avatar_url`` and one embed: ``title``, ``description``, ``url`` (the external URL),
``color`` (red ``0x992D22`` while firing, green ``0x2ECC71`` when resolved, as
Alertmanager), ``timestamp``, a ``footer`` (``pudimd · <receiver>``) and one inline field
per common label (but ``alertname``).

Limits (Discord refuses a message that breaks one; pudimd cuts instead): content 2000
characters; embed title 256, description 4096, footer 2048, field name 256 and value 1024,
25 fields; 6000 characters across title, description, fields and footer (fields are
dropped first, from the last, then the description is cut).  ``username`` must be 1 to 80
characters and may not contain ``discord`` or ``clyde`` (a config error, as Discord would
refuse it).

Errors: connection failures, timeouts, HTTP 408, 429 and 5xx are retried; a 429 honours
``Retry-After`` or the ``retry_after`` of Discord's JSON answer.  Any other refusal
fails the notification at once.

Not supported (a config error if given): the ``http_config`` fields beyond those of
:class:`pudimd_plugins.notifiers._http.HttpConfig`.
"""

from __future__ import annotations

import json
from typing import Any, Self

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from pudimd.alerting.notification import DeliveryError, Notification, format_time
from pudimd.alerting.templates import Template, truncate
from pudimd.hookspecs import hookimpl
from pudimd.settings import NotifierSettings, SecretFile
from pudimd_plugins.notifiers._http import HttpClient, HttpConfig
from pudimd_plugins.notifiers._http import check_url as _check_url

__all__ = ["DiscordNotifier", "DiscordSettings", "pudimd_notifier_types"]

CONTENT_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FOOTER_LIMIT = 2048
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
MAX_FIELDS = 25
EMBED_TOTAL_LIMIT = 6000
"""Characters across every embed of a message: titles, descriptions, field names and
values, footers, author names."""
USERNAME_LIMIT = 80

COLOR_FIRING = 0x992D22
COLOR_ACKNOWLEDGED = 0xE67E22
COLOR_RESOLVED = 0x2ECC71

DEFAULT_TITLE = (
    "{% if acknowledged %}[ACK] {% endif %}"
    '[{{ status | upper }}{% if status == "firing" %}:{{ firing | length }}{% endif %}] '
    '{{ common_labels.alertname or "Alerts" }}'
    '{% for name, value in group_labels | sortedpairs if name != "alertname" %}'
    " {{ value }}{% endfor %}"
)
_ALERT = """\
**{{ alert.labels.alertname }}**\
{% if alert.annotations.summary %}: {{ alert.annotations.summary }}{% endif +%}
{% if alert.annotations.description %}
{{ alert.annotations.description }}
{% endif %}
Labels:{% for name, value in alert.labels | sortedpairs if name != "alertname" %}\
 `{{ name }}={{ value }}`{% endfor +%}
{% if alert.status == "resolved" and alert.ends_at %}\
Resolved <t:{{ alert.ends_at.timestamp() | int }}:R>\
{% else %}Since <t:{{ alert.starts_at.timestamp() | int }}:R>{% endif %}\
{% if alert.generator_url %} · [Source]({{ alert.generator_url }}){% endif %}\
{% if alert.annotations.runbook_url %} · [Runbook]({{ alert.annotations.runbook_url }}){% endif +%}
{% if alert.ack_url %}
{% if not acknowledged %}[Acknowledge]({{ alert.ack_url }}) · \
[Snooze {{ snooze_for }}]({{ alert.snooze_url }}) · {% endif %}\
[Resolve]({{ alert.resolve_url }})
{% endif %}
"""
_SPACER = "{% if not loop.first +%}\n{% endif %}\n"
DEFAULT_MESSAGE = (
    "{% if acknowledged %}\n"
    "**Acknowledged**: someone is on it; repeats are paused.\n\n"
    "{% endif %}\n"
    "{% if firing %}\n"
    "__Firing__\n"
    "{% for alert in firing %}\n" + _SPACER + _ALERT + "{% endfor %}\n"
    "{% endif %}\n"
    "{% if resolved %}\n"
    "{% if firing %}\n\n{% endif %}\n"
    "__Resolved__\n"
    "{% for alert in resolved %}\n" + _SPACER + _ALERT + "{% endfor %}\n"
    "{% endif %}\n"
    "{% if truncated_alerts %}\n"
    "\n…and {{ truncated_alerts }} more alerts\n"
    "{% endif %}\n"
)
DEFAULT_FOOTER = "pudimd · {receiver}"


class DiscordSettings(NotifierSettings):
    """One entry of a receiver's ``discord_configs`` (see the module docstring)."""

    # Secrets (URLs with tokens, keys) must not be echoed in config errors.
    model_config = ConfigDict(hide_input_in_errors=True)

    send_resolved: bool = True
    webhook_url: SecretStr | None = Field(None, description="The Discord webhook URL")
    webhook_url_file: SecretFile | None = Field(None, description="File holding webhook_url")
    http_config: HttpConfig | None = None
    title: Template | None = None
    message: Template | None = None
    content: Template | None = Field(None, description="Message text above the embed")
    username: str | None = Field(None, description="Overrides the webhook's name")
    avatar_url: str | None = Field(None, description="Overrides the webhook's avatar")

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value) > USERNAME_LIMIT:
            raise ValueError(f"username is longer than {USERNAME_LIMIT} characters")
        lower = value.lower()
        for word in ("discord", "clyde"):
            if word in lower:
                raise ValueError(f"Discord refuses a username containing {word!r}")
        return value

    @field_validator("avatar_url")
    @classmethod
    def _avatar_url(cls, value: str | None) -> str | None:
        if value:
            _check_url(value, "avatar_url")
        return value or None

    @model_validator(mode="after")
    def _webhook_url(self) -> Self:
        if self.webhook_url is None:
            raise ValueError("one of webhook_url or webhook_url_file must be configured")
        _check_url(self.webhook_url.get_secret_value(), "webhook_url")
        return self


def _embed_size(embed: dict[str, Any]) -> int:
    size = len(embed.get("title", "")) + len(embed.get("description", ""))
    size += len(embed.get("footer", {}).get("text", ""))
    size += sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
    return size


def _fit(embed: dict[str, Any], limit: int) -> None:
    """Cut ``embed`` to at most ``limit`` characters: drop fields from the last (the
    description matters more), then cut the description, then the footer and the title."""
    while _embed_size(embed) > limit and embed.get("fields"):
        embed["fields"].pop()
    if not embed.get("fields"):
        embed.pop("fields", None)
    for holder, key in ((embed, "description"), (embed.get("footer", {}), "text")):
        excess = _embed_size(embed) - limit
        if excess > 0 and holder.get(key):
            holder[key] = truncate(holder[key], max(1, len(holder[key]) - excess))
    excess = _embed_size(embed) - limit
    if excess > 0 and "title" in embed:
        embed["title"] = truncate(embed["title"], max(1, len(embed["title"]) - excess))


def _retry_after_from(message: str) -> float | None:
    """The ``retry_after`` of a Discord 429 answer quoted in ``message`` (``HTTP 429:
    {"message": ..., "retry_after": 1.5, ...}``)."""
    _, _, body = message.partition(": ")
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("retry_after") if isinstance(data, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


class DiscordNotifier:
    """Post notifications to a Discord webhook (see the module docstring)."""

    type = "discord"
    config_key = "discord_configs"
    Settings = DiscordSettings

    def __init__(self, settings: DiscordSettings) -> None:
        self.settings = settings
        self._http = HttpClient(settings.http_config)

    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON document posted for ``notification``."""
        st = self.settings
        embed: dict[str, Any] = {
            "title": truncate(notification.render(st.title, DEFAULT_TITLE).strip(), TITLE_LIMIT),
            "description": truncate(
                notification.render(st.message, DEFAULT_MESSAGE).strip(), DESCRIPTION_LIMIT
            ),
            "color": (
                COLOR_RESOLVED
                if notification.status != "firing"
                else COLOR_ACKNOWLEDGED
                if notification.acknowledged
                else COLOR_FIRING
            ),
            "timestamp": format_time(notification.created_at),
            "footer": {
                "text": truncate(
                    DEFAULT_FOOTER.format(receiver=notification.receiver), FOOTER_LIMIT
                )
            },
        }
        if notification.external_url.startswith(("http://", "https://")):
            embed["url"] = notification.external_url
        fields = [
            {
                "name": truncate(name, FIELD_NAME_LIMIT),
                "value": truncate(value, FIELD_VALUE_LIMIT),
                "inline": True,
            }
            for name, value in sorted(notification.common_labels.items())
            if name != "alertname" and value
        ]
        if fields:
            embed["fields"] = fields[:MAX_FIELDS]
        for key in ("title", "description"):
            if not embed[key]:
                del embed[key]
        _fit(embed, EMBED_TOTAL_LIMIT)
        message: dict[str, Any] = {"embeds": [embed]}
        content = truncate(notification.render(st.content, "").strip(), CONTENT_LIMIT)
        if content:
            message["content"] = content
        if st.username:
            message["username"] = st.username
        if st.avatar_url:
            message["avatar_url"] = st.avatar_url
        return message

    async def send(self, notification: Notification, timeout: float) -> str | None:
        assert self.settings.webhook_url is not None  # the settings' validator saw to it
        try:
            await self._http.post(
                self.settings.webhook_url.get_secret_value(),
                json_body=self.payload(notification),
                timeout=timeout,
            )
        except DeliveryError as exc:
            if exc.message.startswith("HTTP 429") and exc.retry_after is None:
                exc.retry_after = _retry_after_from(exc.message)
            raise
        return None

    async def aclose(self) -> None:
        await self._http.aclose()


@hookimpl
def pudimd_notifier_types() -> list[type[Any]]:
    """The ``discord`` notifier."""
    return [DiscordNotifier]
