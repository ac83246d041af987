"""Errors of the ``/api/v1`` endpoints as RFC 9457 problem documents
(``application/problem+json``): ``type``, ``title``, ``status``, ``detail`` and, for bad
input, ``errors`` with the field path and the reason of each problem."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "CONTENT_TYPE",
    "MAX_LIMIT",
    "Problem",
    "answers_problems",
    "known_params",
    "limit_param",
    "problem_response",
    "time_param",
]

CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(
        self, status: int, detail: str, *, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []

    def __repr__(self) -> str:
        return f"Problem({self.status!r}, {self.detail!r}, errors={self.errors!r})"


def problem_response(
    status: int, detail: str, *, errors: list[dict[str, str]] | None = None
) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return web.Response(status=status, body=orjson.dumps(body), content_type=CONTENT_TYPE)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answers_problems(handler: Handler) -> Handler:
    """``handler`` answering what it raises as problem documents: :class:`Problem`, an
    alert action refused (:class:`~pudimd.alerting.workflow.ActionError`, with its field),
    a malformed body (:class:`~pudimd.api._amjson.BadRequest`: 400), a body over the
    limit (413)."""
    from pudimd.alerting.workflow import ActionError
    from pudimd.api._amjson import BadRequest

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Problem as exc:
            return problem_response(exc.status, exc.detail, errors=exc.errors)
        except ActionError as exc:
            errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
            return problem_response(exc.status, exc.message, errors=errors)
        except BadRequest as exc:
            return problem_response(400, str(exc))
        except web.HTTPRequestEntityTooLarge as exc:
            return problem_response(exc.status, f"the request body is too large: {exc.text}")

    return handle


MAX_LIMIT = 10_000
"""The most rows a ``limit`` query parameter may ask for."""


def known_params(request: web.Request, allowed: set[str]) -> Mapping[str, str]:
    """The request's query, every parameter in ``allowed``.  Raises Problem (400, naming
    each unknown parameter)."""
    query = request.query
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise Problem(
            400,
            f"unknown query parameter {unknown[0]!r}",
            errors=[{"field": name, "message": "unknown query parameter"} for name in unknown],
        )
    return query


def time_param(query: Mapping[str, str], name: str) -> float | None:
    """Query parameter ``name`` as an RFC 3339 time (Unix seconds; None when absent).
    Raises Problem (400, with the field)."""
    from pudimd.alerting.notification import parse_time

    text = query.get(name)
    if not text:
        return None
    try:
        moment = parse_time(text)
    except ValueError as exc:
        raise Problem(
            400, f"{name}: {exc}", errors=[{"field": name, "message": str(exc)}]
        ) from None
    return None if moment is None else moment.timestamp()


def limit_param(query: Mapping[str, str], default: int = 1000) -> int:
    """Query parameter ``limit``: a whole number from 1 to :data:`MAX_LIMIT`.  Raises
    Problem (400)."""
    try:
        limit = int(query.get("limit", str(default)))
    except ValueError:
        raise Problem(400, "limit must be a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise Problem(400, f"limit must be between 1 and {MAX_LIMIT}")
    return limit
