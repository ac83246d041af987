"""Reports over the history: a target's uptime, how fast alerts are answered, and the
timeline by receiver.  Errors are RFC 9457 problem documents (:mod:`pudimd.api.problems`);
times are RFC 3339.

==============================================  ==============================================
``GET /api/v1/targets/{name}/uptime``           checks, failures and uptime (the share of
                                                successful checks) over 24h, 7d, 30d and 90d
                                                ending ``until`` (default now)
``GET /api/v1/reports/response``                MTTA and MTTR (mean, median, counts) of the
                                                episodes that fired in ``[since, until]``
                                                (default the last 30 days), in all, per
                                                receiver and per team
``GET /api/v1/history/receivers/{name}``        timeline events in ``[since, until]`` of the
                                                alerts routed to the receiver, ``limit``
==============================================  ==============================================

Both event reports read :meth:`Alerting.timeline
<pudimd.alerting.engine.Alerting.timeline>` (the events written and the episodes the
engine holds) over their range: their cost grows with the events in it, which they say
(``eventsRead``).  The timeline has no receiver: each alert is routed again by its labels
with the routing of now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pudimd.alerting.reports import (
    episodes,
    labels_in,
    response_report,
    routed_events,
    teams_of_assignee,
)
from pudimd.api._amjson import api_time
from pudimd.api.oncall import event_json
from pudimd.api.problems import (
    MAX_LIMIT,
    Problem,
    answers_problems,
    known_params,
    limit_param,
    time_param,
)
from pudimd.store import history

if TYPE_CHECKING:
    from pudimd.alerting.engine import Alerting
    from pudimd.daemon import Daemon
    from pudimd.store.threaded import AsyncEngine

__all__ = ["DEFAULT_REPORT_PERIOD", "reports_routes"]

DEFAULT_REPORT_PERIOD = 30 * 86_400.0
"""Seconds a response report covers when ``since`` is not given."""
MAX_EVENTS = MAX_LIMIT
MAX_SCAN = 1_000_000
"""Most timeline events a report reads (a year of a busy site is some 50,000)."""
UPTIME_DEFINITION = "share of successful checks: 1 - failures / checks"


def _range(query: Mapping[str, str], default_period: float) -> tuple[float, float]:
    until = time_param(query, "until") or time.time()
    since = time_param(query, "since")
    if since is None:
        since = until - default_period
    if since >= until:
        raise Problem(
            400,
            "since must be before until",
            errors=[{"field": "since", "message": "not before until"}],
        )
    return since, until


class _ReportsAPI:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _alerting(self) -> Alerting:
        alerting: Alerting | None = getattr(self.daemon, "alerting", None)
        if alerting is None:
            raise Problem(503, "pudimd's alerting is not running")
        return alerting

    def _results_engine(self) -> AsyncEngine:
        store = getattr(self.daemon, "store", None)
        if store is None:
            raise Problem(503, "pudimd's store is not open")
        engine: AsyncEngine = store.engine
        return engine

    def _configured(self, name: str) -> bool:
        config = getattr(self.daemon, "config", None)
        return config is not None and any(t.name == name for t in config.targets)

    async def uptime(self, request: web.Request) -> web.StreamResponse:
        query = known_params(request, {"until"})
        name = request.match_info["name"]
        until = time_param(query, "until")
        found = await history.uptime(self._results_engine(), name, until)
        if not any(w.checks for w in found) and not self._configured(name):
            raise Problem(404, f"no target {name!r} in the config, and no checks of it stored")
        return web.json_response(
            {
                "target": name,
                "until": api_time(found[0].until),
                "definition": UPTIME_DEFINITION,
                "windows": [
                    {
                        "window": w.window,
                        "since": api_time(w.since),
                        "until": api_time(w.until),
                        "checks": w.checks,
                        "failures": w.failures,
                        "uptimePercent": None if w.uptime is None else 100.0 * w.uptime,
                    }
                    for w in found
                ],
            }
        )

    async def response(self, request: web.Request) -> web.StreamResponse:
        query = known_params(request, {"since", "until"})
        since, until = _range(query, DEFAULT_REPORT_PERIOD)
        alerting = self._alerting()
        # from since on, past until too: an episode that fired in the range is followed to
        # its end
        rows = await alerting.timeline(since=since, limit=MAX_SCAN)
        found = episodes(rows, _held_labels(alerting))
        members = self._team_members()
        report = response_report(
            found,
            lambda labels: _receivers(alerting, labels),
            lambda assignee: teams_of_assignee(assignee, members),
            since=since,
            until=until,
        )
        return web.json_response(
            {
                "since": api_time(since),
                "until": api_time(until),
                "total": report.total.as_json(),
                "receivers": [
                    {"receiver": name, **stats.as_json()}
                    for name, stats in report.receivers.items()
                ],
                "teams": [
                    {"team": name, **stats.as_json()} for name, stats in report.teams.items()
                ],
                "noTeam": report.no_team.as_json(),
                "eventsRead": len(rows),
            }
        )

    def _team_members(self) -> dict[str, set[str]]:
        directory = getattr(self.daemon, "oncall", None)
        if directory is None:
            return {}
        return {name: set(team.members) for name, team in directory.teams.items()}

    async def receiver_history(self, request: web.Request) -> web.StreamResponse:
        query = known_params(request, {"since", "until", "limit"})
        alerting = self._alerting()
        name = request.match_info["name"]
        if name not in alerting.receivers():
            names = ", ".join(sorted(alerting.receivers())) or "none"
            raise Problem(404, f"no receiver {name!r} (receivers: {names})")
        limit = limit_param(query)
        since, until = time_param(query, "since"), time_param(query, "until")
        if since is not None and until is not None and since > until:
            raise Problem(400, "since must not be after until")

        rows = await alerting.timeline(since=since, until=until, limit=MAX_SCAN)
        found = routed_events(
            rows,
            name,
            lambda labels: _receivers(alerting, labels),
            await _labels_lookup(alerting, rows),
        )
        return web.json_response(
            {
                "receiver": name,
                "since": None if since is None else api_time(since),
                "until": None if until is None else api_time(until),
                "alerts": {
                    "seen": found.alerts_seen,
                    "routed": found.alerts_routed,
                    "unknown": found.alerts_unknown,
                },
                "eventsRead": len(rows),
                "events": [event_json(dict(e)) for e in found.events[:limit]],
            }
        )


def _receivers(alerting: Alerting, labels: Mapping[str, str]) -> Iterable[str]:
    return [route.receiver for route in alerting.routes_for(dict(labels))]


async def _labels_lookup(
    alerting: Alerting, rows: Sequence[Mapping[str, Any]]
) -> Callable[[str], Mapping[str, str] | None]:
    """Labels of the alerts of ``rows`` with no fired event among them: held by the engine,
    else from their latest stored fired event (one query for all of them)."""
    held = _held_labels(alerting)
    known = labels_in(rows)
    missing = {
        row["fingerprint"]
        for row in rows
        if row["fingerprint"] not in known and held(row["fingerprint"]) is None
    }
    stored = await history.fired_labels(alerting.db.engine, missing) if missing else {}

    def labels_of(fp: str) -> Mapping[str, str] | None:
        return held(fp) or stored.get(fp)

    return labels_of


def _held_labels(alerting: Alerting) -> Callable[[str], Mapping[str, str] | None]:
    """The labels of an alert the engine holds (None for one it no longer does)."""

    def labels_of(fp: str) -> Mapping[str, str] | None:
        alert = alerting.alert(fp)
        return None if alert is None else alert.labels

    return labels_of


def reports_routes(daemon: Daemon) -> list[web.RouteDef]:
    api = _ReportsAPI(daemon)
    return [
        web.get("/api/v1/targets/{name}/uptime", answers_problems(api.uptime)),
        web.get("/api/v1/reports/response", answers_problems(api.response)),
        web.get("/api/v1/history/receivers/{name}", answers_problems(api.receiver_history)),
    ]
