"""Notification templates: Jinja2 in a sandbox.

Receivers override a notifier's default texts with templates such as::

    title: "[{{ status | upper }}] {{ common_labels.alertname }} ({{ firing | length }})"

A template sees (:func:`template_data`):

- ``status`` (``firing``/``resolved``), ``receiver``, ``group_key``, ``external_url``,
  ``truncated_alerts``;
- ``group_labels``, ``common_labels``, ``common_annotations`` (a missing key renders empty);
- ``alerts``, ``firing``, ``resolved``: lists of alerts, each with ``status``, ``labels``,
  ``annotations``, ``starts_at``, ``ends_at`` (datetimes, ``ends_at`` may be None),
  ``generator_url``, ``fingerprint``.

The sandbox forbids attribute access to internals and unsafe calls; templates cannot touch
the file system.  :data:`Template` is the field type for a template in a ``Settings`` model:
a syntax error is a config error at the field.  Helpers for vendor limits:
:func:`truncate` and :func:`truncate_bytes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator

if TYPE_CHECKING:
    import jinja2

    from pudimd.alerting.notification import AlertInfo, Notification

__all__ = [
    "Template",
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


def _alert(alert: AlertInfo) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": _Labels(alert.labels),
        "annotations": _Labels(alert.annotations),
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "generator_url": alert.generator_url,
        "fingerprint": alert.fingerprint,
    }


def template_data(notification: Notification) -> dict[str, Any]:
    """What a template sees for ``notification`` (see the module docstring)."""
    alerts = [_alert(alert) for alert in notification.alerts]
    return {
        "status": notification.status,
        "receiver": notification.receiver,
        "group_key": notification.group_key,
        "external_url": notification.external_url,
        "truncated_alerts": notification.truncated_alerts,
        "group_labels": _Labels(notification.group_labels),
        "common_labels": _Labels(notification.common_labels),
        "common_annotations": _Labels(notification.common_annotations),
        "alerts": alerts,
        "firing": [alert for alert in alerts if alert["status"] == "firing"],
        "resolved": [alert for alert in alerts if alert["status"] == "resolved"],
    }


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
