"""A small mergeable quantile sketch: a log-bucketed histogram, after DDSketch.

A value ``x`` goes to bucket ``ceil(log(x) / log(gamma))`` with
``gamma = (1 + accuracy) / (1 - accuracy)``; every value of a bucket is within
``accuracy`` (relative) of the bucket's representative value, so any quantile read back
is within ``accuracy`` of a value of the right rank.  Two sketches merge by adding their
bucket counts, which is what makes per-minute buckets combine into anything longer.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["DEFAULT_ACCURACY", "Sketch"]

DEFAULT_ACCURACY = 0.01
"""Relative accuracy of quantiles (1%)."""

_MIN_VALUE = 1e-9  # values at or below this (and negatives) are counted as zero


class Sketch:
    """Quantiles of a stream of non-negative numbers, to a relative ``accuracy``."""

    __slots__ = ("_gamma", "_log_gamma", "accuracy", "bins", "count", "max", "min", "zeros")

    def __init__(self, accuracy: float = DEFAULT_ACCURACY) -> None:
        if not 0.0 < accuracy < 1.0:
            raise ValueError(f"sketch accuracy must be between 0 and 1, got {accuracy!r}")
        self.accuracy = accuracy
        self._gamma = (1.0 + accuracy) / (1.0 - accuracy)
        self._log_gamma = math.log(self._gamma)
        self.bins: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.min = math.inf
        self.max = -math.inf

    def __repr__(self) -> str:
        return f"Sketch(accuracy={self.accuracy!r}, count={self.count!r}, bins={len(self.bins)})"

    def add(self, value: float, count: int = 1) -> None:
        """Record ``value`` (``count`` times).  NaN is ignored; negatives count as 0."""
        if not value >= _MIN_VALUE:  # also catches NaN
            if value != value:
                return
            value = max(value, 0.0)
            self.zeros += count
        else:
            key = math.ceil(math.log(value) / self._log_gamma)
            self.bins[key] = self.bins.get(key, 0) + count
        self.count += count
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def merge(self, other: Sketch) -> None:
        """Add every value recorded by ``other`` to this sketch."""
        if not math.isclose(self.accuracy, other.accuracy):
            raise ValueError(
                f"cannot merge sketches of accuracy {self.accuracy} and {other.accuracy}"
            )
        bins = self.bins
        for key, n in other.bins.items():
            bins[key] = bins.get(key, 0) + n
        self.zeros += other.zeros
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def copy(self) -> Sketch:
        """An independent sketch with the same content."""
        new = Sketch(self.accuracy)
        new.merge(self)
        return new

    def quantile(self, q: float) -> float:
        """The value of rank ``q * (count - 1)`` (0 <= q <= 1), within ``accuracy``.

        Raises ValueError on an empty sketch.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be between 0 and 1, got {q!r}")
        if self.count == 0:
            raise ValueError("quantile of an empty sketch")
        rank = q * (self.count - 1)
        if rank == 0:
            return self.min
        if rank >= self.count - 1:
            return self.max
        seen = self.zeros
        if rank < seen:
            return max(self.min, 0.0)
        for key in sorted(self.bins):
            seen += self.bins[key]
            if seen > rank:
                value = 2.0 * self._gamma**key / (self._gamma + 1.0)
                return min(max(value, self.min), self.max)
        return self.max

    def to_json(self) -> str:
        """Serialize to compact JSON (what the ``rollups.sketch`` column holds)."""
        data: dict[str, Any] = {
            "a": self.accuracy,
            "z": self.zeros,
            "b": sorted(self.bins.items()),
        }
        if self.count:
            data["min"] = self.min
            data["max"] = self.max
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Sketch:
        """Inverse of :meth:`to_json`.  Raises ValueError on anything else."""
        try:
            data = json.loads(text)
            sketch = cls(float(data["a"]))
            sketch.zeros = int(data["z"])
            sketch.bins = {int(k): int(n) for k, n in data["b"]}
            sketch.count = sketch.zeros + sum(sketch.bins.values())
            if sketch.count:
                sketch.min = float(data["min"])
                sketch.max = float(data["max"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"not a serialized sketch: {text[:80]!r} ({exc})") from None
        return sketch
