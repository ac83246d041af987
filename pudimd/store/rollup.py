"""Rollup buckets: per target, per minute and per hour, folded in memory as results
arrive and merged into the rows already stored."""

from __future__ import annotations

from dataclasses import dataclass, field

from pudimd.store.sketch import Sketch

__all__ = ["RESOLUTIONS", "Bucket", "BucketKey", "Buckets", "Rollups"]

RESOLUTIONS: dict[str, int] = {"1m": 60, "1h": 3600}
"""Rollup resolutions and their bucket length in seconds."""

BucketKey = tuple[str, int]
"""``(resolution, bucket_start)``: the buckets of every target for one period."""

Buckets = dict[BucketKey, dict[str, "Bucket"]]
"""Buckets per period, then per target."""

_RESOLUTION_ITEMS = tuple(RESOLUTIONS.items())


@dataclass(slots=True)
class Bucket:
    """Counts and latencies of one target over one period."""

    count: int = 0
    failures: int = 0
    sketch: Sketch = field(default_factory=Sketch)

    def add(self, success: bool, duration: float) -> None:
        """Fold one result in."""
        self.count += 1
        if not success:
            self.failures += 1
        self.sketch.add(duration)

    def merge(self, other: Bucket) -> None:
        """Fold ``other`` (the same target and period) in."""
        self.count += other.count
        self.failures += other.failures
        self.sketch.merge(other.sketch)

    def copy(self) -> Bucket:
        """An independent copy."""
        return Bucket(self.count, self.failures, self.sketch.copy())

    @property
    def latency_p50(self) -> float:
        """Median duration, seconds."""
        return self.sketch.quantile(0.5) if self.sketch.count else 0.0

    @property
    def latency_p95(self) -> float:
        """95th percentile duration, seconds."""
        return self.sketch.quantile(0.95) if self.sketch.count else 0.0

    @property
    def latency_max(self) -> float:
        """Longest duration, seconds."""
        return self.sketch.max if self.sketch.count else 0.0


class Rollups:
    """The buckets not written yet."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: Buckets = {}

    def __len__(self) -> int:
        return sum(len(targets) for targets in self._open.values())

    def add(self, target: str, ts: float, success: bool, duration: float) -> None:
        """Fold a result of ``target`` started at ``ts`` into its minute and hour buckets."""
        for resolution, size in _RESOLUTION_ITEMS:
            key = (resolution, int(ts // size) * size)
            targets = self._open.get(key)
            if targets is None:
                targets = self._open[key] = {}
            bucket = targets.get(target)
            if bucket is None:
                bucket = targets[target] = Bucket()
            bucket.add(success, duration)

    def take_closed(self, now: float) -> Buckets:
        """Remove and return the buckets whose period ended at or before ``now``."""
        closed = [key for key in self._open if key[1] + RESOLUTIONS[key[0]] <= now]
        return {key: self._open.pop(key) for key in closed}

    def take_all(self) -> Buckets:
        """Remove and return every bucket, finished or not."""
        taken, self._open = self._open, {}
        return taken

    def put_back(self, buckets: Buckets) -> None:
        """Return buckets that could not be written (merging with any added since)."""
        for key, targets in buckets.items():
            current = self._open.setdefault(key, {})
            for target, bucket in targets.items():
                mine = current.get(target)
                if mine is None:
                    current[target] = bucket
                else:
                    mine.merge(bucket)
