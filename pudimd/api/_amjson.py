"""Alertmanager's JSON shapes (API v2 and the webhook payload), read and written: times,
postable and gettable alerts, silences, request bodies and query parameters.

Readers raise :class:`BadRequest` with the message the client gets in its 400 answer;
writers give every field Alertmanager's OpenAPI spec marks required (``amtool``'s
generated client refuses an answer that lacks one).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from pudimd.alerting.alert import AlertError, PostableAlert, validate_labels
from pudimd.alerting.matchers import Matcher, MatcherError, parse_matchers
from pudimd.alerting.notification import format_time, parse_time
from pudimd.alerting.silences import Silence

if TYPE_CHECKING:
    from pudimd.alerting.engine import AlertView, GroupView

__all__ = [
    "MAX_BODY_BYTES",
    "BadRequest",
    "api_time",
    "bool_param",
    "error_response",
    "gettable_alert",
    "gettable_group",
    "gettable_silence",
    "json_response",
    "label_set",
    "matchers_param",
    "postable_alert",
    "postable_silence",
    "read_json",
    "read_time",
    "receiver_param",
    "sort_silences",
    "string_field",
]

MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest request body read: far above a batch of alerts with their annotations as
Prometheus posts them, whatever the listener's own limit for other requests."""

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
"""What Go's ``strconv.ParseBool`` (Alertmanager's query parser) accepts."""

_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")


class BadRequest(ValueError):
    """The request is malformed; the message is the 400 answer's body."""


# -- answers -----------------------------------------------------------------------------


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def error_response(message: str, status: int = 400) -> web.Response:
    """An error as Alertmanager answers one: the message as a JSON string."""
    return json_response(message, status)


# -- request bodies and parameters -------------------------------------------------------


async def read_json(request: web.Request) -> Any:
    """The request body parsed as JSON (up to :data:`MAX_BODY_BYTES`, whatever the
    application's ``client_max_size``).  Raises BadRequest, or HTTPRequestEntityTooLarge."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_BODY_BYTES, actual_size=request.content_length or size
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise BadRequest("the request body is empty (expected JSON)")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def bool_param(query: Mapping[str, str], name: str, default: bool = True) -> bool:
    """Boolean query parameter ``name`` (``true``/``false``/``1``/``0``..., as Go reads
    them); absent or empty is ``default``."""
    text = query.get(name, "")
    if not text:
        return default
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadRequest(f"invalid value {text!r} for the query parameter {name!r}: use true or false")


def matchers_param(values: Iterable[str]) -> list[Matcher]:
    """The repeated ``filter`` parameter: each value one matcher (or a list of them)."""
    matchers: list[Matcher] = []
    for value in values:
        try:
            matchers.extend(parse_matchers(value))
        except MatcherError as exc:
            raise BadRequest(f"bad filter: {exc}") from None
    return matchers


def receiver_param(text: str | None) -> re.Pattern[str] | None:
    """The ``receiver`` parameter as an anchored regex (``^(?:text)$``, as Alertmanager
    builds it; a leading flag group such as ``(?i)`` stays in front)."""
    if not text:
        return None
    flags = _FLAGS.match(text)
    head, body = (flags.group(), text[flags.end() :]) if flags else ("", text)
    try:
        return re.compile(f"{head}^(?:{body})$")
    except re.error as exc:
        raise BadRequest(f"failed to parse receiver param: {exc}") from None


# -- times -------------------------------------------------------------------------------


def api_time(seconds: float) -> str:
    """Unix seconds as the API writes a time: RFC 3339, UTC, milliseconds."""
    return format_time(datetime.fromtimestamp(seconds, UTC))


def read_time(value: Any, what: str) -> float | None:
    """An RFC 3339 time field as Unix seconds; absent, null, empty or Go's zero time
    (``0001-01-01T00:00:00Z``) is None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be an RFC 3339 time string, got {value!r}")
    try:
        parsed = parse_time(value)
    except ValueError as exc:
        raise BadRequest(f"{what}: invalid RFC 3339 time {value!r} ({exc})") from None
    return None if parsed is None else parsed.timestamp()


def _required_time(value: Any, what: str) -> float:
    seconds = read_time(value, what)
    if seconds is None:
        raise BadRequest(f"{what} is required")
    return seconds


def string_field(data: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    """String field ``key`` of ``data``; absent or null is the empty string."""
    value = data.get(key)
    if value is None:
        if required:
            raise BadRequest(f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string, got {value!r}")
    return value


def label_set(value: Any, what: str) -> dict[str, str]:
    """A label set (or annotations) checked by :func:`validate_labels`; null is empty."""
    if value is None:
        return {}
    try:
        return validate_labels(value, what)
    except AlertError as exc:
        raise BadRequest(str(exc)) from None


# -- alerts ------------------------------------------------------------------------------


def postable_alert(data: Any, where: str) -> PostableAlert:
    """One postableAlert (``labels`` required, ``annotations``, ``startsAt``, ``endsAt``,
    ``generatorURL`` optional), checked as Alertmanager does: at least one label, valid
    names, string values, RFC 3339 times, the end not before the start.  As in
    Alertmanager, an alert given only an end starts at its end.  ``where`` starts every
    message (``alert 3: ``)."""
    if not isinstance(data, dict):
        raise BadRequest(f"{where}expected an object, got {data!r}")
    if "labels" not in data or data["labels"] is None:
        raise BadRequest(f"{where}labels is required")
    try:
        labels = label_set(data["labels"], "labels")
        annotations = label_set(data.get("annotations"), "annotations")
        if not labels:
            raise BadRequest("at least one label pair required")
        starts = read_time(data.get("startsAt"), "startsAt")
        ends = read_time(data.get("endsAt"), "endsAt")
        generator_url = string_field(data, "generatorURL")
    except BadRequest as exc:
        raise BadRequest(f"{where}{exc}") from None
    if starts is not None and ends is not None and ends < starts:
        raise BadRequest(f"{where}start time must be before end time")
    if starts is None and ends is not None:
        starts = ends
    return PostableAlert(
        labels=labels,
        annotations=annotations,
        starts_at=starts,
        ends_at=ends,
        generator_url=generator_url,
    )


def gettable_alert(view: AlertView) -> dict[str, Any]:
    """An alert as ``GET /api/v2/alerts`` shows it.  pudimd's extras appear only when
    they say something: ``status.blockedBy`` (the targets holding it back, ``depends_on``),
    ``status.acknowledgedBy`` and ``status.assignee``."""
    alert = view.alert
    status: dict[str, Any] = {
        "state": view.state,
        "silencedBy": list(view.silenced_by),
        "inhibitedBy": list(view.inhibited_by),
        "mutedBy": list(view.muted_by),
    }
    if view.blocked_by:
        status["blockedBy"] = list(view.blocked_by)
    if alert.acked_by is not None and alert.acked(time.time()):
        status["acknowledgedBy"] = alert.acked_by
    if alert.assignee is not None:
        status["assignee"] = alert.assignee
    shown: dict[str, Any] = {
        "annotations": dict(alert.annotations),
        "endsAt": api_time(alert.ends_at),
        "fingerprint": alert.fingerprint,
        "receivers": [{"name": name} for name in view.receivers],
        "startsAt": api_time(alert.starts_at),
        "status": status,
        "updatedAt": api_time(alert.updated_at),
        "labels": dict(alert.labels),
    }
    if alert.generator_url:
        shown["generatorURL"] = alert.generator_url
    return shown


def gettable_group(group: GroupView) -> dict[str, Any]:
    return {
        "labels": dict(group.labels),
        "receiver": {"name": group.receiver},
        "alerts": [gettable_alert(view) for view in group.alerts],
    }


# -- silences ----------------------------------------------------------------------------


def postable_silence(data: Any) -> Silence:
    """A postableSilence: ``matchers`` (at least one), ``startsAt``, ``endsAt``,
    ``createdBy``, ``comment``, an optional ``id`` (update that silence) and pudimd's
    optional ``expireOnResolve``.  The silence's own rules (a matcher that does not match
    the empty string, an end in the future...) are checked when it is put."""
    if not isinstance(data, dict):
        raise BadRequest(f"the silence must be a JSON object, got {data!r}")
    raw = data.get("matchers")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("matchers must be a list of at least one matcher")
    matchers: list[Matcher] = []
    for index, item in enumerate(raw):
        try:
            matchers.append(Matcher.from_api(item))
        except MatcherError as exc:
            raise BadRequest(f"silence invalid: matcher {index}: {exc}") from None
    starts = _required_time(data.get("startsAt"), "startsAt")
    ends = _required_time(data.get("endsAt"), "endsAt")
    expire_on_resolve = data.get("expireOnResolve", False)
    if expire_on_resolve is None:
        expire_on_resolve = False
    if not isinstance(expire_on_resolve, bool):
        raise BadRequest(f"expireOnResolve must be true or false, got {expire_on_resolve!r}")
    return Silence(
        matchers=tuple(matchers),
        starts_at=starts,
        ends_at=ends,
        created_by=string_field(data, "createdBy", required=True),
        comment=string_field(data, "comment", required=True),
        id=string_field(data, "id"),
        expire_on_resolve=expire_on_resolve,
    )


def gettable_silence(silence: Silence, now: float) -> dict[str, Any]:
    """A silence as ``GET /api/v2/silences`` shows it, with pudimd's ``expireOnResolve``."""
    return {
        "id": silence.id,
        "status": {"state": silence.state(now)},
        "updatedAt": api_time(silence.updated_at),
        "comment": silence.comment,
        "createdBy": silence.created_by,
        "endsAt": api_time(silence.ends_at),
        "matchers": [matcher.to_api() for matcher in silence.matchers],
        "startsAt": api_time(silence.starts_at),
        "expireOnResolve": silence.expire_on_resolve,
    }


def sort_silences(silences: Iterable[Silence], now: float) -> list[Silence]:
    """Alertmanager's order: active ones ending soonest first, then pending ones starting
    soonest, then expired ones, most recently ended first."""

    def key(silence: Silence) -> tuple[int, float]:
        state = silence.state(now)
        if state == "active":
            return 0, silence.ends_at
        if state == "pending":
            return 1, silence.starts_at
        return 2, -silence.ends_at

    return sorted(silences, key=key)
