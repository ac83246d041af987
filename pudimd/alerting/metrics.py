"""Alerting's metrics, registered on the daemon's registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["AlertingMetrics"]


class _Gauges(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        state = self.read()
        alerts = GaugeMetricFamily(
            "pudimd_alerts", "Alerts in the store by state", labels=["state"]
        )
        for name, count in sorted(state.get("alerts", {}).items()):
            alerts.add_metric([name], count)
        yield alerts
        depth = GaugeMetricFamily(
            "pudimd_notification_queue_depth", "Notifications waiting for delivery"
        )
        depth.add_metric([], state.get("queue_depth", 0))
        yield depth
        oldest = GaugeMetricFamily(
            "pudimd_notification_oldest_pending_age_seconds",
            "Age of the oldest notification waiting for delivery (0 when none waits)",
        )
        oldest.add_metric([], state.get("oldest_pending_age", 0.0))
        yield oldest
        silences = GaugeMetricFamily("pudimd_silences", "Silences by state", labels=["state"])
        for name, count in sorted(state.get("silences", {}).items()):
            silences.add_metric([name], count)
        yield silences
        escalations = GaugeMetricFamily(
            "pudimd_escalations_active", "Escalations in progress (not acknowledged yet)"
        )
        escalations.add_metric([], state.get("escalations", 0))
        yield escalations


class AlertingMetrics:
    """Counters the engine increments, and gauges read from it at scrape time."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.registry = r
        self.received = Counter(
            "pudimd_alerts_received",
            "Alerts posted (API, webhook receiver, rules) by status",
            ["status"],
            registry=r,
        )
        self.invalid = Counter(
            "pudimd_alerts_invalid", "Alert batches refused as malformed", registry=r
        )
        self.notifications = Counter(
            "pudimd_notifications",
            "Notification delivery outcomes by receiver and integration (delivered, retry, "
            "failed, expired, superseded)",
            ["receiver", "integration", "outcome"],
            registry=r,
        )
        self.notification_latency_sum = Counter(
            "pudimd_notification_delivery_seconds",
            "Time spent in delivery attempts",
            ["receiver", "integration"],
            registry=r,
        )
        self.template_errors = Counter(
            "pudimd_notification_template_errors",
            "Receiver templates that failed and fell back to the notifier's default",
            ["receiver", "integration"],
            registry=r,
        )
        self.escalation_levels = Counter(
            "pudimd_escalation_levels",
            "Escalation levels notified",
            ["policy"],
            registry=r,
        )
        self.escalation_lateness = Histogram(
            "pudimd_escalation_lateness_seconds",
            "How late an escalation level fired after its due time",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0),
            registry=r,
        )
        self._gauges: _Gauges | None = None

    def watch(self, read: Callable[[], dict[str, Any]]) -> None:
        """Export the gauges ``read()`` returns (once)."""
        if self._gauges is None:
            self._gauges = _Gauges(read)
            self.registry.register(self._gauges)
        else:
            self._gauges.read = read
