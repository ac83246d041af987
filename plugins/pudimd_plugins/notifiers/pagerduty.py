"""The ``pagerduty`` notifier: trigger, acknowledge and resolve PagerDuty incidents with the
Events API v2.

Configured in a receiver's ``pagerduty_configs`` with Alertmanager's fields, so an
``alertmanager.yml`` receiver entry validates unchanged::

    pagerduty_configs:
      - routing_key: 0123456789abcdef0123456789abcdef   # or routing_key_file
        send_resolved: true        # default true, as in Alertmanager
        url: https://events.pagerduty.com/v2/enqueue   # default: global pagerduty_url
        client: pudimd             # who sends the event
        client_url: ...            # a link back (default: the external URL)
        description: ...           # the incident's summary (at most 1024 characters)
        severity: ...              # critical, error, warning or info
        source: ...                # the affected system (default: client)
        class: ...
        component: ...
        group: ...
        details: {runbook: "{{ common_annotations.runbook_url }}"}   # custom details
        images: [{src: ..., href: ..., alt: ...}]
        links: [{href: ..., text: ...}]
        timeout: 10s               # optional; unset or 0: the dispatcher's timeout
        http_config: {...}         # Alertmanager's http_config

Every text is a Jinja2 template (see :mod:`pudimd.alerting.templates`; ``routing_key`` too
when it contains ``{{``); one that fails to render is recorded in the notification's
template errors and its default is used instead.  Defaults: ``description`` says the status
and how many alerts fire (``[FIRING:2] HighLatency``); ``severity`` is the group's common
``severity`` label when it is one of PagerDuty's four, else ``error`` (Alertmanager's
default is always ``error``); ``details`` always holds ``firing`` and ``resolved`` (the
alerts' labels, annotations and sources, as text) and ``num_firing``/``num_resolved``, to
which the configured ``details`` are added (or which they replace, key by key), as in
Alertmanager.  A ``severity`` that renders to anything but ``critical``, ``error``,
``warning`` or ``info`` (case-insensitive) is sent as ``error`` and recorded as a
template error, so the page still goes out (Alertmanager sends it as is and PagerDuty
refuses the event).

Events: ``trigger`` while the group fires, ``acknowledge`` once the group's firing alerts are
acknowledged in pudimd, ``resolve`` when every alert resolved.  The ``dedup_key`` is the
SHA-256 (hex) of the group key, as Alertmanager computes it, so the three events of a
group meet on one incident (and an incident opened by Alertmanager for the same group is
resolved by pudimd).  The event's ``payload.timestamp`` is when the group's first firing
alert started.  The ``dedup_key`` PagerDuty answers is recorded with the delivery.

Limits: the summary is cut to 1024 characters; an event over 512 KB has its largest custom
details cut (evenly) until it fits (as a last resort they are replaced by a note, as
Alertmanager does).  Images without ``src`` and links without ``href`` are left out.

Errors: PagerDuty answers 400 to an invalid event: the notification fails at once (with
PagerDuty's list of errors).  Connection failures, timeouts, 429 and 5xx are retried
(honouring ``Retry-After``).

Not supported (a config error if given): ``service_key``/``service_key_file`` (the Events
API v1 "Prometheus" integration type: create an "Events API v2" integration and use its
key as ``routing_key``), custom ``details`` values that are not strings (recent
Alertmanager versions accept nested values), and the ``http_config`` fields beyond those of
:class:`pudimd_plugins.notifiers._http.HttpConfig`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Self

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from pudimd.alerting.notification import DeliveryError, Notification, format_time
from pudimd.alerting.templates import Template, compile_template, truncate
from pudimd.durations import Duration
from pudimd.hookspecs import hookimpl
from pudimd.settings import NotifierSettings, SecretFile, StrictModel
from pudimd_plugins.notifiers._http import HttpClient, HttpConfig

__all__ = [
    "PagerdutyImage",
    "PagerdutyLink",
    "PagerdutyNotifier",
    "PagerdutySettings",
    "dedup_key",
    "pudimd_notifier_types",
]

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_LIMIT = 1024
EVENT_LIMIT = 512_000
"""Bytes of JSON per event (PagerDuty's 512 KB, counted as Alertmanager does)."""
SEVERITIES = ("critical", "error", "warning", "info")
TOO_LARGE = (
    "Custom details have been removed because the original event exceeds the maximum size of 512KB"
)

DEFAULT_DESCRIPTION = (
    '[{{ status | upper }}{% if status == "firing" %}:{{ firing | length }}{% endif %}] '
    '{{ common_labels.alertname or "Alerts" }}'
    '{% for name, value in group_labels | sortedpairs if name != "alertname" %}'
    " {{ value }}{% endfor %}"
)
DEFAULT_CLIENT = "pudimd"
DEFAULT_CLIENT_URL = "{{ external_url }}"
DEFAULT_SEVERITY = (
    '{% if common_labels.severity | lower in ["critical", "error", "warning", "info"] %}'
    "{{ common_labels.severity | lower }}{% else %}error{% endif %}"
)
_INSTANCES = """\
{% for alert in %s %}
Labels:
{% for name, value in alert.labels | sortedpairs %}
 - {{ name }} = {{ value }}
{% endfor %}
Annotations:
{% for name, value in alert.annotations | sortedpairs %}
 - {{ name }} = {{ value }}
{% endfor %}
Source: {{ alert.generator_url }}
{% endfor %}
"""
DEFAULT_DETAILS = {
    "firing": _INSTANCES.replace("%s", "firing"),
    "resolved": _INSTANCES.replace("%s", "resolved"),
    "num_firing": "{{ firing | length }}",
    "num_resolved": "{{ resolved | length }}",
}


class PagerdutyImage(StrictModel):
    """An image shown with the incident (``images``)."""

    src: Template
    href: Template | None = None
    alt: Template | None = None


class PagerdutyLink(StrictModel):
    """A link shown with the incident (``links``)."""

    href: Template
    text: Template | None = None


class PagerdutySettings(NotifierSettings):
    """One entry of a receiver's ``pagerduty_configs`` (see the module docstring)."""

    # Secrets (URLs with tokens, keys) must not be echoed in config errors.
    model_config = ConfigDict(hide_input_in_errors=True)

    send_resolved: bool = True
    routing_key: SecretStr | None = Field(
        None, description="The integration key of an Events API v2 integration"
    )
    routing_key_file: SecretFile | None = Field(None, description="File holding routing_key")
    url: str = Field(EVENTS_URL, description="The Events API v2 enqueue URL")
    http_config: HttpConfig | None = None
    timeout: Duration | None = Field(
        None, description="Time allowed per request; 0 or unset: the dispatcher's timeout"
    )
    client: Template | None = None
    client_url: Template | None = None
    description: Template | None = Field(None, description="The incident's summary")
    severity: Template | None = Field(None, description="critical, error, warning or info")
    source: Template | None = Field(None, description="The affected system; default: client")
    class_: Template | None = Field(None, alias="class")
    component: Template | None = None
    group: Template | None = None
    details: dict[str, Template] = Field(default_factory=dict)
    images: list[PagerdutyImage] = Field(default_factory=list)
    links: list[PagerdutyLink] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _no_events_v1(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("service_key", "service_key_file"):
                if name in data:
                    raise ValueError(
                        f"{name} (the Events API v1 'Prometheus' integration) is not "
                        "supported: use routing_key, the key of an Events API v2 integration"
                    )
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
        except ValueError:
            raise ValueError("url is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an absolute http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _routing_key(self) -> Self:
        if self.routing_key is None:
            raise ValueError("one of routing_key or routing_key_file must be configured")
        key = self.routing_key.get_secret_value()
        if not key.strip():
            raise ValueError("routing_key is empty")
        if "{{" in key or "{%" in key:
            try:
                compile_template(key)
            except Exception:
                # The message would quote the key: say where, not what.
                raise ValueError("routing_key is not a valid template") from None
        return self


def dedup_key(group_key: str) -> str:
    """The ``dedup_key`` of a group's events: SHA-256 (hex) of its group key, as
    Alertmanager computes it."""
    return hashlib.sha256(group_key.encode()).hexdigest()


def _encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _encoded_size(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def _cut_to_encoded(text: str, budget: int) -> str:
    """The longest ``truncate(text, n)`` whose JSON encoding takes at most ``budget``
    bytes."""
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


def _cap(sizes: list[int], budget: int) -> int:
    """The largest size every value may keep so that ``sizes`` cut to it sum to at most
    ``budget`` (small values keep all they have; the large ones share what is left)."""
    remaining = budget
    ordered = sorted(sizes)
    for index, size in enumerate(ordered):
        left = len(ordered) - index
        if size * left > remaining:
            return max(0, remaining // left)
        remaining -= size
    return max(ordered, default=0)


def _fit(event: dict[str, Any]) -> None:
    """Cut the largest custom details, evenly, until ``event`` encodes to at most
    :data:`EVENT_LIMIT` bytes; replace them by a note if that is not enough."""
    if len(_encode(event)) <= EVENT_LIMIT:
        return
    details: dict[str, str] = event["payload"]["custom_details"]
    sizes = {key: _encoded_size(value) for key, value in details.items()}
    empty = {**event, "payload": {**event["payload"], "custom_details": dict.fromkeys(details, "")}}
    budget = EVENT_LIMIT - len(_encode(empty))
    if budget > 0:
        cap = _cap(list(sizes.values()), budget)
        for key, size in sizes.items():
            if size > cap:
                details[key] = _cut_to_encoded(details[key], cap)
    if len(_encode(event)) > EVENT_LIMIT:
        event["payload"]["custom_details"] = {"error": TOO_LARGE}


class PagerdutyNotifier:
    """Send PagerDuty Events API v2 events (see the module docstring)."""

    type = "pagerduty"
    config_key = "pagerduty_configs"
    Settings = PagerdutySettings
    global_defaults: dict[str, str] = {"pagerduty_url": "url"}

    def __init__(self, settings: PagerdutySettings) -> None:
        self.settings = settings
        self._http = HttpClient(settings.http_config)

    def _routing_key(self, notification: Notification) -> str:
        assert self.settings.routing_key is not None  # the settings' validator saw to it
        key = self.settings.routing_key.get_secret_value()
        if "{{" in key or "{%" in key:
            key = notification.render(key, "")
        key = key.strip()
        if not key:
            raise DeliveryError("routing_key is empty after templating", retryable=False)
        return key

    def event(self, notification: Notification) -> dict[str, Any]:
        """The Events API v2 event sent for ``notification``."""
        st = self.settings
        render = notification.render
        if notification.status == "resolved":
            action = "resolve"
        elif notification.acknowledged:
            action = "acknowledge"
        else:
            action = "trigger"
        severity = render(st.severity, DEFAULT_SEVERITY).strip().lower()
        if severity not in SEVERITIES:
            notification.template_errors.append(
                f"severity rendered {truncate(severity, 40)!r}, not one of "
                f"{', '.join(SEVERITIES)}: sent 'error'"
            )
            severity = "error"
        client = render(st.client, DEFAULT_CLIENT).strip()
        source = render(st.source, client).strip() or client or DEFAULT_CLIENT
        summary = truncate(render(st.description, DEFAULT_DESCRIPTION).strip(), SUMMARY_LIMIT)
        firing = notification.firing
        started = min((alert.starts_at for alert in firing), default=notification.created_at)
        payload: dict[str, Any] = {
            "summary": summary or "pudimd notification",
            "source": source,
            "severity": severity,
            "timestamp": format_time(started),
        }
        for key, template in (
            ("class", st.class_),
            ("component", st.component),
            ("group", st.group),
        ):
            value = render(template, "").strip()
            if value:
                payload[key] = value
        details = {
            key: render(st.details.get(key), default) for key, default in DEFAULT_DETAILS.items()
        }
        for key, template in st.details.items():
            if key not in DEFAULT_DETAILS:
                details[key] = render(template, "")
        payload["custom_details"] = details
        event: dict[str, Any] = {
            "routing_key": self._routing_key(notification),
            "event_action": action,
            "dedup_key": dedup_key(notification.group_key),
            "payload": payload,
        }
        if client:
            event["client"] = client
        client_url = render(st.client_url, DEFAULT_CLIENT_URL).strip()
        if client_url:
            event["client_url"] = client_url
        images = []
        for image in st.images:
            src = render(image.src, "").strip()
            if src:
                item = {"src": src}
                for key, template in (("href", image.href), ("alt", image.alt)):
                    value = render(template, "").strip()
                    if value:
                        item[key] = value
                images.append(item)
        if images:
            event["images"] = images
        links = []
        for link in st.links:
            href = render(link.href, "").strip()
            if href:
                item = {"href": href}
                text = render(link.text, "").strip()
                if text:
                    item["text"] = text
                links.append(item)
        if links:
            event["links"] = links
        _fit(event)
        return event

    async def send(self, notification: Notification, timeout: float) -> str | None:
        if self.settings.timeout:
            timeout = min(timeout, self.settings.timeout.total_seconds())
        event = self.event(notification)
        try:
            response = await self._http.post(
                self.settings.url, data=_encode(event), headers=_HEADERS, timeout=timeout
            )
        except DeliveryError as exc:
            if exc.message.startswith("HTTP 400"):
                exc.message = "PagerDuty refused the event: " + exc.message
                exc.args = (exc.message,)
            raise
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("dedup_key"):
            return str(answer["dedup_key"])
        return str(event["dedup_key"])

    async def aclose(self) -> None:
        await self._http.aclose()


_HEADERS = {"Content-Type": "application/json"}


@hookimpl
def pudimd_notifier_types() -> list[type[Any]]:
    """The ``pagerduty`` notifier."""
    return [PagerdutyNotifier]
