"""The rule engine's helpers: result windows, their statistics, and flap detection."""

from __future__ import annotations

import pytest

from pudimd.alerting.flapping import FlapDetector
from pudimd.alerting.window import ResultWindow, cert_days_left, instant_value, quantile
from pudimd.results import ProbeResult


def test_quantile_interpolates_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert quantile(values, 0.5) == 3.0
    assert quantile(values, 0.95) == pytest.approx(4.8)
    assert quantile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        quantile([], 0.5)


def test_window_keeps_only_its_span() -> None:
    window = ResultWindow(60)
    for second in range(0, 200, 10):
        window.add(float(second), ProbeResult(success=True))
    assert [sample.at for sample in window.samples] == [130, 140, 150, 160, 170, 180, 190]
    window.trim(245)
    assert [sample.at for sample in window.samples] == [190]


def test_window_statistic_follows_new_samples_and_samples_leaving_it() -> None:
    window = ResultWindow(600)
    window.add(0, ProbeResult(success=False))
    window.add(10, ProbeResult(success=True))
    assert window.value("failure_ratio", 60, 10) == (0.5, 2)
    window.add(20, ProbeResult(success=True))
    assert window.value("failure_ratio", 60, 20) == pytest.approx((1 / 3, 3))
    assert window.value("failure_ratio", 60, 60) == pytest.approx((1 / 3, 3))  # t=0 included
    assert window.value("failure_ratio", 60, 61) == (0.0, 2)
    assert window.value("failure_ratio", 60, 100) == (None, 0)


def test_window_counts_degraded_checks_as_failed_only_when_asked() -> None:
    window = ResultWindow(60)
    window.add(1, ProbeResult(success=True, degraded=True))
    window.add(2, ProbeResult(success=True))
    assert window.value("failure_ratio", 60, 2) == (0.0, 2)
    assert window.value("failure_ratio", 60, 2, degraded=True) == (0.5, 2)


def test_window_latency_uses_successful_checks_and_metrics_skip_missing_values() -> None:
    window = ResultWindow(60, keep_metrics=True)
    window.add(1, ProbeResult(success=True, duration=0.2, metrics={"lag": 4}))
    window.add(2, ProbeResult(success=False, duration=9.0))
    window.add(3, ProbeResult(success=True, duration=0.4, metrics={"lag": 8}))
    assert window.value("latency_avg", 60, 3) == pytest.approx((0.3, 2))
    assert window.value("latency_p50", 60, 3) == pytest.approx((0.3, 2))
    assert window.value("metrics.lag", 60, 3) == (6.0, 2)
    assert window.value("metrics.other", 60, 3) == (None, 0)


def test_cert_days_left_reads_what_the_probes_report() -> None:
    now = 1_000_000.0
    by_timestamp = ProbeResult(success=True, metrics={"cert_expiry_timestamp": now + 86400 * 2})
    assert cert_days_left(by_timestamp, now) == 2.0
    by_value = ProbeResult(success=True, values={"CERTIFICATE_EXPIRATION": 86400 * 3.5})
    assert cert_days_left(by_value, now) == 3.5
    by_seconds = ProbeResult(success=True, metrics={"cert_expiry_seconds": 86400.0})
    assert cert_days_left(by_seconds, now) == 1.0
    by_days = ProbeResult(success=True, metrics={"cert_expiry_days": 9.0})
    assert instant_value("cert_days_left", by_days, now) == 9.0
    assert cert_days_left(ProbeResult(success=True), now) is None


def test_flap_detector_flaps_above_max_changes_and_settles_at_max_changes() -> None:
    detector = FlapDetector(window=100, max_changes=2)
    assert not detector.change(0)
    assert not detector.change(10)
    assert detector.change(20)
    assert not detector.change(30)  # already flapping
    assert not detector.settle(109)  # changes at 10, 20, 30 are within [9, 109]
    assert detector.changes(111) == 2
    assert detector.settle(111)
    assert not detector.flapping
