"""pudimd's own Prometheus metrics, served on ``/metrics``.

Per-target series are not kept in client objects: a collector reads the scheduler's live
state at scrape time, so a removed target's series vanish with it and a check costs no
metric updates.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from pudimd import __version__

if TYPE_CHECKING:
    from pudimd.results import ProbeResult
    from pudimd.scheduler import Scheduler

__all__ = ["Metrics"]

LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_TARGET_FAMILIES = (
    ("pudimd_target_up", "gauge", "1 if the last check succeeded, else 0"),
    (
        "pudimd_target_degraded",
        "gauge",
        "1 if the last check succeeded but the target is degraded (degraded_if), else 0",
    ),
    ("pudimd_target_check_duration_seconds", "gauge", "Duration of the last check"),
    ("pudimd_target_last_check_timestamp_seconds", "gauge", "Unix time the last check started"),
    ("pudimd_target_phase_duration_seconds", "gauge", "Duration of each phase of the last check"),
    ("pudimd_target_checks_total", "counter", "Checks run since the target was scheduled"),
    ("pudimd_target_check_failures_total", "counter", "Failed checks since scheduled"),
)

TargetRow = tuple[str, str, int, int, "ProbeResult | None"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_targets(rows: list[TargetRow]) -> str:
    """The per-target families in the text exposition format.

    Written by hand rather than through client objects: with thousands of targets,
    prometheus_client's generic path costs ~50 us per sample, which is a long stall of
    the event loop on every scrape.  Target names and probe types are plain by
    validation; phase names come from plugins and are escaped."""
    out: list[list[str]] = [[] for _ in _TARGET_FAMILIES]
    up, degraded, duration, last, phase, checks, failures = out
    for name, probe, n_checks, n_failures, result in rows:
        labels = f'target="{name}",probe="{probe}"'
        checks.append(f"pudimd_target_checks_total{{{labels}}} {n_checks}.0")
        failures.append(f"pudimd_target_check_failures_total{{{labels}}} {n_failures}.0")
        if result is None:
            continue
        up.append(f"pudimd_target_up{{{labels}}} {1.0 if result.success else 0.0}")
        bad = 1.0 if result.success and result.degraded else 0.0
        degraded.append(f"pudimd_target_degraded{{{labels}}} {bad}")
        duration.append(f"pudimd_target_check_duration_seconds{{{labels}}} {result.duration!r}")
        last.append(f"pudimd_target_last_check_timestamp_seconds{{{labels}}} {result.timestamp!r}")
        for key, seconds in result.phases.items():
            phase.append(
                f'pudimd_target_phase_duration_seconds{{{labels},phase="{_escape(key)}"}} '
                f"{float(seconds)!r}"
            )
    text: list[str] = []
    for (family, kind, help_text), lines in zip(_TARGET_FAMILIES, out, strict=True):
        text.append(f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n")
        if lines:
            text.append("\n".join(lines))
            text.append("\n")
    return "".join(text)


class _SchedulerCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        scheduler = self.metrics.scheduler
        targets = GaugeMetricFamily("pudimd_targets", "Scheduled targets")
        targets.add_metric([], len(scheduler.jobs) if scheduler else 0)
        in_flight = GaugeMetricFamily("pudimd_checks_in_flight", "Checks running now")
        in_flight.add_metric([], scheduler.in_flight if scheduler else 0)
        yield targets
        yield in_flight


class Metrics:
    """Every metric the daemon exports, on its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.scheduler: Scheduler | None = None
        r = self.registry
        self.build_info = Info("pudimd_build", "pudimd build information", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})
        self.start_time = Gauge(
            "pudimd_start_time_seconds", "Unix time the daemon started", registry=r
        )
        self.start_time.set(time.time())
        self.lateness = Histogram(
            "pudimd_scheduler_lateness_seconds",
            "How late checks start after their scheduled time",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.skipped_runs = Counter(
            "pudimd_scheduler_skipped_runs",
            "Scheduled runs skipped because the target's previous check still ran",
            ["probe", "reason"],
            registry=r,
        )
        self.missed_runs = Counter(
            "pudimd_scheduler_missed_runs",
            "Scheduled runs dropped because the scheduler fell behind (see missed_runs)",
            ["probe"],
            registry=r,
        )
        self._check_children: dict[tuple[str, str], Any] = {}
        self.checks = Counter("pudimd_checks", "Checks completed", ["probe", "result"], registry=r)
        self.plugin_errors = Counter(
            "pudimd_plugin_errors",
            "Plugin calls that raised or timed out",
            ["plugin", "hook"],
            registry=r,
        )
        self.reload_success = Gauge(
            "pudimd_config_last_reload_successful",
            "1 if the last config (re)load succeeded, else 0",
            registry=r,
        )
        self.reload_timestamp = Gauge(
            "pudimd_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config (re)load",
            registry=r,
        )
        self.results_written = Counter(
            "pudimd_store_results_written", "Results written to the store", registry=r
        )
        self.store_errors = Counter(
            "pudimd_store_write_errors", "Failed store writes (retried)", registry=r
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        r.register(_SchedulerCollector(self))

    def count_check(self, probe: str, success: bool, degraded: bool = False) -> None:
        """Count one completed check as ``result="success"``, ``"degraded"`` (a success
        that is degraded) or ``"failure"`` (children cached: this runs for every check)."""
        outcome = ("degraded" if degraded else "success") if success else "failure"
        child = self._check_children.get((probe, outcome))
        if child is None:
            child = self.checks.labels(probe=probe, result=outcome)
            self._check_children[(probe, outcome)] = child
        child.inc()

    def plugin_error(self, plugin: str, hook: str, _exc: BaseException | None = None) -> None:
        """Count one plugin failure."""
        self.plugin_errors.labels(plugin=plugin, hook=hook).inc()

    def snapshot(self) -> list[TargetRow]:
        """What :func:`render_targets` needs, read in the event loop (cheap) so that the
        formatting can run in a worker thread."""
        scheduler = self.scheduler
        if scheduler is None:
            return []
        return [
            (job.name, job.target.probe, job.state.checks, job.state.failures, job.state.last)
            for job in list(scheduler.jobs.values())
        ]

    def render(self, rows: list[TargetRow] | None = None) -> bytes:
        """The exposition-format text of every metric."""
        if rows is None:
            rows = self.snapshot()
        return generate_latest(self.registry) + render_targets(rows).encode()
