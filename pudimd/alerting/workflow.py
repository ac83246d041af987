"""What an on-call engineer does to an alert: acknowledge it (until a time, or until it
resolves), take the acknowledgement back, assign it to a user or a team, comment on it,
resolve it by hand, snooze it.

:func:`apply` checks an :class:`Action` against the alert (an error is an
:class:`ActionError` carrying the HTTP status that fits it, and changes nothing), changes
the alert, and returns the timeline entry to record: what happened, with the action's
``actor`` and ``interface`` (``api``, ``cli``, ``web``, ``link``).

Semantics, as PagerDuty and Opsgenie users expect them:

- An acknowledgement stops repeats and escalation; receivers are told (a follow-up
  message; PagerDuty's ``acknowledge`` event).  With ``until`` it runs out by itself and
  the alert is notified again if it still fires.  A new episode of the alert (it resolved,
  then fired again) starts unacknowledged and unassigned.
- Snoozing is an acknowledgement that always ends (``until`` is required): "tell me again
  in an hour".
- Resolving by hand ends the alert now.  When its source keeps reporting it (a rule whose
  target still fails, Prometheus re-sending it), it fires again as a new episode: to stop
  hearing about a known problem, silence it instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pudimd.alerting.alert import Alert

__all__ = ["INTERFACES", "MAX_COMMENT", "Action", "ActionError", "ActionKind", "apply"]

ActionKind = Literal["acknowledge", "unacknowledge", "assign", "comment", "resolve", "snooze"]
INTERFACES = ("api", "cli", "web", "link")
MAX_COMMENT = 4096
_ASSIGNEE_KINDS = ("user", "team")


class ActionError(ValueError):
    """An action that cannot be done; ``status`` is the HTTP status that says why (400 bad
    input, 404 no such alert, 409 not in a state that allows it)."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field

    def __repr__(self) -> str:
        return f"ActionError({self.message!r}, status={self.status!r}, field={self.field!r})"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    actor: str
    interface: str = "api"
    until: float | None = None
    """Unix seconds: when an acknowledgement or a snooze ends."""
    assignee: str | None = None
    """``user:NAME`` or ``team:NAME``."""
    comment: str | None = None


Timeline = tuple[str, dict[str, Any]]
"""(event kind, detail) to record."""


def apply(
    alert: Alert, action: Action, now: float, assignable: Callable[[str], str | None]
) -> Timeline:
    """Apply ``action`` to ``alert`` at ``now``; ``assignable(assignee)`` says why an
    assignee cannot be used (None when it can).  Raises ActionError, having changed
    nothing."""
    _check_common(action)
    comment = (action.comment or "").strip() or None
    detail: dict[str, Any] = {"comment": comment} if comment else {}
    kind = action.kind
    if kind == "comment":
        if comment is None:
            raise ActionError("a comment needs text", field="comment")
        return "commented", detail
    if alert.resolved(now):
        raise ActionError(f"alert {alert.fingerprint} is resolved", status=409)
    if kind in ("acknowledge", "snooze"):
        until = action.until
        if kind == "snooze" and until is None:
            raise ActionError("snoozing needs an end (until)", field="until")
        if until is not None and until <= now:
            raise ActionError("until must be in the future", field="until")
        alert.acked_by, alert.acked_at, alert.ack_until = action.actor, now, until
        if until is not None:
            detail["until"] = until
        return ("snoozed" if kind == "snooze" else "acknowledged"), detail
    if kind == "unacknowledge":
        if not alert.acked(now):
            raise ActionError(f"alert {alert.fingerprint} is not acknowledged", status=409)
        alert.clear_ack()
        return "unacknowledged", detail
    if kind == "assign":
        assignee = _assignee(action.assignee)
        reason = assignable(assignee)
        if reason is not None:
            raise ActionError(reason, field="assignee")
        detail["assignee"] = assignee
        if alert.assignee is not None and alert.assignee != assignee:
            detail["previous"] = alert.assignee
        alert.assignee = assignee
        return "assigned", detail
    if kind == "resolve":
        alert.ends_at, alert.timeout, alert.updated_at = now, False, now
        return "resolved", {**detail, "by_hand": True}
    raise ActionError(f"unknown action {kind!r}")


def _check_common(action: Action) -> None:
    if not action.actor.strip():
        raise ActionError("who does it (actor) is missing", field="actor")
    if action.interface not in INTERFACES:
        raise ActionError(
            f"interface must be one of {', '.join(INTERFACES)}, got {action.interface!r}",
            field="interface",
        )
    if action.comment is not None and len(action.comment) > MAX_COMMENT:
        raise ActionError(f"a comment is at most {MAX_COMMENT} characters", field="comment")


def _assignee(value: str | None) -> str:
    if not value:
        raise ActionError("assign to whom? (user:NAME or team:NAME)", field="assignee")
    kind, sep, name = value.partition(":")
    if not sep or kind not in _ASSIGNEE_KINDS or not name:
        raise ActionError(
            f"assignee must be user:NAME or team:NAME, got {value!r}", field="assignee"
        )
    return value
