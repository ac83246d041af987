"""The on-call side of ``/api/v1``: one alert, the actions an engineer takes on it, and its
timeline.  Errors are RFC 9457 problem documents (:mod:`pudimd.api.problems`).

=========================================  ===================================================
``GET /api/v1/alerts/{fp}``                the alert: labels, state, acknowledgement, assignee
``POST /api/v1/alerts/{fp}/ack``           acknowledge; body ``until`` (RFC 3339) or ``for``
                                           (``2h``), ``comment``
``POST /api/v1/alerts/{fp}/unack``         take the acknowledgement back
``POST /api/v1/alerts/{fp}/assign``        ``assignee``: ``user:NAME`` or ``team:NAME``
``POST /api/v1/alerts/{fp}/comment``       ``comment``
``POST /api/v1/alerts/{fp}/resolve``       resolve by hand; ``comment``
``POST /api/v1/alerts/{fp}/snooze``        acknowledge until ``until`` / for ``for``
``GET /api/v1/alerts/{fp}/history``        timeline events and the notifications of its groups
``GET /api/v1/history``                    events by ``target``, ``fingerprint``, ``since``,
                                           ``until`` (RFC 3339), ``limit``
``GET /api/v1/escalations``                escalations in progress: group, policy, next level, due
``POST /api/v1/escalations/{id}/escalate`` notify the next level now
``POST /api/v1/escalations/{id}/stop``     stop it (the alerts stay as they are)
``POST /api/v1/escalations/{id}/notify``   override: notify ``targets`` now (a list of
                                           ``{user|team|schedule|receiver: NAME}``)
``GET /api/v1/oncall``                     who is on call in each schedule, now or ``at``
``GET /api/v1/oncall/schedules/{name}``    a schedule's shifts from ``from`` (default now)
                                           for ``days`` (default 7, at most 366)
=========================================  ===================================================

Every action body is a JSON object and takes ``actor`` (who; default: the authenticated
caller, ``token:NAME`` or ``user:NAME``) and may take ``comment``.  The interface recorded
is ``X-Pudimd-Interface`` (``cli``, ``web``, ``link``), else ``api``.  An action answers
the alert as ``GET`` shows it after the change.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from pudimd.alerting.notification import parse_time
from pudimd.alerting.workflow import INTERFACES, Action, ActionKind
from pudimd.api._amjson import api_time, read_json
from pudimd.api.problems import (
    MAX_LIMIT,
    Problem,
    answers_problems,
    known_params,
    limit_param,
    time_param,
)

if TYPE_CHECKING:
    from pudimd.alerting.engine import Alerting, AlertView
    from pudimd.alerting.escalation import Escalation, EscalationTarget
    from pudimd.alerting.oncall import OncallDirectory
    from pudimd.daemon import Daemon
    from pudimd.store.alerting import EventRow, OutboxRow

__all__ = ["oncall_routes"]

log = structlog.get_logger("pudimd.api")

ACTIONS: dict[str, ActionKind] = {
    "ack": "acknowledge",
    "unack": "unacknowledge",
    "assign": "assign",
    "comment": "comment",
    "resolve": "resolve",
    "snooze": "snooze",
}
_FIELDS = {"actor", "comment", "until", "for", "assignee"}
MAX_EVENTS = MAX_LIMIT


class _OncallAPI:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _alerting(self) -> Alerting:
        alerting: Alerting | None = self.daemon.alerting
        if alerting is None:
            raise Problem(503, "pudimd's alerting is not running")
        return alerting

    async def get_alert(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        fingerprint = request.match_info["fingerprint"]
        alert = alerting.alert(fingerprint)
        if alert is None:
            raise Problem(404, f"no alert with fingerprint {fingerprint!r}")
        return web.json_response(alert_json(alerting.status(alert, time.time())))

    async def act(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        name = request.match_info["action"]
        kind = ACTIONS.get(name)
        if kind is None:
            raise Problem(404, f"no action {name!r} (actions: {', '.join(ACTIONS)})")
        body = await read_json(request) if request.can_read_body else {}
        action = _action(kind, body, request)
        view = await alerting.act(request.match_info["fingerprint"], action)
        return web.json_response(alert_json(view))

    async def history(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        fingerprint = request.match_info["fingerprint"]
        events = await alerting.timeline(fingerprint=fingerprint, limit=MAX_EVENTS)
        alert = alerting.alert(fingerprint)
        if alert is None and not events:
            raise Problem(404, f"no alert with fingerprint {fingerprint!r} in the history")
        labels = alert.labels if alert is not None else _fired_labels(events)
        since = min([e["at"] for e in events] + ([alert.starts_at] if alert else []))
        found = await alerting.db.notifications_of_groups(
            alerting.group_keys(labels) if labels else [], since - 1.0
        )
        return web.json_response(
            {
                "fingerprint": fingerprint,
                "alert": alert_json(alerting.status(alert, time.time())) if alert else None,
                "events": [event_json(e) for e in events],
                "notifications": [
                    notification_json(row, attempts)
                    for row, attempts in found
                    if _mentions(row, fingerprint)
                ],
            }
        )

    async def escalations(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        return web.json_response(
            {"escalations": [escalation_json(e) for e in alerting.escalations()]}
        )

    async def escalation_action(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        eid, action = request.match_info["id"], request.match_info["action"]
        if eid not in alerting.escalator.active:
            raise Problem(404, f"no escalation {eid!r} in progress")
        if action == "escalate":
            escalation = alerting.escalator.escalate_now(eid)
        elif action == "stop":
            stopped = alerting.escalator.stop(eid)
            assert stopped is not None
            escalation = stopped
        elif action == "notify":
            targets = _targets(await read_json(request) if request.can_read_body else {})
            reached = await alerting.escalate_to(eid, targets)
            log.info("escalation override", escalation=eid, receivers=reached)
            return web.json_response(
                {**escalation_json(alerting.escalator.active[eid]), "receivers": reached}
            )
        else:
            raise Problem(404, f"no action {action!r} (escalate, stop, notify)")
        log.info("escalation " + action, escalation=eid, interface=_interface(request))
        return web.json_response(escalation_json(escalation))

    def _directory(self) -> OncallDirectory:
        directory: OncallDirectory | None = getattr(self.daemon, "oncall", None)
        if directory is None:
            raise Problem(503, "pudimd's on-call directory is not loaded")
        return directory

    async def on_call(self, request: web.Request) -> web.StreamResponse:
        directory = self._directory()
        at = time_param(request.query, "at") or time.time()
        moment = datetime.fromtimestamp(at, UTC)
        return web.json_response(
            {"at": api_time(at), "schedules": directory.who_is_on_call(moment)}
        )

    async def schedule(self, request: web.Request) -> web.StreamResponse:
        directory = self._directory()
        name = request.match_info["name"]
        try:
            schedule = directory.schedule(name)
        except KeyError:
            known = ", ".join(directory.schedules) or "none"
            raise Problem(404, f"no schedule {name!r} (schedules: {known})") from None
        start = time_param(request.query, "from") or time.time()
        try:
            days = float(request.query.get("days", "7"))
        except ValueError:
            raise Problem(400, "days must be a number") from None
        if not 0 < days <= 366:
            raise Problem(400, "days must be more than 0 and at most 366")
        begin = datetime.fromtimestamp(start, UTC)
        handoff = schedule.next_handoff(begin)
        return web.json_response(
            {
                "name": schedule.name,
                "timeZone": schedule.time_zone,
                "onCall": schedule.on_call(begin),
                "nextHandoff": api_time(handoff.timestamp()) if handoff else None,
                "shifts": [
                    {
                        "user": shift.user,
                        "start": api_time(shift.start.timestamp()),
                        "end": api_time(shift.end.timestamp()),
                        "layer": shift.layer,
                    }
                    for shift in schedule.shifts(begin, begin + timedelta(days=days))
                ],
            }
        )

    async def search(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        query = known_params(request, {"target", "fingerprint", "since", "until", "limit"})
        limit = limit_param(query)
        events = await alerting.timeline(
            fingerprint=query.get("fingerprint"),
            target=query.get("target"),
            since=time_param(query, "since"),
            until=time_param(query, "until"),
            limit=limit,
        )
        return web.json_response({"events": [event_json(e) for e in events]})


def _action(kind: ActionKind, body: Any, request: web.Request) -> Action:
    from pudimd.auth.principal import actor as caller

    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise Problem(
            400,
            f"unknown field {unknown[0]!r}",
            errors=[{"field": name, "message": "unknown field"} for name in unknown],
        )
    for name in ("actor", "comment", "until", "for", "assignee"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise Problem(400, f"{name} must be a string", errors=[_error(name, "not a string")])
    interface = request.headers.get("X-Pudimd-Interface", "api")
    if interface not in INTERFACES:
        raise Problem(400, f"X-Pudimd-Interface must be one of {', '.join(INTERFACES)}")
    return Action(
        kind,
        actor=body.get("actor") or caller(request),  # default: the signed-in caller
        interface=interface,
        until=_until(body),
        assignee=body.get("assignee"),
        comment=body.get("comment"),
    )


def _targets(body: Any) -> list[EscalationTarget]:
    from pydantic import ValidationError

    from pudimd.alerting.escalation import EscalationTarget

    items = body.get("targets") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise Problem(400, "targets: a non-empty list is needed", errors=[_error("targets", "")])
    out: list[EscalationTarget] = []
    for index, item in enumerate(items):
        try:
            out.append(EscalationTarget.model_validate(item))
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise Problem(
                400, f"targets[{index}]: {reason}", errors=[_error(f"targets[{index}]", reason)]
            ) from None
    return out


def _interface(request: web.Request) -> str:
    interface = request.headers.get("X-Pudimd-Interface", "api")
    return interface if interface in INTERFACES else "api"


def _until(body: dict[str, Any]) -> float | None:
    if body.get("until") and body.get("for"):
        raise Problem(400, "give until or for, not both", errors=[_error("for", "with until")])
    if body.get("for"):
        from pudimd.durations import parse_duration

        try:
            return time.time() + parse_duration(body["for"]).total_seconds()
        except ValueError as exc:
            raise Problem(400, f"for: {exc}", errors=[_error("for", str(exc))]) from None
    if body.get("until"):
        try:
            moment = parse_time(body["until"])
        except ValueError as exc:
            raise Problem(400, f"until: {exc}", errors=[_error("until", str(exc))]) from None
        return None if moment is None else moment.timestamp()
    return None


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _fired_labels(events: list[EventRow]) -> dict[str, str]:
    for event in events:
        labels = event["detail"].get("labels")
        if event["kind"] == "fired" and isinstance(labels, dict):
            return labels
    return {}


def _mentions(row: OutboxRow, fingerprint: str) -> bool:
    return any(a.get("fingerprint") == fingerprint for a in row.payload.get("alerts", ()))


# -- JSON shapes ------------------------------------------------------------------------


def alert_json(view: AlertView) -> dict[str, Any]:
    alert = view.alert
    now = time.time()
    ack = None
    if alert.acked(now):
        ack = {
            "by": alert.acked_by,
            "at": api_time(alert.acked_at or now),
            "until": api_time(alert.ack_until) if alert.ack_until is not None else None,
        }
    return {
        "fingerprint": alert.fingerprint,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": api_time(alert.starts_at),
        "endsAt": api_time(alert.ends_at),
        "firing": not alert.resolved(now),
        "state": view.state,
        "silencedBy": list(view.silenced_by),
        "inhibitedBy": list(view.inhibited_by),
        "mutedBy": list(view.muted_by),
        "blockedBy": list(view.blocked_by),
        "receivers": list(view.receivers),
        "acknowledged": ack,
        "assignee": alert.assignee,
    }


def escalation_json(escalation: Escalation) -> dict[str, Any]:
    return {
        "id": escalation.id,
        "group": escalation.group_key,
        "policy": escalation.policy,
        "startedAt": api_time(escalation.started_at),
        "nextLevel": escalation.level + 1,
        "cycle": escalation.cycle,
        "nextAt": api_time(escalation.next_at) if escalation.next_at is not None else None,
    }


def event_json(event: EventRow) -> dict[str, Any]:
    return {
        "fingerprint": event["fingerprint"],
        "at": api_time(event["at"]),
        "kind": event["kind"],
        "alertname": event["alertname"],
        "target": event["target"],
        "actor": event["actor"],
        "interface": event["interface"],
        "detail": event["detail"],
    }


def notification_json(row: OutboxRow, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row.id,
        "receiver": row.receiver,
        "integration": row.integration,
        "status": row.payload.get("status"),
        "acknowledged": bool(row.payload.get("acknowledged")),
        "createdAt": api_time(row.created_at),
        "state": row.state,
        "attempts": [
            {
                "at": api_time(a["ts"]),
                "outcome": a["outcome"],
                "seconds": round(a["duration"], 3),
                "detail": a["detail"],
            }
            for a in attempts
        ],
    }


def oncall_routes(daemon: Daemon) -> list[web.RouteDef]:
    api = _OncallAPI(daemon)
    return [
        web.get("/api/v1/alerts/{fingerprint}", answers_problems(api.get_alert)),
        web.get("/api/v1/alerts/{fingerprint}/history", answers_problems(api.history)),
        web.post("/api/v1/alerts/{fingerprint}/{action}", answers_problems(api.act)),
        web.get("/api/v1/history", answers_problems(api.search)),
        web.get("/api/v1/escalations", answers_problems(api.escalations)),
        web.post("/api/v1/escalations/{id}/{action}", answers_problems(api.escalation_action)),
        web.get("/api/v1/oncall", answers_problems(api.on_call)),
        web.get("/api/v1/oncall/schedules/{name}", answers_problems(api.schedule)),
    ]
