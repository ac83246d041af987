"""Bodies of the alerting endpoints: alerts and the actions on them, escalations,
on-call, silences, reports, test notifications, the Alertmanager webhook and action
links."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pudimd.api.schemas.common import Answer, Request, Time

__all__ = [
    "ActionBody",
    "ActionLinkBody",
    "ActionLinkPage",
    "AlertHistory",
    "AlertView",
    "EscalationList",
    "EscalationNotified",
    "EscalationNotifyBody",
    "EscalationView",
    "EventList",
    "OnCallNow",
    "PostableSilence",
    "ReceiverHistory",
    "ResponseReport",
    "ScheduleView",
    "SilenceCreated",
    "SilenceList",
    "SilenceView",
    "TestNotification",
    "UptimeReport",
    "WebhookPayload",
]


class Acknowledgement(Answer):
    by: str | None
    at: Time
    until: Time | None


class AlertView(Answer):
    """An alert as pudimd holds it."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: Time
    endsAt: Time
    firing: bool
    state: str = Field(description="``active``, ``suppressed``, ``unprocessed``...")
    silencedBy: list[str]
    inhibitedBy: list[str]
    mutedBy: list[str]
    blockedBy: list[str]
    receivers: list[str]
    acknowledged: Acknowledgement | None
    assignee: str | None


class ActionBody(Request):
    """An action on an alert (every field optional; which ones matter depends on it)."""

    actor: str | None = Field(None, description="Who; default the caller")
    comment: str | None = None
    until: Time | None = Field(None, description="ack/snooze: until this time")
    for_: str | None = Field(None, alias="for", description="ack/snooze: for a duration (2h)")
    assignee: str | None = Field(None, description="assign: ``user:NAME`` or ``team:NAME``")


class Event(Answer):
    """One timeline event of an alert."""

    fingerprint: str
    at: Time
    kind: str = Field(description="``fired``, ``resolved``, ``acknowledged``...")
    alertname: str | None
    target: str | None
    actor: str | None
    interface: str | None
    detail: dict[str, Any]


class EventList(Answer):
    events: list[Event]


class Attempt(Answer):
    at: Time
    outcome: str
    seconds: float
    detail: Any


class Notification(Answer):
    id: int
    receiver: str
    integration: str
    status: str | None
    acknowledged: bool
    createdAt: Time
    state: str
    attempts: list[Attempt]


class AlertHistory(Answer):
    fingerprint: str
    alert: AlertView | None
    events: list[Event]
    notifications: list[Notification]


class EscalationView(Answer):
    id: str
    group: str
    policy: str
    startedAt: Time
    nextLevel: int
    cycle: int
    nextAt: Time | None


class EscalationList(Answer):
    escalations: list[EscalationView]


class EscalationTarget(Request):
    """Exactly one of the four."""

    user: str | None = None
    team: str | None = None
    schedule: str | None = None
    receiver: str | None = None


class EscalationNotifyBody(Request):
    targets: list[EscalationTarget] = Field(min_length=1)


class EscalationNotified(EscalationView):
    receivers: list[str] = Field(description="The receivers notified")


class OnCallNow(Answer):
    at: Time
    schedules: Any = Field(description="Who is on call in each schedule")


class Shift(Answer):
    user: str
    start: Time
    end: Time
    layer: Any


class ScheduleView(Answer):
    name: str
    timeZone: str
    onCall: Any
    nextHandoff: Time | None
    shifts: list[Shift]


class Matcher(Answer):
    name: str
    value: str
    isRegex: bool = False
    isEqual: bool = True


class SilenceStatus(Answer):
    state: Literal["active", "pending", "expired"]


class SilenceView(Answer):
    id: str
    status: SilenceStatus
    updatedAt: Time
    comment: str
    createdBy: str
    startsAt: Time
    endsAt: Time
    matchers: list[Matcher]
    expireOnResolve: bool


class SilenceList(Answer):
    silences: list[SilenceView]


class PostableSilence(Request):
    """Alertmanager's postableSilence (``id`` updates that silence), with pudimd's
    ``expireOnResolve``."""

    id: str | None = None
    matchers: list[Matcher] = Field(min_length=1)
    startsAt: Time
    endsAt: Time
    createdBy: str | None = Field(None, description="Default: the caller")
    comment: str
    expireOnResolve: bool = False


class SilenceCreated(Answer):
    silenceID: str


class Window(Answer):
    window: str = Field(description="``24h``, ``7d``, ``30d``, ``90d``")
    since: Time
    until: Time
    checks: int
    failures: int
    uptimePercent: float | None


class UptimeReport(Answer):
    target: str
    until: Time
    definition: str
    windows: list[Window]


class ResponseReport(Answer):
    """MTTA/MTTR of the episodes that fired in the range."""

    since: Time
    until: Time
    total: dict[str, Any]
    receivers: list[dict[str, Any]]
    teams: list[dict[str, Any]]
    noTeam: dict[str, Any]
    eventsRead: int


class AlertCounts(Answer):
    seen: int
    routed: int
    unknown: int


class ReceiverHistory(Answer):
    receiver: str
    since: Time | None
    until: Time | None
    alerts: AlertCounts
    eventsRead: int
    events: list[Event]


class TestNotification(Answer):
    receiver: str
    integrations: Any = Field(description="The outcome of each integration")


class WebhookAlert(Request):
    model_config = Request.model_config | {"extra": "allow"}

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: Time
    endsAt: Time | None = None
    generatorURL: str | None = None


class WebhookPayload(Request):
    """What an Alertmanager's ``webhook_configs`` posts (version 4)."""

    model_config = Request.model_config | {"extra": "allow"}

    version: Literal["4"]
    alerts: list[WebhookAlert]


class ActionLinkPage(Answer):
    action: str
    expiresAt: Time
    alert: AlertView


class ActionLinkBody(Request):
    actor: str | None = Field(None, description="Default ``link``")
    comment: str | None = None
