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

    __slots__ = ("_current", "_open")

    def __init__(self) -> None:
        self._open: Buckets = {}
        # Per target: its latest minute and hour buckets, to skip the lookups in add().
        self._current: dict[str, tuple[int, Bucket, int, Bucket]] = {}

    def __len__(self) -> int:
        return sum(len(targets) for targets in self._open.values())

    def add(self, target: str, ts: float, success: bool, duration: float) -> None:
        """Fold a result of ``target`` started at ``ts`` into its minute and hour buckets."""
        minute = int(ts // 60) * 60
        current = self._current.get(target)
        if current is None or current[0] != minute:
            hour = int(ts // 3600) * 3600
            current = (
                minute,
                self._bucket(target, "1m", minute),
                hour,
                self._bucket(target, "1h", hour),
            )
            self._current[target] = current
        current[1].add(success, duration)
        current[3].add(success, duration)

    def _bucket(self, target: str, resolution: str, start: int) -> Bucket:
        targets = self._open.get((resolution, start))
        if targets is None:
            targets = self._open[(resolution, start)] = {}
        bucket = targets.get(target)
        if bucket is None:
            bucket = targets[target] = Bucket()
        return bucket

    def take_closed(self, now: float) -> Buckets:
        """Remove and return the buckets whose period ended at or before ``now``."""
        closed = [key for key in self._open if key[1] + RESOLUTIONS[key[0]] <= now]
        if closed:
            self._current.clear()
        return {key: self._open.pop(key) for key in closed}

    def take_all(self) -> Buckets:
        """Remove and return every bucket, finished or not."""
        taken, self._open = self._open, {}
        self._current.clear()
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
