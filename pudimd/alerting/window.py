"""Sliding windows of check results, for the rule engine's window thresholds.

A :class:`ResultWindow` keeps, for one target, a compact sample per check (time, success,
degraded, duration and, when some rule needs them, the probe's metrics) for the longest
window any rule covering the target asks for, in a bounded deque trimmed by time.  Adding a
sample is O(1) amortised; a statistic over a (shorter or equal) window is computed on demand
and cached until a new sample arrives or the oldest sample it used leaves that window.

Statistics (:meth:`ResultWindow.value`):

- ``failure_ratio``: failed checks / checks (a degraded check counts as failed when asked);
- ``latency_p50`` / ``_p90`` / ``_p95`` / ``_p99`` (linear interpolation between ranks, as
  Prometheus' ``quantile_over_time``) and ``latency_avg``: over the durations, in seconds,
  of the *successful* checks (a failed check's duration is the time it took to fail, not a
  response time);
- ``metrics.<name>``: the average of that probe metric over the checks that reported it.

:func:`instant_value` gives the last check's ``cert_days_left`` or ``metrics.<name>``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple

from pudimd.results import ProbeResult

__all__ = [
    "INSTANT_METRICS",
    "MAX_SAMPLES",
    "WINDOW_METRICS",
    "ResultWindow",
    "cert_days_left",
    "instant_value",
    "quantile",
]

MAX_SAMPLES = 20_000
"""Samples kept per target whatever the window (a check every 30ms over 10 minutes)."""

_QUANTILES = {"latency_p50": 0.5, "latency_p90": 0.9, "latency_p95": 0.95, "latency_p99": 0.99}
WINDOW_METRICS = frozenset({"failure_ratio", "latency_avg", *_QUANTILES})
"""Metrics only defined over a window."""
INSTANT_METRICS = frozenset({"cert_days_left"})
"""Metrics only defined for the last check."""
_METRICS_PREFIX = "metrics."
_DAY = 86400.0


class _Sample(NamedTuple):
    at: float
    success: bool
    degraded: bool
    duration: float
    metrics: Mapping[str, float] | None


class _Cached(NamedTuple):
    version: int
    valid_until: float
    value: float | None
    samples: int


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of the sorted, non-empty ``ordered``, interpolating
    linearly between the closest ranks."""
    if not ordered:
        raise ValueError("quantile of no values")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class ResultWindow:
    """The recent checks of one target (see the module docstring)."""

    __slots__ = ("_cache", "keep_metrics", "samples", "span", "version")

    def __init__(self, span: float, *, keep_metrics: bool = False) -> None:
        self.span = span
        """Seconds kept: the longest window of the rules covering the target."""
        self.keep_metrics = keep_metrics
        """Keep each result's metrics (some rule has a ``metrics.<name>`` window)."""
        self.samples: deque[_Sample] = deque(maxlen=MAX_SAMPLES)
        self.version = 0
        self._cache: dict[tuple[str, float, bool], _Cached] = {}

    def __repr__(self) -> str:
        return (
            f"ResultWindow(span={self.span!r}, keep_metrics={self.keep_metrics!r}, "
            f"samples={len(self.samples)})"
        )

    def add(self, now: float, result: ProbeResult) -> None:
        """Record ``result``, observed at ``now``, and forget samples older than the span."""
        self.samples.append(
            _Sample(
                now,
                result.success,
                result.degraded,
                result.duration,
                result.metrics if self.keep_metrics else None,
            )
        )
        self.version += 1
        self.trim(now)

    def trim(self, now: float) -> None:
        """Forget the samples that left the span at ``now``."""
        samples, cutoff = self.samples, now - self.span
        while samples and samples[0].at < cutoff:
            samples.popleft()

    def value(
        self, metric: str, window: float, now: float, *, degraded: bool = False
    ) -> tuple[float | None, int]:
        """``metric`` over the samples of the last ``window`` seconds (those at or after
        ``now - window``), and how many samples it was computed from (None with none).
        ``degraded``: for ``failure_ratio``, a degraded check counts as a failed one."""
        key = (metric, window, degraded and metric == "failure_ratio")
        cached = self._cache.get(key)
        if cached is not None and cached.version == self.version and now <= cached.valid_until:
            return cached.value, cached.samples
        value, count, oldest = self._compute(metric, now - window, degraded)
        valid_until = math.inf if oldest is None else oldest + window
        self._cache[key] = _Cached(self.version, valid_until, value, count)
        return value, count

    def _compute(
        self, metric: str, cutoff: float, degraded: bool
    ) -> tuple[float | None, int, float | None]:
        oldest: float | None = None
        if metric == "failure_ratio":
            total = failed = 0
            for sample in reversed(self.samples):
                if sample.at < cutoff:
                    break
                oldest = sample.at
                total += 1
                if not sample.success or (degraded and sample.degraded):
                    failed += 1
            return (failed / total if total else None), total, oldest
        values: list[float] = []
        name = metric[len(_METRICS_PREFIX) :] if metric.startswith(_METRICS_PREFIX) else None
        for sample in reversed(self.samples):
            if sample.at < cutoff:
                break
            oldest = sample.at
            if name is None:
                if sample.success:
                    values.append(sample.duration)
            elif sample.metrics is not None:
                found = sample.metrics.get(name)
                if found is not None:
                    values.append(found)
        if not values:
            return None, 0, oldest
        if metric in _QUANTILES:
            values.sort()
            return quantile(values, _QUANTILES[metric]), len(values), oldest
        if name is None and metric != "latency_avg":
            raise ValueError(f"unknown window metric {metric!r}")
        return math.fsum(values) / len(values), len(values), oldest


def cert_days_left(result: ProbeResult, now: float) -> float | None:
    """Days until the certificate a check saw expires: from the ``cert_expiry_timestamp``
    metric (http, tcp, tls, grpc probes), else the ``CERTIFICATE_EXPIRATION`` value or the
    ``cert_expiry_seconds`` metric (seconds left at the check), else ``cert_expiry_days``.
    None when the check saw no certificate."""
    metrics = result.metrics
    expiry = metrics.get("cert_expiry_timestamp")
    if expiry is not None:
        return (expiry - now) / _DAY
    left = result.values.get("CERTIFICATE_EXPIRATION")
    if isinstance(left, int | float) and not isinstance(left, bool):
        return float(left) / _DAY
    left = metrics.get("cert_expiry_seconds")
    if left is not None:
        return left / _DAY
    return metrics.get("cert_expiry_days")


def instant_value(metric: str, result: ProbeResult, now: float) -> float | None:
    """``cert_days_left`` or ``metrics.<name>`` of the check ``result`` (None when the check
    did not report it)."""
    if metric == "cert_days_left":
        return cert_days_left(result, now)
    if metric.startswith(_METRICS_PREFIX):
        return result.metrics.get(metric[len(_METRICS_PREFIX) :])
    raise ValueError(f"{metric!r} is not a metric of one check")
