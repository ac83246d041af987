"""What a notifier plugin is given to deliver: one :class:`Notification` for one group of
alerts and one integration of one receiver, and how it says delivery failed
(:class:`DeliveryError`).

A notification is built by the dispatcher, written to the outbox, and only then handed to
the notifier's ``send()``; it is a plain value that survives the round trip through JSON
(:meth:`Notification.to_json` / :meth:`Notification.from_json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

__all__ = [
    "ZERO_TIME",
    "AlertInfo",
    "DeliveryError",
    "Notification",
    "format_time",
    "parse_time",
]

Status = Literal["firing", "resolved"]

ZERO_TIME = "0001-01-01T00:00:00Z"
"""How Alertmanager writes an unset time (a firing alert's endsAt in webhook payloads)."""


def format_time(value: datetime | None) -> str:
    """RFC 3339 in UTC with millisecond precision (``2026-11-23T10:00:00.123Z``); None is
    :data:`ZERO_TIME`."""
    if value is None:
        return ZERO_TIME
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_time(text: str) -> datetime | None:
    """Parse an RFC 3339 time (``Z`` or an offset, any fraction); :data:`ZERO_TIME` and the
    empty string are None.  Raises ValueError on anything else."""
    if not text or text.startswith("0001-01-01T00:00:00"):
        return None
    try:  # the common case, RFC 3339 with at most six fractional digits or a Z
        parsed = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Go writes up to nine fractional digits; Python reads at most six.
    head, dot, rest = value.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone (RFC 3339 needs Z or an offset)")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class AlertInfo:
    """One alert of a notification, as Alertmanager's webhook payload shows it."""

    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    """When the alert resolved (resolved alerts), or its expected end, or None."""
    generator_url: str
    fingerprint: str

    def to_json(self) -> dict[str, Any]:
        """The webhook (version 4) form: ``status``, ``labels``, ``annotations``,
        ``startsAt``, ``endsAt`` (:data:`ZERO_TIME` for a firing alert without one),
        ``generatorURL``, ``fingerprint``."""
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": format_time(self.starts_at),
            "endsAt": format_time(self.ends_at),
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertInfo:
        starts = parse_time(data["startsAt"])
        if starts is None:
            raise ValueError("an alert needs startsAt")
        return cls(
            status=data["status"],
            labels=dict(data["labels"]),
            annotations=dict(data.get("annotations") or {}),
            starts_at=starts,
            ends_at=parse_time(data.get("endsAt") or ""),
            generator_url=data.get("generatorURL") or "",
            fingerprint=data["fingerprint"],
        )


@dataclass(frozen=True)
class Notification:
    """One message to deliver: a group's alerts, for one integration of one receiver."""

    receiver: str
    """The receiver's name (``receivers[].name``)."""
    integration: str
    """``<notifier type>/<index>`` within the receiver, e.g. ``webhook/0``."""
    group_key: str
    """Identifies the aggregation group, Alertmanager-style: ``{}/{env="prod"}:{alertname="X"}``."""
    idempotency_key: str
    """Stable for a given receiver, group and content: resending after a crash sends the
    same key (webhook ``X-Pudimd-Idempotency-Key``; PagerDuty derives ``dedup_key`` from
    the group key instead, so trigger and resolve meet)."""
    status: Status
    """``firing`` when at least one alert fires, else ``resolved``."""
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    alerts: tuple[AlertInfo, ...]
    created_at: datetime
    truncated_alerts: int = 0
    """Alerts left out of :attr:`alerts` (a receiver's ``max_alerts``)."""
    acknowledged: bool = False
    """The group's firing alerts were acknowledged by an on-call engineer; notifiers whose
    receiver knows acknowledgement (PagerDuty's ``acknowledge`` event) say so."""
    id: int = 0
    """The outbox row (0 when the notification was not stored, as in ``notify test``)."""
    template_errors: list[str] = field(default_factory=list, compare=False)
    """Template errors met while rendering this notification (see :meth:`render`); the
    dispatcher logs and counts them after ``send()``."""

    @property
    def firing(self) -> list[AlertInfo]:
        return [alert for alert in self.alerts if alert.status == "firing"]

    @property
    def resolved(self) -> list[AlertInfo]:
        return [alert for alert in self.alerts if alert.status == "resolved"]

    def webhook_payload(self) -> dict[str, Any]:
        """Alertmanager's webhook payload, version 4; when every firing alert of the group
        is acknowledged, with pudimd's ``"acknowledged": true`` (receivers that do not know
        it ignore it, as they ignore any field they do not know)."""
        payload = {
            "version": "4",
            "groupKey": self.group_key,
            "truncatedAlerts": self.truncated_alerts,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": self.group_labels,
            "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations,
            "externalURL": self.external_url,
            "alerts": list(self._alerts_json),
        }
        if self.acknowledged:
            payload["acknowledged"] = True
        return payload

    @cached_property
    def _alerts_json(self) -> list[dict[str, Any]]:
        """The alerts' webhook form, made once per notification: the outbox stores it and
        the webhook notifier sends it."""
        return [alert.to_json() for alert in self.alerts]

    def render(self, template: str | None, default: str) -> str:
        """Render a receiver's ``template`` (Jinja2, sandboxed; see
        :mod:`pudimd.alerting.templates`) for this notification, or ``default`` when
        ``template`` is None.  A template that fails is recorded in
        :attr:`template_errors` and ``default`` is rendered instead, so a bad template
        never loses a notification."""
        from pudimd.alerting.templates import render_notification

        if template is not None:
            try:
                return render_notification(template, self)
            except Exception as exc:
                self.template_errors.append(f"{type(exc).__name__}: {exc}")
        return render_notification(default, self)

    def to_json(self) -> dict[str, Any]:
        """Everything, for the outbox (times in RFC 3339)."""
        data = self.webhook_payload()
        data.update(
            integration=self.integration,
            idempotencyKey=self.idempotency_key,
            createdAt=format_time(self.created_at),
            acknowledged=self.acknowledged,
            id=self.id,
        )
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        created = parse_time(data["createdAt"])
        assert created is not None
        return cls(
            receiver=data["receiver"],
            integration=data["integration"],
            group_key=data["groupKey"],
            idempotency_key=data["idempotencyKey"],
            status=data["status"],
            group_labels=dict(data["groupLabels"]),
            common_labels=dict(data["commonLabels"]),
            common_annotations=dict(data["commonAnnotations"]),
            external_url=data["externalURL"],
            alerts=tuple(AlertInfo.from_json(alert) for alert in data["alerts"]),
            created_at=created,
            truncated_alerts=int(data.get("truncatedAlerts", 0)),
            acknowledged=bool(data.get("acknowledged", False)),
            id=int(data.get("id", 0)),
        )


class DeliveryError(Exception):
    """Raised by a notifier's ``send()`` when delivery failed.

    ``retryable`` False means trying again cannot help (the receiver refused the payload,
    e.g. an HTTP 400): the notification is recorded as failed at once instead of being
    retried until its maximum age.  ``retry_after`` (seconds) is the receiver's own hint
    (HTTP ``Retry-After``).  Any other exception from ``send()`` counts as retryable.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"DeliveryError({self.message!r}, retryable={self.retryable!r}, "
            f"retry_after={self.retry_after!r})"
        )
