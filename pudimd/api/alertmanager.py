"""Alertmanager's HTTP API v2 (``/api/v2``), so Prometheus can post its alerts to pudimd and
``amtool`` (or any Alertmanager client) can read alerts and manage silences unmodified.

=========================  ===============================================================
``GET /status``            cluster (``disabled``), versionInfo, config.original, uptime
``GET /receivers``         ``[{name}]``
``GET /alerts``            filters ``active``, ``silenced``, ``inhibited``, ``unprocessed``
                           (booleans, default true), repeated ``filter`` (matchers such as
                           ``severity=~"crit.*"``), ``receiver`` (regex, anchored)
``POST /alerts``           a list of postableAlert; 200, or 400 naming the bad alert
``GET /alerts/groups``     the same filters but ``unprocessed``
``GET /silences``          repeated ``filter``
``POST /silences``         a postableSilence (with ``id``: update it); ``{"silenceID"}``
``GET /silence/{id}``      one silence, 404 when unknown
``DELETE /silence/{id}``   expire it (it is kept, ``expired``)
=========================  ===============================================================

Differences from Alertmanager, all on the side of caution or of more information:

- ``POST /alerts`` checks the whole batch before it takes any alert: one bad alert and
  nothing changes (Alertmanager keeps the good ones of a batch and reports the bad ones);
  ``pudimd_alerts_invalid_total`` counts refused batches.
- Malformed requests are answered 400 with a JSON string saying what is wrong, where
  Alertmanager's generated server sometimes answers 422 with an error object.
- Silences carry pudimd's ``expireOnResolve`` (postable, optional; always shown): expire
  the silence as soon as every alert it muted has resolved.
- An alert's ``status`` shows ``mutedBy`` (newer Alertmanagers' time intervals field)
  and, when some target it ``depends_on`` is down, pudimd's ``blockedBy``.
- Expiring an expired silence answers 200 (as Alertmanager 0.25 does), an unknown one 404.

The API is served on the daemon's listener, open like the rest of it (``/-/reload``...):
put a reverse proxy with authentication in front when the listener is reachable by
others than its operators.
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import TYPE_CHECKING

from aiohttp import web

from pudimd import __version__
from pudimd.alerting.silences import SilenceError, SilenceNotFound
from pudimd.api._amjson import (
    BadRequest,
    api_time,
    bool_param,
    error_response,
    gettable_alert,
    gettable_group,
    gettable_silence,
    json_response,
    matchers_param,
    postable_alert,
    postable_silence,
    read_json,
    receiver_param,
    sort_silences,
)

if TYPE_CHECKING:
    from pudimd.alerting.engine import Alerting
    from pudimd.daemon import Daemon

__all__ = ["alertmanager_routes"]

PREFIX = "/api/v2"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _answers_bad_requests(handler: Handler) -> Handler:
    """A BadRequest raised by ``handler`` becomes a 400 answer carrying its message."""

    @wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadRequest as exc:
            return error_response(str(exc))

    return handle


class _AlertmanagerAPI:
    """The handlers, for one daemon: each reads ``daemon.alerting`` when called, so a
    reload that replaces the engine is seen at once."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _alerting(self) -> Alerting:
        alerting: Alerting | None = self.daemon.alerting
        if alerting is None:
            raise web.HTTPServiceUnavailable(text="pudimd's alerting is not running\n")
        return alerting

    # -- general ---------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        return json_response(
            {
                "cluster": {"status": "disabled", "peers": []},
                "versionInfo": {
                    "version": __version__,
                    "revision": "",
                    "branch": "",
                    "buildUser": "",
                    "buildDate": "",
                    # no Go here: the runtime that runs pudimd
                    "goVersion": f"{platform.python_implementation().lower()}"
                    f"{platform.python_version()}",
                },
                "config": {"original": alerting.config_text},
                "uptime": api_time(alerting.started_at),
            }
        )

    async def receivers(self, request: web.Request) -> web.StreamResponse:
        return json_response([{"name": name} for name in self._alerting().receivers()])

    # -- alerts ----------------------------------------------------------------------

    async def get_alerts(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        views = self._alerting().alerts(
            matchers=matchers_param(query.getall("filter", [])),
            active=bool_param(query, "active"),
            silenced=bool_param(query, "silenced"),
            inhibited=bool_param(query, "inhibited"),
            unprocessed=bool_param(query, "unprocessed"),
            receiver=receiver_param(query.get("receiver")),
        )
        return json_response([gettable_alert(view) for view in views])

    async def post_alerts(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        try:
            body = await read_json(request)
            if not isinstance(body, list):
                raise BadRequest("expected a JSON list of alerts")
            alerts = [postable_alert(item, f"alert {index}: ") for index, item in enumerate(body)]
        except BadRequest:
            alerting.metrics.invalid.inc()
            raise
        if alerts:
            await alerting.post(alerts)
        return web.Response()

    async def get_groups(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        groups = self._alerting().groups(
            matchers=matchers_param(query.getall("filter", [])),
            active=bool_param(query, "active"),
            silenced=bool_param(query, "silenced"),
            inhibited=bool_param(query, "inhibited"),
            receiver=receiver_param(query.get("receiver")),
        )
        return json_response([gettable_group(group) for group in groups])

    # -- silences --------------------------------------------------------------------

    async def get_silences(self, request: web.Request) -> web.StreamResponse:
        matchers = matchers_param(request.query.getall("filter", []))
        alerting = self._alerting()
        silences = alerting.silences.query(matchers)
        now = alerting.clock()
        return json_response([gettable_silence(s, now) for s in sort_silences(silences, now)])

    async def post_silence(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        silence = postable_silence(await read_json(request))
        try:
            silence_id = await alerting.put_silence(silence)
        except SilenceNotFound:
            return error_response("silence not found", 404)
        except SilenceError as exc:
            raise BadRequest(f"silence invalid: {exc}") from None
        return json_response({"silenceID": silence_id})

    async def get_silence(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        try:
            silence = alerting.silences.get(request.match_info["silence_id"])
        except SilenceNotFound:
            return error_response("silence not found", 404)
        return json_response(gettable_silence(silence, alerting.clock()))

    async def delete_silence(self, request: web.Request) -> web.StreamResponse:
        alerting = self._alerting()
        silence_id = request.match_info["silence_id"]
        try:
            if alerting.silences.get(silence_id).state(alerting.clock()) != "expired":
                await alerting.expire_silence(silence_id)
        except SilenceNotFound:
            return error_response("silence not found", 404)
        except SilenceError as exc:
            raise BadRequest(str(exc)) from None
        return web.Response()


def alertmanager_routes(daemon: Daemon) -> list[web.RouteDef]:
    """The ``/api/v2`` routes of ``daemon`` (see the module's documentation)."""
    api = _AlertmanagerAPI(daemon)
    routes = [
        ("GET", "/status", api.status),
        ("GET", "/receivers", api.receivers),
        ("GET", "/alerts", api.get_alerts),
        ("POST", "/alerts", api.post_alerts),
        ("GET", "/alerts/groups", api.get_groups),
        ("GET", "/silences", api.get_silences),
        ("POST", "/silences", api.post_silence),
        ("GET", "/silence/{silence_id}", api.get_silence),
        ("DELETE", "/silence/{silence_id}", api.delete_silence),
    ]
    return [
        web.route(method, PREFIX + path, _answers_bad_requests(handler))
        for method, path, handler in routes
    ]
