"""The typed answers of the client: frozen dataclasses read from the daemon's JSON
(:mod:`pudimd.api.oncall`, :mod:`pudimd.api._amjson`, :mod:`pudimd.api.versions`).  Times are
timezone-aware :class:`~datetime.datetime` objects in UTC; label sets are plain dicts (do not
change them); lists are tuples."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "Acknowledgement",
    "Alert",
    "AlertHistory",
    "ConfigVersion",
    "DeliveryAttempt",
    "Event",
    "GettableAlert",
    "Notification",
    "OnCall",
    "Status",
]


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 time, got {value!r}")
    return datetime.fromisoformat(value)


def _opt_time(value: Any) -> datetime | None:
    return None if value is None or value == "" else _time(value)


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a label set, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {value!r}")
    return tuple(str(item) for item in value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Acknowledgement:
    by: str | None
    at: datetime
    until: datetime | None
    """None: until the alert resolves."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Acknowledgement:
        by, until = _opt_str(data.get("by")), _opt_time(data.get("until"))
        return cls(by=by, at=_time(data["at"]), until=until)


@dataclass(frozen=True)
class Alert:
    """One alert as ``GET /api/v1/alerts/{fingerprint}`` (and every action) answers it."""

    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    firing: bool
    state: str
    silenced_by: tuple[str, ...]
    inhibited_by: tuple[str, ...]
    muted_by: tuple[str, ...]
    blocked_by: tuple[str, ...]
    receivers: tuple[str, ...]
    acknowledged: Acknowledgement | None
    assignee: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        ack = data.get("acknowledged")
        return cls(
            fingerprint=str(data["fingerprint"]),
            labels=_labels(data["labels"]),
            annotations=_labels(data.get("annotations") or {}),
            starts_at=_time(data["startsAt"]),
            ends_at=_time(data["endsAt"]),
            firing=bool(data["firing"]),
            state=str(data["state"]),
            silenced_by=_strings(data.get("silencedBy")),
            inhibited_by=_strings(data.get("inhibitedBy")),
            muted_by=_strings(data.get("mutedBy")),
            blocked_by=_strings(data.get("blockedBy")),
            receivers=_strings(data.get("receivers")),
            acknowledged=Acknowledgement.from_json(ack) if isinstance(ack, dict) else None,
            assignee=_opt_str(data.get("assignee")),
        )


@dataclass(frozen=True)
class GettableAlert:
    """One alert as Alertmanager's ``GET /api/v2/alerts`` lists it (unresolved alerts only),
    with pudimd's extensions (``blockedBy``, ``acknowledgedBy``, ``assignee``)."""

    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    updated_at: datetime
    state: str
    silenced_by: tuple[str, ...]
    inhibited_by: tuple[str, ...]
    muted_by: tuple[str, ...]
    blocked_by: tuple[str, ...]
    receivers: tuple[str, ...]
    acknowledged_by: str | None
    assignee: str | None
    generator_url: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GettableAlert:
        status = data["status"]
        return cls(
            fingerprint=str(data["fingerprint"]),
            labels=_labels(data["labels"]),
            annotations=_labels(data.get("annotations") or {}),
            starts_at=_time(data["startsAt"]),
            ends_at=_time(data["endsAt"]),
            updated_at=_time(data["updatedAt"]),
            state=str(status["state"]),
            silenced_by=_strings(status.get("silencedBy")),
            inhibited_by=_strings(status.get("inhibitedBy")),
            muted_by=_strings(status.get("mutedBy")),
            blocked_by=_strings(status.get("blockedBy")),
            receivers=tuple(str(r["name"]) for r in data.get("receivers") or ()),
            acknowledged_by=_opt_str(status.get("acknowledgedBy")),
            assignee=_opt_str(status.get("assignee")),
            generator_url=_opt_str(data.get("generatorURL")),
        )


@dataclass(frozen=True)
class Event:
    """One timeline event: ``fired``, ``acknowledged``, ``assigned``, ``resolved``..."""

    fingerprint: str
    at: datetime
    kind: str
    alertname: str | None
    target: str | None
    actor: str | None
    interface: str | None
    detail: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        detail = data.get("detail")
        return cls(
            fingerprint=str(data["fingerprint"]),
            at=_time(data["at"]),
            kind=str(data["kind"]),
            alertname=_opt_str(data.get("alertname")),
            target=_opt_str(data.get("target")),
            actor=_opt_str(data.get("actor")),
            interface=_opt_str(data.get("interface")),
            detail=detail if isinstance(detail, dict) else {},
        )


@dataclass(frozen=True)
class DeliveryAttempt:
    at: datetime
    outcome: str
    seconds: float
    detail: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeliveryAttempt:
        return cls(
            at=_time(data["at"]),
            outcome=str(data["outcome"]),
            seconds=float(data["seconds"]),
            detail=_opt_str(data.get("detail")),
        )


@dataclass(frozen=True)
class Notification:
    """A notification of one of the alert's groups that carried it, with its attempts."""

    id: int
    receiver: str
    integration: str
    status: str | None
    acknowledged: bool
    created_at: datetime
    state: str
    attempts: tuple[DeliveryAttempt, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Notification:
        return cls(
            id=int(data["id"]),
            receiver=str(data["receiver"]),
            integration=str(data["integration"]),
            status=_opt_str(data.get("status")),
            acknowledged=bool(data.get("acknowledged")),
            created_at=_time(data["createdAt"]),
            state=str(data["state"]),
            attempts=tuple(DeliveryAttempt.from_json(a) for a in data.get("attempts") or ()),
        )


@dataclass(frozen=True)
class AlertHistory:
    """``GET /api/v1/alerts/{fingerprint}/history``: the alert while it is still held."""

    fingerprint: str
    alert: Alert | None
    events: tuple[Event, ...]
    notifications: tuple[Notification, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertHistory:
        alert = data.get("alert")
        return cls(
            fingerprint=str(data["fingerprint"]),
            alert=Alert.from_json(alert) if isinstance(alert, dict) else None,
            events=tuple(Event.from_json(e) for e in data.get("events") or ()),
            notifications=tuple(Notification.from_json(n) for n in data.get("notifications") or ()),
        )


@dataclass(frozen=True)
class OnCall:
    """``GET /api/v1/oncall``: who is on call in each schedule at ``at``."""

    at: datetime
    schedules: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OnCall:
        schedules = data.get("schedules") or {}
        return cls(
            at=_time(data["at"]),
            schedules={str(name): _strings(users) for name, users in schedules.items()},
        )


@dataclass(frozen=True)
class ConfigVersion:
    """A config version the daemon applied (``text`` only when one version is asked for)."""

    id: int
    at: datetime
    source: str
    author: str
    message: str
    sha256: str
    current: bool
    text: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConfigVersion:
        return cls(
            id=int(data["id"]),
            at=_time(data["at"]),
            source=str(data["source"]),
            author=str(data.get("author") or ""),
            message=str(data.get("message") or ""),
            sha256=str(data["sha256"]),
            current=bool(data.get("current")),
            text=_opt_str(data.get("text")),
        )


@dataclass(frozen=True)
class Status:
    """Alertmanager's ``GET /api/v2/status`` as pudimd answers it."""

    cluster: str
    version: str
    runtime: str
    """The runtime running the daemon (Alertmanager's ``goVersion``: ``cpython3.11.7``)."""
    config: str
    """The alerting config text (``config.original``)."""
    uptime: datetime
    """When the alerting engine started."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Status:
        info = data.get("versionInfo") or {}
        return cls(
            cluster=str((data.get("cluster") or {}).get("status", "")),
            version=str(info.get("version", "")),
            runtime=str(info.get("goVersion", "")),
            config=str((data.get("config") or {}).get("original", "")),
            uptime=_time(data["uptime"]),
        )


@dataclass(frozen=True)
class Target:
    """A target as the config file has it (``config``: every field written, secrets as
    ``<secret>``) and its live ``status`` (``health``: up, down, degraded, unknown)."""

    name: str
    probe: str
    target: str
    config: dict[str, Any]
    status: dict[str, Any]

    @property
    def health(self) -> str:
        return str(self.status.get("health", "unknown"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Target:
        config = {k: v for k, v in data.items() if k != "status"}
        return cls(
            name=str(data.get("name", "")),
            probe=str(data.get("probe", "")),
            target=str(data.get("target", "")),
            config=config,
            status=dict(data.get("status") or {}),
        )


@dataclass(frozen=True)
class TargetPage:
    """One page of ``GET /api/v1/targets``; ``next_cursor`` is None on the last page."""

    targets: tuple[Target, ...]
    total: int
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetPage:
        return cls(
            targets=tuple(Target.from_json(item) for item in data.get("targets") or ()),
            total=int(data.get("total", 0)),
            next_cursor=_opt_str(data.get("next_cursor")),
        )


@dataclass(frozen=True)
class BulkResult:
    """What a bulk change or an import did."""

    created: int
    updated: int
    deleted: int
    changed: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BulkResult:
        return cls(
            created=int(data.get("created", 0)),
            updated=int(data.get("updated", 0)),
            deleted=int(data.get("deleted", 0)),
            changed=bool(data.get("changed")),
        )
