"""Durations: the one type every config field that means "an amount of time" uses.

Written as Prometheus does (``500ms``, ``30s``, ``5m``, ``1h30m``, ``7d``, ``2w``) or as a
number of seconds.  Parsed into :class:`datetime.timedelta`.
"""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["Duration", "PositiveDuration", "format_duration", "parse_duration"]

_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
DURATION_PATTERN = r"^((\d+(\.\d+)?)(ms|s|m|h|d|w))+$"


def parse_duration(value: Any) -> timedelta:
    """Parse ``value`` (``"1h30m"``, ``"500ms"``, ``45``, a timedelta) into a timedelta.

    Raises ValueError with the accepted forms when the text is not a duration.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: expected e.g. 500ms, 30s, 5m, 1h")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        return _parse_text(value)
    raise ValueError(f"invalid duration {value!r}: expected e.g. 500ms, 30s, 5m, 1h")


@functools.lru_cache(maxsize=1024)
def _parse_text(value: str) -> timedelta:
    """Configs repeat a handful of durations thousands of times: parse each once."""
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    if _WHOLE.fullmatch(text):
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        return timedelta(seconds=seconds)
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    raise ValueError(f"invalid duration {value!r}: expected e.g. 500ms, 30s, 5m, 1h")


def format_duration(value: timedelta) -> str:
    """Format a timedelta the way it is written in the config (``1h30m``, ``250ms``)."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        out.append(f"{ms}ms")
    return sign + "".join(out)


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be greater than zero")
    return value


_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "pattern": DURATION_PATTERN,
        "description": "A duration such as 500ms, 30s, 5m, 1h30m, 7d",
    }
)
_SERIALIZE = PlainSerializer(format_duration, return_type=str, when_used="json")

Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), AfterValidator(_not_negative), _SERIALIZE, _SCHEMA
]
"""A non-negative duration."""

PositiveDuration = Annotated[
    timedelta, BeforeValidator(parse_duration), AfterValidator(_positive), _SERIALIZE, _SCHEMA
]
"""A duration greater than zero (intervals, timeouts)."""
