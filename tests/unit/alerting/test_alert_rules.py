"""The rule engine: probe results in, Alertmanager-style alerts out (fake clock, synthetic
results)."""

from __future__ import annotations

import functools
import time
from typing import Any

import anyio
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from pudimd.alerting.alert import PostableAlert
from pudimd.alerting.rules import (
    RECHECK_WAIT,
    RuleConfig,
    RuleEngine,
    check_dependencies,
    check_rules,
)
from pudimd.config.models import TargetBase
from pudimd.results import ProbeResult

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def rule(**fields: Any) -> RuleConfig:
    fields.setdefault("name", "TargetDown")
    return RuleConfig.model_validate(fields)


def target(name: str, **fields: Any) -> TargetBase:
    fields.setdefault("probe", "http")
    fields.setdefault("target", f"http://{name}.example")
    return TargetBase.model_validate({"name": name, **fields})


def ok(duration: float = 0.1, **fields: Any) -> ProbeResult:
    return ProbeResult(success=True, duration=duration, **fields)


def fail(message: str = "connection refused", **fields: Any) -> ProbeResult:
    return ProbeResult(success=False, message=message, duration=0.01, **fields)


class Harness:
    def __init__(
        self,
        rules: list[RuleConfig],
        targets: list[TargetBase],
        *,
        external_url: str = "",
        resend_interval: float = 60.0,
    ) -> None:
        self.clock = Clock()
        self.batches: list[list[PostableAlert]] = []
        self.rechecks: list[str] = []
        self.engine = RuleEngine(
            self.batches.append,
            external_url=external_url,
            resend_interval=resend_interval,
            clock=self.clock,
            recheck=self.rechecks.append,
        )
        self.engine.configure(rules, targets)

    def check(self, name: str, *results: ProbeResult, every: float = 10.0) -> None:
        for result in results:
            self.clock.advance(every)
            self.engine.observe(name, result)

    def evaluate(self, after: float = 1.0) -> None:
        self.engine.evaluate(self.clock.advance(after))

    def take(self) -> list[PostableAlert]:
        alerts = [alert for batch in self.batches for alert in batch]
        self.batches.clear()
        return alerts

    def state(self, name: str, rule_name: str = "TargetDown") -> str | None:
        return self.engine.state(rule_name, name)


def firing(alert: PostableAlert, now: float) -> bool:
    return alert.ends_at is not None and alert.ends_at > now


# -- consecutive failures ----------------------------------------------------------------


def test_alert_fires_after_failure_threshold_consecutive_failures() -> None:
    h = Harness(
        [rule(failure_threshold=3, labels={"severity": "critical", "env": "rules-win"})],
        [target("web", labels={"env": "prod", "team": "api"})],
        external_url="https://pudimd.example/",
    )
    h.check("web", fail(), fail(), ok(), fail(), fail())
    assert h.take() == []
    assert h.state("web") == "inactive"
    h.check("web", fail("timeout after 10s"))
    [alert] = h.take()
    assert alert.labels == {
        "alertname": "TargetDown",
        "target": "web",
        "probe": "http",
        "severity": "critical",
        "env": "rules-win",
        "team": "api",
    }
    assert alert.starts_at == h.clock.now
    assert alert.ends_at == h.clock.now + 180
    assert alert.generator_url == "https://pudimd.example/targets/web"
    assert alert.blocked_by == ()
    assert alert.annotations["description"] == "timeout after 10s"
    assert "3 failed checks in a row" in alert.annotations["summary"]
    assert h.state("web") == "firing"


def test_rule_without_thresholds_fires_after_three_failures() -> None:
    h = Harness([rule()], [target("web")])
    h.check("web", fail(), fail())
    assert h.take() == []
    h.check("web", fail())
    assert len(h.take()) == 1


def test_alert_resolves_after_success_threshold_good_checks() -> None:
    h = Harness([rule(failure_threshold=1, success_threshold=2)], [target("web")])
    h.check("web", fail())
    [fired] = h.take()
    h.check("web", ok(), fail(), ok())
    assert h.take() == []
    assert h.state("web") == "firing"
    h.check("web", ok())
    [resolved] = h.take()
    assert resolved.labels == fired.labels
    assert resolved.ends_at == h.clock.now
    assert resolved.starts_at == fired.starts_at
    assert h.state("web") == "inactive"


def test_degraded_checks_count_as_failures_only_when_the_rule_says_so() -> None:
    h = Harness(
        [
            rule(name="Degraded", failure_threshold=2, degraded=True),
            rule(name="TargetDown", failure_threshold=2),
        ],
        [target("web")],
    )
    h.check("web", ok(degraded=True), ok(degraded=True))
    [alert] = h.take()
    assert alert.labels["alertname"] == "Degraded"
    assert h.state("web", "TargetDown") == "inactive"


# -- for ---------------------------------------------------------------------------------


def test_for_keeps_alert_pending_until_it_has_held_that_long() -> None:
    h = Harness([rule(failure_threshold=1, **{"for": "2m"})], [target("web")])
    h.check("web", fail())
    started = h.clock.now
    assert h.state("web") == "pending"
    h.evaluate(60)
    h.check("web", fail())
    assert h.take() == []
    h.clock.now = started + 120
    h.engine.evaluate()
    [alert] = h.take()
    assert firing(alert, h.clock.now)
    assert alert.starts_at == started
    assert h.state("web") == "firing"


def test_pending_alert_that_recovers_sends_nothing() -> None:
    h = Harness([rule(failure_threshold=1, **{"for": "2m"})], [target("web")])
    h.check("web", fail(), ok())
    h.evaluate(300)
    assert h.take() == []
    assert h.state("web") == "inactive"


# -- combining conditions ----------------------------------------------------------------


def test_when_any_fires_when_either_condition_holds() -> None:
    h = Harness(
        [
            rule(
                failure_threshold=2,
                thresholds=[{"metric": "metrics.queue", "above": 100}],
                when="any",
            )
        ],
        [target("q")],
    )
    h.check("q", ok(metrics={"queue": 500}))
    [alert] = h.take()
    assert "metrics.queue 500 above 100" in alert.annotations["summary"]


def test_when_all_fires_only_when_every_condition_holds() -> None:
    h = Harness(
        [
            rule(
                failure_threshold=2,
                thresholds=[{"metric": "metrics.queue", "above": 100}],
                when="all",
            )
        ],
        [target("q")],
    )
    h.check("q", ok(metrics={"queue": 500}), fail(metrics={"queue": 5}), fail(metrics={"queue": 5}))
    assert h.take() == []
    h.check("q", fail(metrics={"queue": 500}))
    [alert] = h.take()
    assert firing(alert, h.clock.now)


# -- thresholds --------------------------------------------------------------------------


def test_failure_ratio_over_window_fires_and_resolves_as_samples_age_out() -> None:
    h = Harness(
        [
            rule(
                name="Flaky",
                thresholds=[
                    {"metric": "failure_ratio", "window": "10m", "above": 0.25, "min_samples": 4}
                ],
            )
        ],
        [target("web")],
        resend_interval=3600,
    )
    h.check("web", fail(), fail(), ok(), every=60)
    h.evaluate()
    assert h.take() == []  # 2 of 3 failed, but fewer than min_samples
    h.check("web", ok(), every=60)
    h.evaluate()
    [alert] = h.take()
    assert "failure_ratio 0.5 above 0.25 over 10m" in alert.annotations["summary"]
    h.check("web", ok(), every=60)
    h.evaluate()
    assert h.take() == []  # 2 of 5
    # no new checks: the two failures leave the window and the alert resolves
    h.evaluate(after=6 * 60)
    [resolved] = h.take()
    assert resolved.ends_at == h.clock.now
    assert h.state("web", "Flaky") == "inactive"


def test_p95_latency_over_window() -> None:
    h = Harness(
        [
            rule(
                name="Slow",
                thresholds=[{"metric": "latency_p95", "window": "5m", "above": 0.5}],
                annotations={"summary": "p95 is {{ '%.3f' | format(value) }}s"},
            )
        ],
        [target("api")],
    )
    h.check("api", *[ok(0.1)] * 18, ok(2.0), every=5)
    h.evaluate()
    assert h.take() == []  # p95 of 19 samples: 0.1 + 0.1 * (2.0 - 0.1)
    h.check("api", ok(3.0), fail(), every=5)  # failed checks do not count as latency
    h.evaluate()
    [alert] = h.take()
    assert alert.annotations["summary"] == "p95 is 2.050s"


def test_latency_avg_over_window() -> None:
    h = Harness(
        [rule(name="Slow", thresholds=[{"metric": "latency_avg", "window": "1m", "above": 0.3}])],
        [target("api")],
    )
    h.check("api", ok(0.2), ok(0.3), every=5)
    h.evaluate()
    assert h.take() == []
    h.check("api", ok(0.7), every=5)
    h.evaluate()
    assert len(h.take()) == 1


def test_cert_days_left_below_limit() -> None:
    h = Harness(
        [rule(name="CertExpiring", thresholds=[{"metric": "cert_days_left", "below": 14}])],
        [target("a"), target("b"), target("c"), target("plain")],
    )
    h.check("a", ok(metrics={"cert_expiry_timestamp": T0 + 5 * DAY}))
    h.check("b", ok(values={"CERTIFICATE_EXPIRATION": 3 * DAY}))
    h.check("c", ok(metrics={"cert_expiry_timestamp": T0 + 90 * DAY}))
    h.check("plain", ok())
    alerts = h.take()
    assert sorted(alert.labels["target"] for alert in alerts) == ["a", "b"]
    assert h.state("c", "CertExpiring") == "inactive"
    assert h.state("plain", "CertExpiring") == "inactive"


def test_metric_threshold_uses_last_value_or_window_average() -> None:
    h = Harness(
        [
            rule(name="Last", thresholds=[{"metric": "metrics.lag", "above": 10}]),
            rule(name="Avg", thresholds=[{"metric": "metrics.lag", "window": "1m", "above": 10}]),
        ],
        [target("db", probe="postgres")],
    )
    h.check("db", *[ok(metrics={"lag": 2})] * 3, ok(), ok(metrics={"lag": 30}), every=5)
    h.evaluate()
    [alert] = h.take()  # the last value is above 10; the average of 2, 2, 2, 30 is 9
    assert alert.labels["alertname"] == "Last"
    h.check("db", ok(metrics={"lag": 30}), every=5)  # the average is 13.2
    h.evaluate()
    [alert] = h.take()
    assert alert.labels["alertname"] == "Avg"


# -- flapping ----------------------------------------------------------------------------


def test_flapping_holds_notifications_until_it_settles() -> None:
    h = Harness(
        [rule(failure_threshold=1, flapping={"window": "10m", "max_changes": 3})],
        [target("web")],
    )
    h.check("web", fail(), ok(), fail())  # three changes: fire, resolve, fire
    assert [firing(a, h.clock.now) for a in h.take()] == [True, False, True]
    h.check("web", ok())  # the fourth change: flapping, the firing alert is held
    [held] = h.take()
    assert firing(held, h.clock.now)
    assert held.annotations["flapping"] == "true"
    assert h.state("web") == "flapping"
    h.check("web", fail(), ok(), fail(), ok())
    assert h.take() == []
    # the held alert is re-sent so that it does not time out
    h.evaluate(after=60)
    [resent] = h.take()
    assert firing(resent, h.clock.now) and resent.annotations["flapping"] == "true"
    # ten minutes after the fourth-last change the count drops to three: it settles and
    # the real state (up) is sent
    h.evaluate(after=10 * 60)
    [resolved] = h.take()
    assert resolved.ends_at == h.clock.now
    assert "flapping" not in resolved.annotations
    assert h.state("web") == "inactive"


def test_flapping_target_that_settles_down_sends_firing_alert() -> None:
    h = Harness(
        [rule(failure_threshold=1, flapping={"window": "5m", "max_changes": 1})],
        [target("web")],
    )
    h.check("web", ok(), fail())  # first change: fires
    h.take()
    h.check("web", ok())  # second change: flapping, the firing alert is held
    h.check("web", fail())
    [held] = h.take()
    assert held.annotations["flapping"] == "true"
    h.evaluate(after=5 * 60)
    [alert] = h.take()
    assert firing(alert, h.clock.now)
    assert "flapping" not in alert.annotations
    assert h.state("web") == "firing"


def test_flapping_while_resolved_sends_nothing_until_it_settles() -> None:
    h = Harness(
        [rule(failure_threshold=1, flapping={"window": "5m", "max_changes": 2})],
        [target("web")],
    )
    h.check("web", fail(), ok())  # fires, resolves
    assert [firing(a, h.clock.now) for a in h.take()] == [True, False]
    h.check("web", fail(), ok(), fail())  # the third change starts flapping: nothing sent
    assert h.take() == []
    assert h.state("web") == "flapping"
    h.evaluate(after=5 * 60)
    [alert] = h.take()
    assert firing(alert, h.clock.now)


# -- dependencies ------------------------------------------------------------------------


def test_child_alert_is_blocked_while_parent_is_down_and_unblocked_when_it_recovers() -> None:
    h = Harness(
        [rule(failure_threshold=1)],
        [target("switch"), target("web", depends_on=["switch"])],
    )
    h.check("switch", fail())
    [parent] = h.take()
    assert parent.labels["target"] == "switch" and parent.blocked_by == ()
    h.check("web", fail())
    [child] = h.take()
    assert child.blocked_by == ("switch",)
    h.check("switch", ok())
    alerts = h.take()
    assert [(a.labels["target"], firing(a, h.clock.now), a.blocked_by) for a in alerts] == [
        ("switch", False, ()),
        ("web", True, ()),
    ]


def test_child_firing_before_its_parent_was_checked_is_held_until_that_check() -> None:
    h = Harness(
        [rule(failure_threshold=1)],
        [target("db"), target("web", depends_on=["db"])],
    )
    h.check("db", ok())
    h.check("web", fail())  # db's last check is older than web's failure
    [held] = h.take()
    assert held.blocked_by == ("db",) and firing(held, h.clock.now)
    assert h.rechecks == ["db"]  # db's check is asked for, once
    h.evaluate()
    assert h.take() == [] and h.rechecks == ["db"]
    h.check("db", fail(), every=0.5)  # the check asked for: db is down
    alerts = h.take()
    assert [(a.labels["target"], a.blocked_by) for a in alerts] == [("db", ())]
    assert h.state("web") == "firing"
    h.check("db", ok())  # db recovers, web still fails: web pages now
    alerts = h.take()
    assert [(a.labels["target"], firing(a, h.clock.now), a.blocked_by) for a in alerts] == [
        ("db", False, ()),
        ("web", True, ()),
    ]


def test_a_good_check_of_the_parent_releases_the_held_child_at_once() -> None:
    h = Harness(
        [rule(failure_threshold=1)],
        [target("db"), target("web", depends_on=["db"])],
    )
    h.check("web", fail())
    [held] = h.take()
    assert held.blocked_by == ("db",) and h.rechecks == ["db"]
    h.check("db", ok(), every=0.5)
    [released] = h.take()
    assert released.blocked_by == () and firing(released, h.clock.now)
    assert released.starts_at == held.starts_at


def test_a_parent_check_that_never_comes_holds_the_child_for_recheck_wait_at_most() -> None:
    h = Harness(
        [rule(failure_threshold=1)],
        [target("db"), target("web", depends_on=["db"])],
    )
    h.check("web", fail())
    [held] = h.take()
    assert held.blocked_by == ("db",)
    h.evaluate(after=RECHECK_WAIT - 1)
    assert h.take() == []
    h.evaluate(after=2)
    [released] = h.take()
    assert released.blocked_by == () and firing(released, h.clock.now)
    assert h.rechecks == ["db"]


def test_blocking_is_transitive() -> None:
    h = Harness(
        [rule(failure_threshold=1, selector=['target!="db"'])],
        [
            target("switch"),
            target("db", depends_on=["switch"]),
            target("web", depends_on=["db"]),
        ],
    )
    h.check("switch", fail())
    h.check("web", fail())
    alerts = h.take()
    assert alerts[-1].labels["target"] == "web"
    assert alerts[-1].blocked_by == ("db", "switch")  # db: not checked since web failed
    h.check("db", ok(), every=0.5)  # no rule covers db, and its last check succeeded
    [blocked] = h.take()
    assert blocked.blocked_by == ("switch",)
    h.check("db", fail())  # db is down now too: nearest first
    [reblocked] = h.take()
    assert reblocked.blocked_by == ("db", "switch")


def test_parent_without_rule_is_down_while_its_last_check_failed() -> None:
    h = Harness(
        [rule(failure_threshold=1, targets=["web"])],
        [target("db"), target("web", depends_on=["db"])],
    )
    h.check("db", fail())
    assert h.take() == []  # no rule covers db
    h.check("web", fail())
    [child] = h.take()
    assert child.blocked_by == ("db",)
    h.check("db", ok())
    [unblocked] = h.take()
    assert unblocked.blocked_by == () and firing(unblocked, h.clock.now)


def test_parent_firing_through_a_window_threshold_blocks_at_evaluation() -> None:
    h = Harness(
        [
            rule(failure_threshold=1, targets=["web"]),
            rule(
                name="Flaky",
                targets=["db"],
                thresholds=[{"metric": "failure_ratio", "window": "5m", "above": 0.4}],
            ),
        ],
        [target("web", depends_on=["db"]), target("db")],
    )
    h.check("db", ok())
    h.check("web", fail())
    [child] = h.take()
    assert child.blocked_by == ("db",)  # held for db's check
    h.check("db", ok(), every=0.5)
    [released] = h.take()
    assert released.blocked_by == ()
    h.check("db", fail(), fail(), ok(), fail(), every=0.5)  # down at its last check: blocked
    alerts = h.take()
    assert [(a.labels["target"], a.blocked_by) for a in alerts] == [
        ("web", ("db",)),
        ("web", ()),
        ("web", ("db",)),
    ]
    h.evaluate()  # the window rule fires: db stays down whatever its last check
    alerts = h.take()
    assert [(a.labels["target"], a.blocked_by) for a in alerts] == [("db", ())]
    h.check("db", ok(), every=0.5)
    assert h.take() == []  # still firing, so still down


# -- resend ------------------------------------------------------------------------------


def test_firing_alert_is_resent_every_resend_interval_with_ends_at_ahead() -> None:
    h = Harness([rule(failure_threshold=1)], [target("web")], resend_interval=30)
    h.check("web", fail())
    [first] = h.take()
    assert first.ends_at == h.clock.now + 90
    h.evaluate(after=29)
    assert h.take() == []
    h.evaluate(after=1)
    [again] = h.take()
    assert again.labels == first.labels
    assert again.starts_at == first.starts_at
    assert again.annotations == first.annotations
    assert again.ends_at == h.clock.now + 90
    h.check("web", ok())
    [resolved] = h.take()
    h.evaluate(after=120)
    assert resolved.ends_at == h.clock.now - 120
    assert h.take() == []


# -- annotations -------------------------------------------------------------------------


def test_annotations_are_rendered_from_the_result() -> None:
    h = Harness(
        [
            rule(
                failure_threshold=1,
                annotations={
                    "summary": "{{ rule }}: {{ target }} ({{ probe }}) is down",
                    "description": "{{ result.message }}; status {{ result.status }}, "
                    "ip {{ result.values.IP }}, body {{ result.values.BODY }}.",
                    "team": "{{ labels.team }}{{ labels.missing }}",
                },
            )
        ],
        [target("web", labels={"team": "api"})],
    )
    h.check("web", fail("HTTP 503", status=503, values={"IP": "192.0.2.7", "BODY": b"secret"}))
    [alert] = h.take()
    assert alert.annotations == {
        "summary": "TargetDown: web (http) is down",
        "description": "HTTP 503; status 503, ip 192.0.2.7, body .",
        "team": "api",
    }


def test_broken_template_renders_an_error_and_is_logged() -> None:
    h = Harness(
        [
            rule(
                failure_threshold=1,
                annotations={"summary": "{{ 1 / 0 }}", "runbook": "https://runbooks/{{ rule }}"},
            )
        ],
        [target("web")],
    )
    with capture_logs() as logs:
        h.check("web", fail())
    [alert] = h.take()
    assert "ZeroDivisionError" in alert.annotations["summary"]
    assert alert.annotations["runbook"] == "https://runbooks/TargetDown"
    [entry] = [e for e in logs if e["event"] == "annotation template failed"]
    assert entry["annotation"] == "summary" and entry["target"] == "web"


# -- selection ---------------------------------------------------------------------------


def test_selector_matches_target_labels_name_and_probe() -> None:
    targets = [
        target("web", labels={"env": "prod"}),
        target("web-staging", labels={"env": "staging"}),
        target("db", probe="postgres", labels={"env": "prod"}),
        target("off", labels={"env": "prod"}, enabled=False),
    ]
    h = Harness(
        [
            rule(name="ProdDown", failure_threshold=1, selector=['env="prod"']),
            rule(name="HttpDown", failure_threshold=1, selector='probe="http", target=~"web.*"'),
            rule(name="Named", failure_threshold=1, targets=["db"]),
            rule(name="Everything", failure_threshold=1),
        ],
        targets,
    )
    covered = {(s.rule, s.target) for s in h.engine.states()}
    assert covered == {
        ("ProdDown", "web"),
        ("ProdDown", "db"),
        ("HttpDown", "web"),
        ("HttpDown", "web-staging"),
        ("Named", "db"),
        ("Everything", "web"),
        ("Everything", "web-staging"),
        ("Everything", "db"),
    }
    h.check("web-staging", fail())
    assert sorted(a.labels["alertname"] for a in h.take()) == ["Everything", "HttpDown"]


def test_results_of_unknown_and_uncovered_targets_are_ignored() -> None:
    h = Harness([rule(failure_threshold=1, targets=["web"])], [target("web"), target("other")])
    h.check("nope", fail())
    h.check("other", fail())
    assert h.take() == []
    assert h.state("other") is None


# -- reload ------------------------------------------------------------------------------


def test_reload_keeps_the_state_of_unchanged_pairs() -> None:
    rules = [rule(failure_threshold=3, **{"for": "1m"})]
    h = Harness(rules, [target("web"), target("db")])
    h.check("web", fail(), fail())
    h.check("db", fail(), fail(), fail())
    assert h.state("db") == "pending"
    h.engine.configure(
        [rule(failure_threshold=3, **{"for": "1m"})],
        [target("web", interval="15s"), target("db"), target("new")],
    )
    h.check("web", fail())  # the third failure in a row: the two before were kept
    assert h.state("web") == "pending"
    h.evaluate(after=60)
    alerts = h.take()
    assert sorted(a.labels["target"] for a in alerts) == ["db", "web"]


def test_reload_with_the_same_target_objects_keeps_their_entries_and_rebuilds_the_rest() -> None:
    rules = [rule(failure_threshold=2, labels={"severity": "page"})]
    web, db = target("web", labels={"team": "a"}), target("db")
    h = Harness(rules, [web, db])
    h.check("web", fail())
    h.check("db", fail(), fail())
    fired = h.take()
    assert [a.labels["target"] for a in fired] == ["db"]
    kept = h.engine._targets["web"]
    # web is the same object (the daemon passes unchanged targets so); db changed labels
    h.engine.configure(rules, [web, target("db", labels={"team": "b"})])
    assert h.engine._targets["web"] is kept
    alerts = h.take()  # db's alert: resolved under its old labels, firing under the new
    assert sorted((a.labels.get("team", ""), a.ends_at == h.clock.now) for a in alerts) == [
        ("", True),
        ("b", False),
    ]
    h.check("web", fail())  # web's first failure was kept: this is the second
    assert [a.labels["team"] for a in h.take()] == ["a"]
    # a changed rule rebuilds every entry, even of the same objects
    h.engine.configure([rule(failure_threshold=5, labels={"severity": "page"})], [web])
    assert h.engine._targets["web"] is not kept and set(h.engine._targets) == {"web"}


def test_reload_resolves_alerts_of_pairs_that_disappear() -> None:
    h = Harness(
        [rule(failure_threshold=1), rule(name="Other", failure_threshold=1)],
        [target("web"), target("db"), target("cache")],
    )
    h.check("web", fail())
    h.check("db", fail())
    h.check("cache", fail())
    h.take()
    h.clock.advance(5)
    h.engine.configure(
        [rule(failure_threshold=1)],
        [target("db", target="http://db2.example"), target("cache", enabled=False)],
    )
    alerts = h.take()
    assert all(a.ends_at == h.clock.now for a in alerts)
    assert sorted((a.labels["alertname"], a.labels["target"]) for a in alerts) == [
        ("Other", "cache"),
        ("Other", "db"),
        ("Other", "web"),
        ("TargetDown", "cache"),
        ("TargetDown", "db"),  # it checks something else now: a new pair
        ("TargetDown", "web"),
    ]
    assert h.state("db") == "inactive"


def test_reload_with_new_target_labels_resolves_the_old_alert_and_fires_the_new_one() -> None:
    h = Harness([rule(failure_threshold=1)], [target("web", labels={"team": "a"})])
    h.check("web", fail())
    [old] = h.take()
    h.engine.configure([rule(failure_threshold=1)], [target("web", labels={"team": "b"})])
    resolved, new = h.take()
    assert resolved.labels == old.labels and resolved.ends_at == h.clock.now
    assert new.labels["team"] == "b" and firing(new, h.clock.now)
    assert new.starts_at == old.starts_at


def test_reload_with_changed_rule_reevaluates_the_kept_state() -> None:
    h = Harness(
        [rule(failure_threshold=1, thresholds=[{"metric": "metrics.queue", "above": 10}])],
        [target("q")],
    )
    h.check("q", ok(metrics={"queue": 50}))
    [fired] = h.take()
    h.engine.configure(
        [rule(failure_threshold=1, thresholds=[{"metric": "metrics.queue", "above": 20}])],
        [target("q")],
    )
    [again] = h.take()  # still firing: sent again with fresh annotations, same episode
    assert "above 20" in again.annotations["summary"]
    assert again.starts_at == fired.starts_at and firing(again, h.clock.now)
    h.engine.configure(
        [rule(failure_threshold=1, thresholds=[{"metric": "metrics.queue", "above": 100}])],
        [target("q")],
    )
    [resolved] = h.take()
    assert resolved.ends_at == h.clock.now


def test_reload_updates_dependencies() -> None:
    h = Harness([rule(failure_threshold=1)], [target("db"), target("web")])
    h.check("db", fail())
    h.check("web", fail())
    h.take()
    h.engine.configure(
        [rule(failure_threshold=1)], [target("db"), target("web", depends_on=["db"])]
    )
    [blocked] = h.take()
    assert blocked.labels["target"] == "web" and blocked.blocked_by == ("db",)


# -- engine plumbing ---------------------------------------------------------------------


def test_states_report_each_pair_with_its_blocking() -> None:
    h = Harness([rule(failure_threshold=1)], [target("db"), target("web", depends_on=["db"])])
    h.check("db", fail())
    since = h.clock.now
    h.check("web", fail())
    states = {s.target: s for s in h.engine.states()}
    assert states["db"].state == "firing" and states["db"].since == since
    assert states["web"].blocked_by == ("db",)
    assert states["web"].labels["alertname"] == "TargetDown"
    assert h.engine.state("TargetDown", "nope") is None
    assert h.engine.state("Other", "web") is None


def test_sink_failure_is_logged_and_does_not_raise() -> None:
    def broken(alerts: list[PostableAlert]) -> None:
        raise RuntimeError("database is locked")

    engine = RuleEngine(broken)
    engine.configure([rule(failure_threshold=1)], [target("web")])
    with capture_logs() as logs:
        engine.observe("web", fail())
    assert [e["event"] for e in logs] == ["alert sink failed"]
    assert engine.state("TargetDown", "web") == "firing"


async def test_run_evaluates_every_interval() -> None:
    clock = Clock()
    batches: list[list[PostableAlert]] = []
    engine = RuleEngine(batches.append, clock=clock)
    engine.configure([rule(failure_threshold=1, **{"for": "1m"})], [target("web")])
    engine.observe("web", fail())
    clock.advance(60)
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(engine.run, interval=0.01))
        with anyio.fail_after(5):
            while not batches:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert batches[0][0].labels["target"] == "web"


def test_observe_many_results_is_fast() -> None:
    targets = [target(f"t{i}", labels={"env": "prod" if i % 2 else "dev"}) for i in range(100)]
    h = Harness(
        [
            rule(failure_threshold=3),
            rule(
                name="Slow",
                selector=['env="prod"'],
                thresholds=[
                    {"metric": "latency_p95", "window": "5m", "above": 1},
                    {"metric": "failure_ratio", "window": "10m", "above": 0.5},
                ],
            ),
        ],
        targets,
    )
    results = [ok(0.1 + (i % 7) / 10) if i % 13 else fail() for i in range(10_000)]
    start = time.perf_counter()
    for i, result in enumerate(results):
        h.clock.now += 0.06
        h.engine.observe(f"t{i % 100}", result)
    observed = time.perf_counter() - start
    start = time.perf_counter()
    h.engine.evaluate(h.clock.now)
    evaluated = time.perf_counter() - start
    print(
        f"\nobserve: 10k results over 100 targets in {observed * 1000:.1f} ms "
        f"({observed / 10_000 * 1e6:.2f} us each); evaluate: {evaluated * 1000:.2f} ms"
    )


# -- config ------------------------------------------------------------------------------


def test_rule_config_reads_for_and_a_single_selector_string() -> None:
    config = rule(**{"for": "2m"}, selector='env="prod", team=~"a|b"')
    assert config.for_.total_seconds() == 120
    assert [str(m) for m in config.selector] == ['env="prod"', 'team=~"a|b"']
    assert config.failure_threshold == 3
    with_thresholds = rule(thresholds=[{"metric": "cert_days_left", "below": 7}])
    assert with_thresholds.failure_threshold is None


@pytest.mark.parametrize(
    ("fields", "location", "message"),
    [
        ({"name": "Target Down"}, "name", "invalid rule name 'Target Down'"),
        ({"targets": ["a"], "selector": ["env=prod"]}, "", "set targets or selector, not both"),
        ({"selector": ['a=~"("']}, "selector", "invalid regex"),
        ({"labels": {"alertname": "x"}}, "labels", "label 'alertname' is set by pudimd"),
        ({"labels": {"bad-name": "x"}}, "labels", "invalid label name 'bad-name'"),
        ({"annotations": {"summary": "{{ x "}}, "annotations.summary", "template error on line 1"),
        ({"failure_threshold": 0}, "failure_threshold", "greater than or equal to 1"),
        ({"for": "soon"}, "for", "invalid duration 'soon'"),
        ({"when": "most"}, "when", "'any' or 'all'"),
        ({"flapping": {"window": "5m"}}, "flapping.max_changes", "Field required"),
        (
            {"success_threshold": 2, "thresholds": [{"metric": "cert_days_left", "below": 7}]},
            "",
            "success_threshold ends a failure_threshold condition",
        ),
        (
            {"thresholds": [{"metric": "latency_p95", "above": 1}]},
            "thresholds.0",
            "latency_p95 is computed over a window",
        ),
        (
            {"thresholds": [{"metric": "cert_days_left", "window": "1h", "below": 1}]},
            "thresholds.0",
            "takes no window",
        ),
        (
            {"thresholds": [{"metric": "failure_ratio", "window": "1h"}]},
            "thresholds.0",
            "set exactly one of above or below",
        ),
        (
            {"thresholds": [{"metric": "failure_ratio", "window": "1h", "above": 5}]},
            "thresholds.0",
            "failure_ratio is between 0 and 1",
        ),
        (
            {"thresholds": [{"metric": "latency_p42", "window": "1h", "above": 5}]},
            "thresholds.0.metric",
            "unknown metric 'latency_p42'",
        ),
        (
            {"thresholds": [{"metric": "metrics.x", "below": 1, "min_samples": 5}]},
            "thresholds.0",
            "min_samples applies to thresholds with a window",
        ),
    ],
)
def test_invalid_rule_is_refused_with_a_clear_error(
    fields: dict[str, Any], location: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        rule(**fields)
    [error] = caught.value.errors()
    assert ".".join(str(part) for part in error["loc"]) == location
    assert message in error["msg"]


def test_check_rules_reports_unknown_targets_and_duplicate_rules() -> None:
    rules = [
        rule(targets=["web", "ghost"]),
        rule(labels={"severity": "critical"}),
        rule(),
    ]
    assert check_rules(rules, [target("web")]) == [
        (0, "targets: unknown target 'ghost'"),
        (
            2,
            "rule 'TargetDown' has the same name and labels as rule number 1 in the list: "
            "give one of them another name or a label (severity...)",
        ),
    ]
    with pytest.raises(ValueError, match="same labels"):
        RuleEngine(lambda alerts: None).configure(rules, [target("web")])


def test_check_dependencies_reports_unknown_names_self_and_cycles() -> None:
    targets = [
        target("a", depends_on=["b"]),
        target("b", depends_on=["c"]),
        target("c", depends_on=["a"]),
        target("d", depends_on=["d", "ghost"]),
        target("e", depends_on=["a"]),
        target("f", depends_on=["g"]),
        target("g", depends_on=["f"]),
    ]
    assert check_dependencies(targets) == [
        (0, "depends_on: dependency cycle a -> b -> c -> a"),
        (3, "depends_on: 'd' is this target itself"),
        (3, "depends_on: unknown target 'ghost'"),
        (5, "depends_on: dependency cycle f -> g -> f"),
    ]
    assert check_dependencies([target("a"), target("b", depends_on=["a"])]) == []


def test_engine_survives_a_dependency_cycle() -> None:
    h = Harness(
        [rule(failure_threshold=1)],
        [target("a", depends_on=["b"]), target("b", depends_on=["a"])],
    )
    h.check("a", fail())
    h.check("b", fail())
    alerts = h.take()  # the loader refuses cycles; the engine only must not loop
    assert [(a.labels["target"], a.blocked_by) for a in alerts] == [
        ("a", ("b",)),
        ("b", ("a",)),
    ]
