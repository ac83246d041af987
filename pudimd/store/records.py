"""What the store's read methods return."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pudimd.store.sketch import Sketch

__all__ = ["Rollup", "StoredResult"]


@dataclass(frozen=True, slots=True)
class StoredResult:
    """One stored check result (a row of ``results``)."""

    id: int
    target: str
    probe: str
    ts: float
    success: bool
    duration: float
    status: str | None
    message: str
    phases: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Any) -> StoredResult:
        """Build from a ``results`` row, decoding the JSON columns."""
        return cls(
            id=row.id,
            target=row.target,
            probe=row.probe,
            ts=row.ts,
            success=bool(row.success),
            duration=row.duration,
            status=row.status,
            message=row.message,
            phases=json.loads(row.phases) if row.phases else {},
            metrics=json.loads(row.metrics) if row.metrics else {},
        )


@dataclass(frozen=True, slots=True)
class Rollup:
    """Counts and latency quantiles (seconds) of one target over one minute or hour.

    ``sketch`` holds the bucket's latency distribution: merge the sketches of several
    rollups to get quantiles over a longer span.
    """

    target: str
    resolution: str
    bucket_start: int
    count: int
    failures: int
    latency_p50: float
    latency_p95: float
    latency_max: float
    sketch: Sketch = field(compare=False, repr=False)

    @classmethod
    def from_row(cls, row: Any) -> Rollup:
        """Build from a ``rollups`` row."""
        return cls(
            target=row.target,
            resolution=row.resolution,
            bucket_start=int(row.bucket_start),
            count=row.count,
            failures=row.failures,
            latency_p50=row.latency_p50,
            latency_p95=row.latency_p95,
            latency_max=row.latency_max,
            sketch=Sketch.from_json(row.sketch),
        )
