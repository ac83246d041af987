"""Alerts: what is posted (:class:`PostableAlert`, from the API, the webhook receiver or
the rules on probe results) and what the store keeps (:class:`Alert`), with Alertmanager's
fingerprint and merge semantics."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Alert", "AlertError", "PostableAlert", "fingerprint", "validate_labels"]

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1


class AlertError(ValueError):
    """A posted alert is malformed; the message says which and why."""


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: FNV-1a (64 bit) over the label pairs
    sorted by name, each name and value followed by a 0xFF byte; 16 hex digits."""
    parts: list[bytes] = []
    for name, label in sorted(labels.items()):
        parts.append(name.encode())
        parts.append(label.encode())
    parts.append(b"")
    value = _FNV_OFFSET
    prime, mask = _FNV_PRIME, _MASK  # locals: this loop is the hot path of an alert post
    for byte in b"\xff".join(parts):
        value = ((value ^ byte) * prime) & mask
    return f"{value:016x}"


_valid_names: set[str] = set()
"""Label names already checked (a few dozen in practice)."""


def validate_labels(labels: Any, what: str = "labels") -> dict[str, str]:
    """``labels`` as a clean label set: names per Prometheus' rules, string values, empty
    values dropped (an empty label is an absent one).  Raises AlertError."""
    if not isinstance(labels, dict):
        raise AlertError(f"{what} must be an object of strings")
    clean: dict[str, str] = {}
    for name, value in labels.items():
        if name not in _valid_names:
            if not isinstance(name, str) or not _LABEL_NAME.match(name):
                raise AlertError(f"invalid label name {name!r} in {what}")
            if len(_valid_names) < 10_000:
                _valid_names.add(name)
        if not isinstance(value, str):
            raise AlertError(f"the value of {what}.{name} must be a string")
        if value:
            clean[name] = value
    return clean


@dataclass(slots=True)
class PostableAlert:
    """An alert as posted: by Prometheus or amtool (``POST /api/v2/alerts``), by an
    Alertmanager forwarding its webhook, or by pudimd's rules on probe results."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: float | None = None
    """Unix seconds; None: when the store first sees it."""
    ends_at: float | None = None
    """Unix seconds; None: open-ended (the store resolves it after ``resolve_timeout``
    without a re-post)."""
    generator_url: str = ""
    blocked_by: tuple[str, ...] = ()
    """Names of the targets whose failure holds this alert back (``depends_on``): it is
    stored and shown, marked blocked, but not notified."""


@dataclass(slots=True)
class Alert:
    """An alert in the store."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float
    """When it resolved or resolves (Unix seconds)."""
    updated_at: float
    generator_url: str = ""
    timeout: bool = False
    """``ends_at`` was not given but set from ``resolve_timeout``."""
    blocked_by: tuple[str, ...] = ()
    acked_by: str | None = None
    """Who acknowledged it (None: nobody, or the acknowledgement ended)."""
    acked_at: float | None = None
    ack_until: float | None = None
    """When the acknowledgement ends by itself (None: when the alert resolves)."""
    assignee: str | None = None
    """``user:NAME`` or ``team:NAME``."""

    def resolved(self, now: float) -> bool:
        return self.ends_at <= now

    def acked(self, now: float) -> bool:
        """Firing, acknowledged, and the acknowledgement has not run out."""
        return (
            self.acked_by is not None
            and (self.ack_until is None or self.ack_until > now)
            and self.ends_at > now
        )

    def clear_ack(self) -> None:
        self.acked_by = self.acked_at = self.ack_until = None

    def merge(self, new: PostableAlert, now: float, resolve_timeout: float) -> bool:
        """Apply a re-post of the same alert (Alertmanager's merge: the earlier startsAt
        stays, the newer endsAt and annotations win).  Returns whether anything that
        matters to notifications changed (resolved state, annotations)."""
        was_resolved = self.resolved(now)
        if new.starts_at is not None and new.starts_at < self.starts_at and not was_resolved:
            self.starts_at = new.starts_at
        if was_resolved and (new.ends_at is None or new.ends_at > now):
            # a resolved alert fires again: a new episode starts
            self.starts_at = new.starts_at if new.starts_at is not None else now
        if new.ends_at is None:
            self.ends_at = now + resolve_timeout
            self.timeout = True
        else:
            self.ends_at = new.ends_at
            self.timeout = False
        changed = was_resolved != self.resolved(now) or self.annotations != new.annotations
        changed = changed or self.blocked_by != new.blocked_by
        self.annotations = new.annotations
        self.generator_url = new.generator_url or self.generator_url
        self.blocked_by = new.blocked_by
        self.updated_at = now
        return changed

    @classmethod
    def new(
        cls, posted: PostableAlert, now: float, resolve_timeout: float, fp: str | None = None
    ) -> Alert:
        """A new alert from ``posted`` (``fp``: its fingerprint, when the caller has it)."""
        starts = posted.starts_at if posted.starts_at is not None else now
        if posted.ends_at is None:
            ends, timeout = now + resolve_timeout, True
        else:
            ends, timeout = posted.ends_at, False
        return cls(
            fingerprint=fp or fingerprint(posted.labels),
            labels=posted.labels,
            annotations=posted.annotations,
            starts_at=starts,
            ends_at=ends,
            updated_at=now,
            generator_url=posted.generator_url,
            timeout=timeout,
            blocked_by=posted.blocked_by,
        )
