"""Token buckets keyed by token, session or client address."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["Buckets", "retry_after", "too_many"]

_MAX_KEYS = 100_000


class Buckets:
    """One token bucket per key: ``rate`` requests a second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._state: dict[str, tuple[float, float]] = {}  # key: (tokens, at)

    def configure(self, rate: float, burst: int) -> None:
        """Change the limits (a reload); buckets keep what they hold, up to ``burst``."""
        self.rate, self.burst = rate, burst

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._state.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def take(self, key: str, now: float | None = None) -> float:
        """Take one request from ``key``'s bucket: 0 when allowed, else the seconds to wait
        before one is."""
        moment = time.monotonic() if now is None else now
        tokens = self._level(key, moment)
        if tokens >= 1.0:
            if len(self._state) >= _MAX_KEYS and key not in self._state:
                self._prune(moment)
            self._state[key] = (tokens - 1.0, moment)
            return 0.0
        self._state[key] = (tokens, moment)
        return (1.0 - tokens) / self.rate

    def peek(self, key: str, now: float | None = None) -> float:
        """Like :meth:`take` without taking: the seconds to wait (0: one is available)."""
        moment = time.monotonic() if now is None else now
        tokens = self._level(key, moment)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget full buckets (they hold nothing worth remembering)."""
        self._state = {
            key: (tokens, at)
            for key, (tokens, at) in self._state.items()
            if tokens + (now - at) * self.rate < self.burst
        }
        if len(self._state) >= _MAX_KEYS:
            self._state.clear()


def retry_after(seconds: float) -> str:
    """``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def too_many(wait: float, detail: str = "too many requests; slow down") -> web.Response:
    """The 429 problem answer, with ``Retry-After``."""
    from pudimd.api.problems import problem_response

    response = problem_response(429, detail)
    response.headers["Retry-After"] = retry_after(wait)
    return response
