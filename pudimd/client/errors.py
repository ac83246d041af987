"""What the client raises: :class:`PudimdError` and below it :class:`ApiError` (the daemon
answered with an error: an RFC 9457 problem document from ``/api/v1``, or Alertmanager's JSON
string from ``/api/v2``) with one class per status a caller commonly handles, and
:class:`ConnectionFailed` (no answer, after the retries)."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "ApiError",
    "Conflict",
    "ConnectionFailed",
    "FieldError",
    "Forbidden",
    "NotFound",
    "PudimdError",
    "TimedOut",
    "Unauthorized",
    "api_error",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"


class PudimdError(Exception):
    """Anything the client raises: the daemon refused, could not be reached, or answered
    something the client does not understand."""


@dataclass(frozen=True)
class FieldError:
    """One entry of a problem document's ``errors``: the input ``field`` at fault, why, and
    for config errors the ``location`` (``file:line:column``)."""

    field: str
    message: str
    location: str | None = None


class ApiError(PudimdError):
    """The daemon answered with an error status."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: tuple[FieldError, ...] = (),
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.retry_after = retry_after
        """Seconds the server asked to wait (``Retry-After``), when it said."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, title={self.title!r}, "
            f"detail={self.detail!r}, errors={self.errors!r})"
        )


class Unauthorized(ApiError):
    """401: no or a bad token."""


class Forbidden(ApiError):
    """403: the token may not do this (or a signed link is bad or expired)."""


class NotFound(ApiError):
    """404: no such alert, version, schedule or endpoint."""


class Conflict(ApiError):
    """409: the alert is in no state for this action (resolved, not acknowledged)."""


class ConnectionFailed(PudimdError):
    """No answer from the daemon after ``attempts`` tries; ``__cause__`` is the last error."""

    def __init__(self, url: str, attempts: int, reason: str) -> None:
        super().__init__(f"cannot reach {url} ({attempts} attempts): {reason}")
        self.url = url
        self.attempts = attempts
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={self.url!r}, attempts={self.attempts!r}, "
            f"reason={self.reason!r})"
        )


class TimedOut(ConnectionFailed):
    """The daemon did not answer within the timeout (on every attempt)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _field_errors(raw: Any) -> tuple[FieldError, ...]:
    if not isinstance(raw, list):
        return ()
    out: list[FieldError] = []
    for item in raw:
        if isinstance(item, dict):
            location = item.get("location")
            out.append(
                FieldError(
                    field=str(item.get("field", "")),
                    message=str(item.get("message", "")),
                    location=str(location) if location is not None else None,
                )
            )
    return tuple(out)


def api_error(
    status: int, content_type: str, body: bytes, *, retry_after: float | None = None
) -> ApiError:
    """The error an answer with status ``status`` stands for: a problem document's
    ``title``, ``detail`` and ``errors``; Alertmanager's JSON string (or any other JSON
    body's ``error``/``message``) as the detail; else the body's text."""
    title, detail = _phrase(status), ""
    errors: tuple[FieldError, ...] = ()
    data: Any = None
    if content_type in (PROBLEM_CONTENT_TYPE, "application/json"):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
    if isinstance(data, dict) and content_type == PROBLEM_CONTENT_TYPE:
        title = str(data.get("title") or title)
        detail = str(data.get("detail") or "")
        errors = _field_errors(data.get("errors"))
    elif isinstance(data, str):
        detail = data
    elif isinstance(data, dict) and isinstance(data.get("error") or data.get("message"), str):
        detail = str(data.get("error") or data.get("message"))
    else:
        detail = body.decode("utf-8", "replace").strip()
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, title, detail, errors, retry_after=retry_after)
