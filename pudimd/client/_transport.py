"""One HTTP request to the daemon with retries: which failures are retried, how long to
wait, and the answer's JSON or the :class:`~pudimd.client.errors.ApiError` it stands for.

Retried, up to ``retries`` more attempts:

- any request, when the connection could not be made (refused, DNS, connect timeout):
  nothing reached the daemon;
- a ``GET`` on any other connection error or timeout, and on 429, 500, 502, 503 and 504;
- a ``POST`` (an action: not idempotent) only on 429 and 503 carrying ``Retry-After``,
  which say the daemon did not act.  A ``POST`` that may have reached the daemon is never
  sent twice.

The wait is ``Retry-After`` (seconds or an HTTP date) when the answer has one, else
exponential backoff with full jitter: uniform in ``[0, min(max_backoff, backoff * 2**n))``.
A ``Retry-After`` longer than ``max_retry_after`` is not waited for: the error is raised at
once (sleeping less than the server asked would only earn another refusal).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from pudimd.client.errors import ApiError, ConnectionFailed, PudimdError, TimedOut, api_error

__all__ = ["Params", "RetryPolicy", "Transport", "parse_retry_after"]

Params = Sequence[tuple[str, str]]

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_GET = frozenset({429, 500, 502, 503, 504})
RETRY_POST = frozenset({429, 503})  # only with Retry-After


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    """Attempts after the first (0: no retry)."""
    backoff: float = 0.2
    """Seconds: the first wait's upper bound, doubled each retry."""
    max_backoff: float = 5.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more, got {self.retries}")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("backoff, max_backoff and max_retry_after must not be negative")

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0 for the first), full jitter."""
        return random.uniform(0.0, min(self.max_backoff, self.backoff * 2.0**retry))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date (a date in
    the past is 0); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC by RFC 5322
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class Transport:
    """Requests to ``base_url`` over one pooled :class:`aiohttp.ClientSession`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        policy: RetryPolicy,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.policy = policy

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params = (),
        body: Any = None,
    ) -> Any:
        """The answer's JSON (None for an empty body).  Raises ApiError (or a subclass),
        ConnectionFailed (TimedOut) or PudimdError for an answer that is not JSON."""
        url = self.base_url + path
        idempotent = method in IDEMPOTENT
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        attempts = self.policy.retries + 1
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                async with self.session.request(
                    method, url, params=list(params), data=data, headers=headers
                ) as response:
                    payload = await response.read()
                    status, content_type = response.status, response.content_type
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
            except aiohttp.ConnectionTimeoutError as exc:  # connecting: nothing was sent
                if last:
                    raise TimedOut(url, attempt, f"timed out connecting: {exc}") from exc
            except aiohttp.ClientConnectorError as exc:  # refused, unreachable: nothing sent
                if last:
                    raise ConnectionFailed(url, attempt, str(exc)) from exc
            except TimeoutError as exc:  # the request may have reached the daemon
                if last or not idempotent:
                    raise TimedOut(url, attempt, "no answer within the timeout") from exc
            except aiohttp.ClientError as exc:  # dropped connection, broken answer
                if last or not idempotent:
                    raise ConnectionFailed(url, attempt, repr(exc)) from exc
            else:
                if 200 <= status < 300:
                    return _json(url, status, content_type, payload)
                error = api_error(status, content_type, payload, retry_after=retry_after)
                if last or not self._retried(error, idempotent):
                    raise error
                if retry_after is not None:
                    await asyncio.sleep(retry_after)
                    continue
            await asyncio.sleep(self.policy.delay(attempt - 1))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _retried(self, error: ApiError, idempotent: bool) -> bool:
        if error.retry_after is not None and error.retry_after > self.policy.max_retry_after:
            return False
        if idempotent:
            return error.status in RETRY_GET
        return error.status in RETRY_POST and error.retry_after is not None


def _json(url: str, status: int, content_type: str, payload: bytes) -> Any:
    if not payload.strip():
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise PudimdError(
            f"{url} answered {status} with {content_type or 'no content type'}, not JSON: "
            f"{payload[:200].decode('utf-8', 'replace')!r}"
        ) from None
