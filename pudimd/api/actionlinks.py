"""The pages behind the signed action links of notifications (:mod:`pudimd.alerting.links`).

=========================================  ===================================================
``GET /api/v1/actions/{token}``            a page saying what the link does to which alert
                                           (name, labels, state) with a button; changes
                                           nothing: mail scanners fetch links to check them
``POST /api/v1/actions/{token}``           does it; a form or a JSON object with ``actor``
                                           (who; default ``link``) and ``comment``, both
                                           optional; recorded with interface ``link``
=========================================  ===================================================

Answers are HTML pages, or JSON when the client asks for it (``Accept`` naming JSON and
not HTML, or a JSON body): ``GET`` answers ``action``, ``expiresAt`` and the alert as
``GET /api/v1/alerts/{fp}`` shows it, ``POST`` the alert after the change.  Refusals, as a
page or an RFC 9457 problem document: 400 a damaged link or bad input, 403 a link whose
signature is wrong (changed, or the key changed) or that expired, 404 an alert pudimd no
longer holds (or links turned off), 409 an alert already resolved.

Pages are built with every value escaped and served with ``Cache-Control: no-store``,
``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and a Content Security Policy
that allows nothing but the page's own style sheet and posting its form to itself.

:func:`install` adds the routes to the application and, until it is cleaned up, makes
it the provider of the links put in notifications (their key: ``alerting.action_links.secret``,
else ``action-links.key`` in the daemon's state directory, made on first use).
"""

from __future__ import annotations

import base64
import hashlib
import html
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from pudimd.alerting import links as action_links
from pudimd.alerting.links import KEY_FILE, ActionLinks, LinkAction, LinkError
from pudimd.alerting.workflow import MAX_COMMENT, Action, ActionError, ActionKind
from pudimd.api._amjson import BadRequest, api_time, json_response, read_json
from pudimd.api.oncall import alert_json
from pudimd.api.problems import Problem, problem_response
from pudimd.durations import format_duration

if TYPE_CHECKING:
    from pudimd.alerting.alert import Alert
    from pudimd.alerting.config import ActionLinksConfig
    from pudimd.alerting.engine import Alerting, AlertView
    from pudimd.daemon import Daemon

__all__ = ["SECURITY_HEADERS", "actionlink_routes", "install"]

log = structlog.get_logger("pudimd.api.actionlinks")

KINDS: dict[str, ActionKind] = {"ack": "acknowledge", "resolve": "resolve", "snooze": "snooze"}
MAX_ACTOR = 100
_FIELDS = ("actor", "comment")

_CSS = """\
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;
color:#222;background:#f6f6f6;margin:0;padding:24px}
main{max-width:640px;margin:0 auto;background:#fff;border-radius:8px;padding:24px;
box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.4em;margin-top:0}
table{border-collapse:collapse;margin:12px 0}
td{padding:2px 12px 2px 0;vertical-align:top}
code{background:#f0f0f0;padding:1px 4px;border-radius:3px}
label{display:block;margin-top:12px}
input,textarea{width:100%;box-sizing:border-box;padding:6px;font:inherit}
button{margin-top:16px;padding:10px 20px;font:inherit;font-weight:bold;border:0;
border-radius:4px;background:#1f6feb;color:#fff;cursor:pointer}
.muted{color:#666;font-size:.9em}
.error{color:#b00020}
"""
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
"""Headers of every answer of these endpoints."""

_VERB = {"ack": "Acknowledge", "resolve": "Resolve", "snooze": "Snooze"}
_DONE = {"ack": "Acknowledged", "resolve": "Resolved", "snooze": "Snoozed"}


class _LinksAPI:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._key: bytes | None = None

    # -- the links and their key ---------------------------------------------------------

    def _settings(self) -> ActionLinksConfig | None:
        config = getattr(self.daemon, "config", None)
        return config.alerting.action_links if config is not None else None

    def _secret(self, settings: ActionLinksConfig) -> bytes:
        if settings.secret is not None:
            return settings.secret.get_secret_value().encode()
        if self._key is None:
            config = self.daemon.config
            assert config is not None  # the settings came from it
            self._key = action_links.load_or_create_secret(self.daemon.state_dir(config) / KEY_FILE)
        return self._key

    def links(self, base_url: str) -> ActionLinks | None:
        """The provider of :mod:`pudimd.alerting.links`: links for ``base_url`` under the
        running config (None when they are turned off)."""
        settings = self._settings()
        if settings is None or not settings.enabled:
            return None
        return ActionLinks(
            self._secret(settings),
            base_url,
            settings.ttl.total_seconds(),
            settings.snooze.total_seconds(),
        )

    def _verify(self, request: web.Request) -> LinkAction:
        try:
            links = self.links("")  # checking a token needs no base URL
        except (OSError, ValueError) as exc:
            log.error("cannot read the action link key", error=str(exc))
            raise Problem(503, "pudimd cannot read its action link key (see its log)") from None
        if links is None:
            raise Problem(404, "action links are turned off (alerting.action_links.enabled)")
        return links.verify(request.match_info["token"], time.time())

    def _alerting(self) -> Alerting:
        alerting: Alerting | None = self.daemon.alerting
        if alerting is None:
            raise Problem(503, "pudimd's alerting is not running")
        return alerting

    # -- handlers ------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        link = self._verify(request)
        alerting = self._alerting()
        now = time.time()
        alert = _held(alerting, link.fingerprint, now)
        view = alerting.status(alert, now)
        if _wants_json(request):
            return _secured(
                json_response(
                    {
                        "action": link.action,
                        "expiresAt": api_time(link.extra["expires"]),
                        "alert": alert_json(view),
                    }
                )
            )
        return _html(_confirmation(link, view, now))

    async def act(self, request: web.Request) -> web.StreamResponse:
        link = self._verify(request)
        alerting = self._alerting()
        fields = await _fields(request)
        actor = fields.get("actor", "").strip() or "link"
        if len(actor) > MAX_ACTOR:
            raise ActionError(f"a name is at most {MAX_ACTOR} characters", field="actor")
        comment = fields.get("comment", "").strip() or None
        if comment is not None and len(comment) > MAX_COMMENT:
            raise ActionError(f"a comment is at most {MAX_COMMENT} characters", field="comment")
        now = time.time()
        until = now + link.extra["for"] if link.action == "snooze" else None
        action = Action(
            KINDS[link.action], actor=actor, interface="link", until=until, comment=comment
        )
        view = await alerting.act(link.fingerprint, action)
        if _wants_json(request):
            return _secured(json_response(alert_json(view)))
        return _html(_result(link, view))


def _held(alerting: Alerting, fingerprint: str, now: float) -> Alert:
    alert = alerting.alert(fingerprint)
    if alert is None:
        raise Problem(404, "pudimd no longer holds this alert (it resolved a while ago)")
    if alert.resolved(now):
        raise Problem(409, f"{_name(alert)} is already resolved: there is nothing left to do")
    return alert


async def _fields(request: web.Request) -> dict[str, str]:
    """``actor`` and ``comment`` from a form or a JSON object (both optional)."""
    if not request.can_read_body:
        return {}
    if request.content_type == "application/json":
        body: Any = await read_json(request)
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        pairs = list(body.items())
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        pairs = list((await request.post()).items())
    else:
        raise BadRequest("send a form or a JSON object (actor, comment)")
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name not in _FIELDS:
            raise Problem(
                400,
                f"unknown field {name!r} (fields: {', '.join(_FIELDS)})",
                errors=[{"field": name, "message": "unknown field"}],
            )
        if value is not None and not isinstance(value, str):
            raise Problem(
                400,
                f"{name} must be a string",
                errors=[{"field": name, "message": "not a string"}],
            )
        fields[name] = value or ""
    return fields


# -- answers ---------------------------------------------------------------------------


def _wants_json(request: web.Request) -> bool:
    """JSON for a client that asks for it and not for HTML, or that sent JSON; HTML for
    the rest (browsers, and mail scanners that fetch links)."""
    accept = request.headers.get("Accept", "")
    if "text/html" in accept:
        return False
    return "json" in accept or request.content_type == "application/json"


def _secured(response: web.Response) -> web.Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _guard(handler: Any) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except LinkError as exc:
            return _refusal(request, exc.status, exc.message)
        except Problem as exc:
            return _refusal(request, exc.status, exc.detail, exc.errors)
        except ActionError as exc:
            errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
            return _refusal(request, exc.status, exc.message, errors)
        except BadRequest as exc:
            return _refusal(request, 400, str(exc))

    return handle


def _refusal(
    request: web.Request, status: int, detail: str, errors: list[dict[str, str]] | None = None
) -> web.Response:
    if _wants_json(request):
        return _secured(problem_response(status, detail, errors=errors))
    titles = {
        400: "This link cannot be used",
        403: "This link is not valid",
        404: "Nothing to do",
        409: "Nothing to do",
    }
    body = f'<p class="error">{_e(detail)}</p>'
    if status == 403:
        body += (
            '<p class="muted">Act on the alert from pudimd itself (<code>pudimd alerts '
            "ack FINGERPRINT</code>) or from a newer notification.</p>"
        )
    return _html(_document(titles.get(status, "Something went wrong"), body), status)


def _html(text: str, status: int = 200) -> web.Response:
    return _secured(web.Response(status=status, text=text, content_type="text/html"))


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        f"<title>{_e(title)} · pudimd</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n<h1>{_e(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _name(alert: Alert) -> str:
    return alert.labels.get("alertname") or f"alert {alert.fingerprint}"


def _describe(view: AlertView, now: float) -> str:
    """The alert: its name and summary, labels and state."""
    alert = view.alert
    rows = "".join(
        f"<tr><td><code>{_e(name)}</code></td><td>{_e(value)}</td></tr>"
        for name, value in sorted(alert.labels.items())
    )
    state = [f"firing since {_time(alert.starts_at)}"]
    if alert.acked(now):
        ack = f"acknowledged by {alert.acked_by}"
        if alert.ack_until is not None:
            ack += f" until {_time(alert.ack_until)}"
        state.append(ack)
    if alert.assignee:
        state.append(f"assigned to {alert.assignee}")
    if view.state == "suppressed":
        why = [
            what
            for what, present in (
                ("silenced", view.silenced_by),
                ("inhibited", view.inhibited_by),
                ("in a muted time", view.muted_by),
                ("held by a dependency", view.blocked_by),
            )
            if present
        ]
        state.append("suppressed (" + ", ".join(why) + ")")
    summary = alert.annotations.get("summary", "")
    return (
        f"<p><strong>{_e(_name(alert))}</strong>"
        + (f": {_e(summary)}" if summary else "")
        + f"</p>\n<table>{rows}</table>\n"
        f"<p>State: {_e('; '.join(state))}.</p>\n"
        f'<p class="muted">Fingerprint <code>{_e(alert.fingerprint)}</code></p>\n'
    )


def _confirmation(link: LinkAction, view: AlertView, now: float) -> str:
    action = link.action
    if action == "snooze":
        span = format_duration(timedelta(seconds=link.extra["for"]))
        title = f"Snooze this alert for {span}?"
        effect = (
            f"Snoozing acknowledges the alert for {span}: repeats and escalation stop, and "
            "its receivers are told. If it still fires then, it is notified again."
        )
    elif action == "ack":
        title = "Acknowledge this alert?"
        effect = (
            "Acknowledging stops repeats and escalation until the alert resolves; its "
            "receivers are told that someone is on it."
        )
    else:
        title = "Resolve this alert?"
        effect = (
            "Resolving ends the alert now and its receivers are told. If its source still "
            "reports the problem, it fires again as a new alert: to stop hearing about a "
            "known problem, silence it instead."
        )
    form = (
        '<form method="post">\n'
        '<label for="actor">Your name (recorded in the alert\'s history)</label>\n'
        f'<input id="actor" name="actor" maxlength="{MAX_ACTOR}" autocomplete="name">\n'
        '<label for="comment">Comment (optional)</label>\n'
        f'<textarea id="comment" name="comment" rows="2" maxlength="{MAX_COMMENT}">'
        "</textarea>\n"
        f'<button type="submit">{_e(_VERB[action])}</button>\n</form>\n'
    )
    return _document(
        title,
        _describe(view, now)
        + f"<p>{_e(effect)}</p>\n"
        + form
        + f'<p class="muted">This link works until {_e(_time(link.extra["expires"]))}.</p>',
    )


def _result(link: LinkAction, view: AlertView) -> str:
    alert = view.alert
    now = time.time()
    who = alert.acked_by or "link"
    if link.action == "resolve":
        text = f"{_name(alert)} is resolved. Its receivers are told."
    elif link.action == "snooze" and alert.ack_until is not None:
        text = (
            f"{_name(alert)} is snoozed by {who} until {_time(alert.ack_until)}. "
            "Its receivers are told."
        )
    else:
        text = f"{_name(alert)} is acknowledged by {who}. Its receivers are told."
    body = f"<p>{_e(text)}</p>\n"
    if not alert.resolved(now):
        body += _describe(view, now)
    return _document(_DONE[link.action], body)


# -- wiring ------------------------------------------------------------------------------


def actionlink_routes(daemon: Daemon) -> list[web.RouteDef]:
    """The routes alone (their links provider is :func:`install`'s)."""
    return _routes(_LinksAPI(daemon))


def _routes(api: _LinksAPI) -> list[web.RouteDef]:
    return [
        web.get("/api/v1/actions/{token}", _guard(api.page)),
        web.post("/api/v1/actions/{token}", _guard(api.act)),
    ]


def install(app: web.Application, daemon: Daemon) -> None:
    """Serve the action link pages of ``daemon`` from ``app``, and make ``daemon``'s
    running config the provider of the links put in notifications from now until ``app``
    is cleaned up."""
    api = _LinksAPI(daemon)
    app.router.add_routes(_routes(api))
    provider = api.links  # one bound method: clear_provider compares identities
    action_links.set_provider(provider)

    async def cleaned(_app: web.Application) -> None:
        action_links.clear_provider(provider)

    app.on_cleanup.append(cleaned)
