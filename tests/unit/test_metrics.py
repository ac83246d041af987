from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from pudimd.metrics import Metrics, render_targets
from pudimd.results import ProbeResult


def test_target_families_parse_and_escape_plugin_phase_names() -> None:
    result = ProbeResult(True, 0.25, phases={"dns": 0.01, 'we"ird\\name\n': 0.02}, timestamp=time.time())
    rows = [("a", "http", 3, 1, result), ("b", "tcp", 0, 0, None)]
    families = {f.name: f for f in text_string_to_metric_families(Metrics().render(rows).decode())}
    up = families["pudimd_target_up"].samples
    assert [(s.labels, s.value) for s in up] == [({"target": "a", "probe": "http"}, 1.0)]
    phases = {s.labels["phase"]: s.value for s in families["pudimd_target_phase_duration_seconds"].samples}
    assert phases == {"dns": 0.01, 'we"ird\\name\n': 0.02}
    checks = {s.labels["target"]: s.value for s in families["pudimd_target_checks"].samples}
    assert checks == {"a": 3.0, "b": 0.0}
    assert families["pudimd_target_checks"].type == "counter"


def test_no_targets_still_renders_valid_families() -> None:
    text = render_targets([])
    assert "# TYPE pudimd_target_up gauge" in text
    assert list(text_string_to_metric_families(text))


def test_checks_are_counted_as_success_degraded_or_failure() -> None:
    metrics = Metrics()
    metrics.count_check("http", True)
    metrics.count_check("http", True, degraded=True)
    metrics.count_check("http", True, degraded=True)
    metrics.count_check("http", False, degraded=True)  # a failure is never "degraded"
    families = {f.name: f for f in text_string_to_metric_families(metrics.render([]).decode())}
    counted = {
        s.labels["result"]: s.value
        for s in families["pudimd_checks"].samples
        if s.name == "pudimd_checks_total"
    }
    assert counted == {"success": 1.0, "degraded": 2.0, "failure": 1.0}
