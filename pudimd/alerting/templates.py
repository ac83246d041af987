"""Notification templates: Jinja2 in a sandbox.

Receivers override a notifier's default texts with templates such as::

    title: "[{{ status | upper }}] {{ common_labels.alertname }} ({{ firing | length }})"

A template sees (:func:`template_data`):

- ``status`` (``firing``/``resolved``), ``receiver``, ``group_key``, ``external_url``,
  ``truncated_alerts``;
- ``acknowledged``: every firing alert of the group is acknowledged (the dispatcher sends
  a follow-up notification when this changes; the default texts then say so);
- ``group_labels``, ``common_labels``, ``common_annotations`` (a missing key renders empty);
- ``alerts``, ``firing``, ``resolved``: lists of alerts, each with ``status``, ``labels``,
  ``annotations``, ``starts_at``, ``ends_at`` (datetimes, ``ends_at`` may be None),
  ``generator_url``, ``fingerprint``, and its signed action links ``ack_url``,
  ``resolve_url``, ``snooze_url`` (see :mod:`pudimd.alerting.links`);
- ``ack_url``, ``resolve_url``, ``snooze_url``: the links of the group's firing alert when
  exactly one fires and none was left out (``max_alerts``), else None: the buttons of
  chat messages (:func:`action_buttons`);
- ``action_links``: whether links are on for this notification, and ``snooze_for``, how
  long the snooze link snoozes (``1h``).

Links are None for a resolved alert and when links are off: ``external_url`` empty,
``alerting.action_links.enabled`` false, or no running daemon (``pudimd route test``,
unit tests).  Each render signs fresh links, valid for ``alerting.action_links.ttl`` from
then (a retried notification carries links valid from its retry); an alert's links are
signed only when a template uses them.

The sandbox forbids attribute access to internals and unsafe calls; templates cannot touch
the file system.  :data:`Template` is the field type for a template in a ``Settings`` model:
a syntax error is a config error at the field.  Helpers for vendor limits:
:func:`truncate` and :func:`truncate_bytes`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator

if TYPE_CHECKING:
    import jinja2

    from pudimd.alerting.links import ActionLinks, LinkName
    from pudimd.alerting.notification import AlertInfo, Notification

__all__ = [
    "Template",
    "action_buttons",
    "compile_template",
    "render",
    "render_notification",
    "template_data",
    "truncate",
    "truncate_bytes",
]

ELLIPSIS = "…"


class _Labels(dict[str, str]):
    """A label map whose missing keys render as the empty string (Alertmanager treats an
    absent label as an empty one)."""

    def __missing__(self, key: str) -> str:
        return ""

    def __getattr__(self, key: str) -> str:
        if key.startswith("_"):
            raise AttributeError(key)
        return self.get(key, "")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.ChainableUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["truncate_text"] = truncate
    env.filters["sortedpairs"] = lambda mapping: sorted(dict(mapping).items())
    return env


@lru_cache(maxsize=512)
def compile_template(source: str) -> jinja2.Template:
    """Compile ``source`` (cached).  Raises ``jinja2.TemplateSyntaxError``."""
    return _environment().from_string(source)


def _check(source: str) -> str:
    import jinja2

    try:
        compile_template(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"template error on line {exc.lineno}: {exc.message}") from None
    return source


Template = Annotated[str, AfterValidator(_check)]
"""A Jinja2 template in a ``Settings`` model: compiled when the config is loaded."""


_LINKS: dict[str, LinkName] = {"ack_url": "ack", "resolve_url": "resolve", "snooze_url": "snooze"}


class _Alert(dict[str, Any]):
    """One alert as a template sees it; its action links are signed when first used (an
    HMAC per link and alert adds up on a large group rendered field by field)."""

    __slots__ = ("_links", "_now")

    def __init__(self, data: dict[str, Any], links: ActionLinks | None, now: float) -> None:
        super().__init__(data)
        self._links = links
        self._now = now

    def __missing__(self, key: str) -> Any:
        action = _LINKS.get(key)
        if action is None:
            raise KeyError(key)
        url = None
        if self._links is not None and self["status"] == "firing":
            url = self._links.url(self["fingerprint"], action, self._now)
        self[key] = url
        return url


def _alert(alert: AlertInfo, links: ActionLinks | None = None, now: float = 0.0) -> _Alert:
    return _Alert(
        {
            "status": alert.status,
            "labels": _Labels(alert.labels),
            "annotations": _Labels(alert.annotations),
            "starts_at": alert.starts_at,
            "ends_at": alert.ends_at,
            "generator_url": alert.generator_url,
            "fingerprint": alert.fingerprint,
        },
        links,
        now,
    )


def template_data(notification: Notification) -> dict[str, Any]:
    """What a template sees for ``notification`` (see the module docstring)."""
    from pudimd.alerting.links import links_for
    from pudimd.durations import format_duration

    links = links_for(notification.external_url)
    now = time.time()
    alerts = [_alert(alert, links, now) for alert in notification.alerts]
    firing = [alert for alert in alerts if alert["status"] == "firing"]
    only = firing[0] if len(firing) == 1 and not notification.truncated_alerts else None
    data = {
        "status": notification.status,
        "receiver": notification.receiver,
        "group_key": notification.group_key,
        "external_url": notification.external_url,
        "truncated_alerts": notification.truncated_alerts,
        "acknowledged": notification.acknowledged,
        "group_labels": _Labels(notification.group_labels),
        "common_labels": _Labels(notification.common_labels),
        "common_annotations": _Labels(notification.common_annotations),
        "alerts": alerts,
        "firing": firing,
        "resolved": [alert for alert in alerts if alert["status"] == "resolved"],
        "action_links": links is not None,
        "snooze_for": (
            format_duration(timedelta(seconds=links.snooze)) if links is not None else None
        ),
    }
    for key in _LINKS:
        data[key] = only[key] if only is not None else None
    return data


def action_buttons(notification: Notification) -> list[tuple[LinkName, str, str]]:
    """``(action, label, url)`` of the buttons a chat message shows for its group's one
    firing alert: ``Acknowledge`` and ``Snooze 1h`` (unless the group is acknowledged) and
    ``Resolve``.  Empty when links are off, or when not exactly one alert fires (or some
    were left out): the default texts then carry each alert's links."""
    from pudimd.alerting.links import links_for
    from pudimd.durations import format_duration

    firing = notification.firing
    if len(firing) != 1 or notification.truncated_alerts:
        return []
    links = links_for(notification.external_url)
    if links is None:
        return []
    now, fp = time.time(), firing[0].fingerprint
    buttons: list[tuple[LinkName, str, str]] = []
    if not notification.acknowledged:
        buttons.append(("ack", "Acknowledge", links.url(fp, "ack", now)))
        snooze = format_duration(timedelta(seconds=links.snooze))
        buttons.append(("snooze", f"Snooze {snooze}", links.url(fp, "snooze", now)))
    buttons.append(("resolve", "Resolve", links.url(fp, "resolve", now)))
    return buttons


def render(source: str, data: Mapping[str, Any]) -> str:
    """Render template ``source`` with ``data``.  Raises the template's error (syntax,
    sandbox security, a failing filter...)."""
    return compile_template(source).render(dict(data))


def render_notification(source: str, notification: Notification) -> str:
    """Render ``source`` for ``notification`` (with :func:`template_data`)."""
    return render(source, template_data(notification))


def truncate(text: str, limit: int, marker: str = ELLIPSIS) -> str:
    """``text`` cut to at most ``limit`` characters, ending with ``marker`` when cut."""
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return text[:limit]
    return text[: limit - len(marker)] + marker


def truncate_bytes(text: str, limit: int, marker: str = ELLIPSIS) -> str:
    """``text`` cut so that its UTF-8 encoding is at most ``limit`` bytes, never in the
    middle of a character, ending with ``marker`` when cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    room = limit - len(marker.encode())
    if room <= 0:
        return data[:limit].decode(errors="ignore")
    return data[:room].decode(errors="ignore") + marker
