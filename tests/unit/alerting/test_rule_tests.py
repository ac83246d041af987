"""Rule tests (``pudimd rules test``): made-up check results through the real rule engine on
a virtual clock, compared with the alerts expected at given times."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pudimd.alerting.ruletest import (
    START,
    Outcome,
    Suite,
    load_tests,
    load_tests_text,
    parse_series,
)
from pudimd.config import ConfigError

TARGET_DOWN = """rules:
  - name: TargetDown
    failure_threshold: 3
    labels: {severity: page}
    annotations:
      summary: "{{ target }} is down"
      description: "{{ result.message }}"
targets:
  - {name: db, probe: tcp, labels: {team: dba}}
  - {name: web, probe: http}
"""


def load(tmp_path: Path, text: str, name: str = "rules.test.yaml") -> Suite:
    path = tmp_path / name
    path.write_text(text)
    return load_tests(path)


def outcomes(tmp_path: Path, text: str) -> dict[str, Outcome]:
    return {outcome.name: outcome for outcome in load(tmp_path, text).run()}


def only(tmp_path: Path, text: str) -> Outcome:
    [outcome] = outcomes(tmp_path, text).values()
    return outcome


def problems(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_tests_text(text, file="t.yaml", env=env or {})
    return str(caught.value)


# -- the series --------------------------------------------------------------------------


def test_compact_series_repeats_an_entry_n_times_in_all() -> None:
    checks = parse_series("ok fail x3 degraded:250ms _ failx2 ok:1.5s")
    shown = [
        None if c is None else ("ok" if c.success else "fail", c.degraded, c.duration)
        for c in checks
    ]
    assert shown == [
        ("ok", False, 0.0),
        ("fail", False, 0.0),
        ("fail", False, 0.0),
        ("fail", False, 0.0),
        ("ok", True, 0.25),
        None,
        ("fail", False, 0.0),
        ("fail", False, 0.0),
        ("ok", False, 1.5),
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x3 ok", "entry 1 'x3' repeats nothing"),
        ("ok fial", "entry 2 'fial': expected ok, fail, degraded or _"),
        ("ok x2 x2", "entry 3 'x2' repeats nothing"),
        ("ok:fast", "entry 1 'ok:fast': invalid duration 'fast'"),
        ("ok x0", "entry 2 'x0': the count must be at least 1"),
        ("_:1s", "_ (no check) takes no duration"),
    ],
)
def test_compact_series_errors_name_the_entry(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_series(text)


# -- consecutive failures, labels, annotations -------------------------------------------


def test_alert_fires_after_three_failed_checks_and_resolves_on_a_good_one(tmp_path: Path) -> None:
    outcome = only(
        tmp_path,
        TARGET_DOWN
        + """tests:
  - name: db pages after three failed checks
    interval: 30s
    results:
      - target: db
        series:
          - ok
          - {success: false, message: connection refused, repeat: 3}
          - ok
    alerts:
      - at: 1m
        alertname: TargetDown
        expected: []
      - at: 1m30s                       # the third failure comes at 1m30s: it counts
        alertname: TargetDown
        expected:
          - labels: {target: db, probe: tcp, team: dba, severity: page}
            annotations: {summary: db is down, description: connection refused}
      - at: 2m
        alertname: TargetDown
""",
    )
    assert outcome.passed, outcome.failures


def test_wrong_labels_fail_with_what_was_expected_and_what_fired(tmp_path: Path) -> None:
    outcome = only(
        tmp_path,
        TARGET_DOWN
        + """tests:
  - name: wrong severity
    interval: 10s
    results:
      - {target: db, series: fail x3}
    alerts:
      - at: 20s
        alertname: TargetDown
        expected:
          - labels: {target: db, probe: tcp, team: dba, severity: critical}
""",
    )
    assert not outcome.passed
    [failure] = outcome.failures
    assert failure.at == 20 and failure.alertname == "TargetDown"
    assert failure.where == f"{tmp_path / 'rules.test.yaml'}:17"
    assert str(failure).splitlines() == [
        f"{tmp_path / 'rules.test.yaml'}:17: TargetDown at 20s:",
        "  expected:",
        '    {probe="tcp", severity="critical", target="db", team="dba"}',
        "  got:",
        '    {probe="tcp", severity="page", target="db", team="dba"}',
        '      annotations: {description="", summary="db is down"}',
        "  differences:",
        '    missing: {probe="tcp", severity="critical", target="db", team="dba"}',
        '      closest got {probe="tcp", severity="page", target="db", team="dba"}: '
        'severity: expected "critical", got "page"',
        '    unexpected: {probe="tcp", severity="page", target="db", team="dba"}',
    ]


def test_labels_compare_as_the_full_set(tmp_path: Path) -> None:
    outcome = only(
        tmp_path,
        TARGET_DOWN
        + """tests:
  - name: team label left out
    interval: 10s
    results:
      - {target: db, series: fail x3}
    alerts:
      - at: 20s
        alertname: TargetDown
        expected:
          - labels: {alertname: TargetDown, target: db, probe: tcp, severity: page}
""",
    )
    [failure] = outcome.failures
    assert (
        'closest got {probe="tcp", severity="page", target="db", team="dba"}: '
        'team: not expected, got "dba"'
    ) in str(failure)


def test_annotations_are_checked_only_when_given(tmp_path: Path) -> None:
    results = outcomes(
        tmp_path,
        TARGET_DOWN
        + """tests:
  - name: labels only
    interval: 10s
    results:
      - {target: web, series: fail x3}
    alerts:
      - at: 20s
        alertname: TargetDown
        expected:
          - labels: {target: web, probe: http, severity: page}
  - name: wrong summary
    interval: 10s
    results:
      - {target: web, series: fail x3}
    alerts:
      - at: 20s
        alertname: TargetDown
        expected:
          - labels: {target: web, probe: http, severity: page}
            annotations: {summary: web is up}
""",
    )
    assert results["labels only"].passed
    [failure] = results["wrong summary"].failures
    text = str(failure)
    assert '    {probe="http", severity="page", target="web"}: annotations differ:' in text
    assert '      summary: expected "web is up", got "web is down"' in text
    assert '      description: not expected, got ""' in text


def test_nothing_expected_fails_when_an_alert_fires(tmp_path: Path) -> None:
    outcome = only(
        tmp_path,
        TARGET_DOWN
        + """tests:
  - results:
      - {target: web, series: fail x3, interval: 10s}
    alerts:
      - {at: 30s, alertname: TargetDown}
""",
    )
    assert outcome.name == "test 1"
    [failure] = outcome.failures
    assert "  expected:\n    (none)\n" in str(failure)
    assert 'unexpected: {probe="http", severity="page", target="web"}' in str(failure)


def test_degraded_checks_count_only_for_rules_that_say_so(tmp_path: Path) -> None:
    outcome = only(
        tmp_path,
        """rules:
  - {name: Degraded, failure_threshold: 2, degraded: true}
  - {name: TargetDown, failure_threshold: 2}
targets:
  - {name: web, probe: http, interval: 10s}
tests:
  - name: degraded
    results:
      - {target: web, series: ok degraded x2}
    alerts:
      - at: 20s
        alertname: Degraded
        expected: [{labels: {target: web, probe: http}}]
      - {at: 20s, alertname: TargetDown}
""",
    )
    assert outcome.passed, outcome.failures


# -- thresholds and for ------------------------------------------------------------------

SLOW_API = """rules:
  - name: SlowAPI
    thresholds:
      - {metric: latency_p95, window: 5m, above: 0.5}
    for: 1m
    labels: {severity: warning}
    annotations:
      summary: "{{ target }} p95 {{ value | round(2) }}s"
targets:
  - {name: api, probe: http, interval: 30s}
"""


def test_latency_p95_over_a_window_fires_after_for(tmp_path: Path) -> None:
    # 10 checks of 100ms, then 900ms ones from 5m: at 5m the p95 of the last 5m is 0.5 (one
    # slow check in eleven); a second later, the rules being evaluated every second, the
    # check of 0s has left the window and it is 0.54 (one in ten): pending from 5m1s,
    # firing from 6m1s
    results = outcomes(
        tmp_path,
        SLOW_API
        + """tests:
  - name: compact
    results:
      - {target: api, series: "ok:100ms x10 ok:900ms x10"}
    alerts:
      - {at: 6m, alertname: SlowAPI}
      - at: 6m1s
        alertname: SlowAPI
        expected:
          - labels: {target: api, probe: http, severity: warning}
            annotations: {summary: api p95 0.9s}
  - name: mappings
    results:
      - target: api
        series:
          - {duration: 0.1, repeat: 10}
          - {duration: 900ms, status: 200, repeat: 10}
    alerts:
      - at: 6m1s
        alertname: SlowAPI
        expected:
          - labels: {target: api, probe: http, severity: warning}
            annotations: {summary: api p95 0.9s}
  - name: a spike shorter than for does not fire
    results:
      - {target: api, series: "ok:100ms x10 ok:900ms ok:100ms x10"}
    alerts:
      - {at: 10m, alertname: SlowAPI}
""",
    )
    assert {name: o.passed for name, o in results.items()} == {
        "compact": True,
        "mappings": True,
        "a spike shorter than for does not fire": True,
    }, [str(f) for o in results.values() for f in o.failures]


def test_for_keeps_an_alert_pending_until_it_has_held_that_long(tmp_path: Path) -> None:
    outcome = only(
        tmp_path,
        """rules:
  - {name: TargetDown, failure_threshold: 1, for: 2m}
targets:
  - {name: web, probe: http}
tests:
  - name: for
    interval: 10s
    evaluation_interval: 1m      # the check times are evaluated too
    results:
      - {target: web, series: fail x20}
    alerts:
      - {at: 1m59s, alertname: TargetDown}
      - at: 2m
        alertname: TargetDown
        expected: [{labels: {target: web, probe: http}}]
""",
    )
    assert outcome.passed, outcome.failures


def test_metric_and_certificate_thresholds_read_the_last_check(tmp_path: Path) -> None:
    expiry = START + 10 * 86400  # ten days after the test starts
    outcome = only(
        tmp_path,
        f"""rules:
  - name: QueueDeep
    thresholds: [{{metric: metrics.queue_depth, above: 100}}]
    annotations: {{summary: "queue at {{{{ value }}}}"}}
  - name: CertExpiry
    thresholds: [{{metric: cert_days_left, below: 14}}]
targets:
  - {{name: mq, probe: amqp}}
  - {{name: site, probe: http}}
tests:
  - name: metrics
    interval: 10s
    results:
      - target: mq
        series:
          - {{metrics: {{queue_depth: 50}}}}
          - {{metrics: {{queue_depth: 150}}}}
          - {{metrics: {{queue_depth: 80}}}}
      - target: site
        series:
          - {{metrics: {{cert_expiry_timestamp: {expiry}}}}}
    alerts:
      - {{at: 0s, alertname: QueueDeep}}
      - at: 10s
        alertname: QueueDeep
        expected: [{{labels: {{target: mq, probe: amqp}}, annotations: {{summary: queue at 150.0}}}}]
      - {{at: 20s, alertname: QueueDeep}}
      - at: 0s
        alertname: CertExpiry
        expected: [{{labels: {{target: site, probe: http}}}}]
""",
    )
    assert outcome.passed, [str(f) for f in outcome.failures]


# -- dependencies and flapping -----------------------------------------------------------

SWITCH = """rules:
  - {name: TargetDown, failure_threshold: 1}
targets:
  - {name: switch, probe: icmp, interval: 5m}
  - {name: web, probe: http, interval: 10s, depends_on: [switch]}
"""


def test_a_child_is_blocked_by_its_parent_while_the_parent_is_down(tmp_path: Path) -> None:
    results = outcomes(
        tmp_path,
        SWITCH
        + """tests:
  - name: blocked
    results:
      - {target: switch, series: ok fail ok, interval: 1m}
      - {target: web, series: "ok x6 fail x20"}
    alerts:
      - at: 1m30s
        alertname: TargetDown
        expected:
          - labels: {target: switch, probe: icmp}
          - labels: {target: web, probe: http}
            blocked_by: [switch]
      - at: 2m
        alertname: TargetDown
        expected:
          - labels: {target: web, probe: http}
  - name: blocked_by left out
    results:
      - {target: switch, series: ok fail, interval: 1m}
      - {target: web, series: "ok x6 fail x20"}
    alerts:
      - at: 1m30s
        alertname: TargetDown
        expected:
          - labels: {target: switch, probe: icmp}
          - labels: {target: web, probe: http}
""",
    )
    assert results["blocked"].passed, [str(f) for f in results["blocked"].failures]
    [failure] = results["blocked_by left out"].failures
    assert "      blocked_by: [switch]" in str(failure)  # under got:
    assert '{probe="http", target="web"}: blocked_by: expected [], got [switch]' in str(failure)


def test_a_parent_check_asked_for_is_answered_with_its_last_result(tmp_path: Path) -> None:
    # web fails at 20s; the switch was last checked at 0s, before: the engine asks for a
    # check of it, answered with its last result (ok), so web pages at once; without
    # answers (recheck: false) web is held for RECHECK_WAIT (30s)
    results = outcomes(
        tmp_path,
        SWITCH
        + """tests:
  - name: answered
    results:
      - {target: switch, series: ok}
      - {target: web, series: "ok ok fail x5"}
    alerts:
      - at: 20s
        alertname: TargetDown
        expected: [{labels: {target: web, probe: http}}]
  - name: unanswered
    recheck: false
    results:
      - {target: switch, series: ok}
      - {target: web, series: "ok ok fail x5"}
    alerts:
      - at: 49s
        alertname: TargetDown
        expected: [{labels: {target: web, probe: http}, blocked_by: [switch]}]
      - at: 50s
        alertname: TargetDown
        expected: [{labels: {target: web, probe: http}}]
""",
    )
    assert all(o.passed for o in results.values()), [
        str(f) for o in results.values() for f in o.failures
    ]


def test_a_parent_without_results_is_named_when_it_holds_an_alert_back(tmp_path: Path) -> None:
    outcome = only(
        tmp_path,
        SWITCH
        + """tests:
  - name: switch forgotten
    results:
      - {target: web, series: "ok ok fail x5"}
    alerts:
      - at: 20s
        alertname: TargetDown
        expected: [{labels: {target: web, probe: http}}]
""",
    )
    [failure] = outcome.failures
    assert str(failure).splitlines()[-2:] == [
        '    {probe="http", target="web"}: blocked_by: expected [], got [switch]',
        "      switch: no results in this test, so the check depends_on asked for had no "
        "answer (give it a series)",
    ]


def test_a_flapping_alert_stays_firing_marked_flapping(tmp_path: Path) -> None:
    results = outcomes(
        tmp_path,
        """rules:
  - name: TargetDown
    failure_threshold: 1
    flapping: {window: 10m, max_changes: 3}
    annotations: {summary: "{{ target }} is down"}
targets:
  - {name: web, probe: http, interval: 10s}
tests:
  - name: flaps
    results:
      - {target: web, series: fail ok fail ok ok}
    alerts:
      - at: 20s
        alertname: TargetDown
        expected: [{labels: {target: web, probe: http}, flapping: false}]
      - at: 40s                           # the fourth change made it flap: still firing
        alertname: TargetDown
        expected:
          - labels: {target: web, probe: http}
            annotations: {summary: web is down, flapping: "true"}
            flapping: true
  - name: not flapping
    results:
      - {target: web, series: fail ok fail ok ok}
    alerts:
      - at: 40s
        alertname: TargetDown
        expected: [{labels: {target: web, probe: http}, flapping: false}]
""",
    )
    assert results["flaps"].passed, [str(f) for f in results["flaps"].failures]
    [failure] = results["not flapping"].failures
    assert '{probe="http", target="web"}: flapping: expected false, got true' in str(failure)


def test_results_at_the_same_time_are_observed_in_file_order(tmp_path: Path) -> None:
    # the switch and web fail at 1m: listed first, the switch is down when web's result
    # comes, so web is blocked from the start
    outcome = only(
        tmp_path,
        SWITCH
        + """tests:
  - name: same time
    results:
      - {target: switch, series: _ fail, interval: 1m}
      - {target: web, series: "_ x6 fail", start: 0s}
    alerts:
      - at: 1m
        alertname: TargetDown
        expected:
          - labels: {target: switch, probe: icmp}
          - {labels: {target: web, probe: http}, blocked_by: [switch]}
""",
    )
    assert outcome.passed, [str(f) for f in outcome.failures]


def test_a_parent_result_due_at_the_same_time_answers_the_check_asked_for(
    tmp_path: Path,
) -> None:
    # web (listed first) fires at 1m and asks for a check of the switch, whose result is due
    # at 1m too: that result is the answer, observed once (the switch has failed once, it
    # does not fire)
    outcome = only(
        tmp_path,
        """rules:
  - {name: TargetDown, failure_threshold: 2}
targets:
  - {name: switch, probe: icmp}
  - {name: web, probe: http, depends_on: [switch]}
tests:
  - name: same time, child first
    results:
      - {target: web, series: "ok x5 fail x2", interval: 10s}
      - {target: switch, series: ok fail, interval: 1m}
    alerts:
      - at: 1m
        alertname: TargetDown
        expected: [{labels: {target: web, probe: http}, blocked_by: [switch]}]
""",
    )
    assert outcome.passed, [str(f) for f in outcome.failures]


def test_run_selects_tests_by_name(tmp_path: Path) -> None:
    suite = load(
        tmp_path,
        TARGET_DOWN
        + """tests:
  - name: db down
    results: [{target: db, series: fail x3, interval: 10s}]
    alerts: [{at: 0s, alertname: TargetDown}]
  - name: web down
    results: [{target: web, series: fail x3, interval: 10s}]
    alerts: [{at: 0s, alertname: TargetDown}]
""",
    )
    assert suite.names == ["db down", "web down"]
    assert [o.name for o in suite.run(re.compile("web"))] == ["web down"]


# -- the rules and targets of a pudimd config ---------------------------------------------

CONFIG = """alertmanager_config_file: alertmanager.yml   # not there: not read
defaults:
  interval: 20s
  labels: {env: prod}
targets:
  - name: db
    probe: tcp
    target: db.example:5432
    labels: {team: "${TEAM:-core}"}
    tcp: {tls: true}                     # probe settings: not read
  - name: nightly
    probe: http
    target: https://example.com/
    cron: "0 3 * * *"
alerting:
  route: {receiver: pager}
  rules:
    - name: TargetDown
      failure_threshold: 2
      labels: {severity: page}
"""


def test_config_gives_the_rules_and_targets_with_default_labels_and_intervals(
    tmp_path: Path,
) -> None:
    (tmp_path / "pudimd.yaml").write_text(CONFIG)
    outcome = only(
        tmp_path,
        """config: pudimd.yaml
tests:
  - name: db
    results:
      - {target: db, series: ok fail x2}        # every 20s: defaults.interval
    alerts:
      - {at: 20s, alertname: TargetDown}
      - at: 40s
        alertname: TargetDown
        expected:
          - labels: {target: db, probe: tcp, env: prod, team: core, severity: page}
""",
    )
    assert outcome.passed, [str(f) for f in outcome.failures]


def test_a_cron_target_needs_an_interval_in_the_test(tmp_path: Path) -> None:
    (tmp_path / "pudimd.yaml").write_text(CONFIG)
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            """config: pudimd.yaml
tests:
  - results:
      - {target: nightly, series: fail x2}
    alerts: [{at: 0s, alertname: TargetDown}]
""",
        )
    assert str(caught.value) == (
        f"{tmp_path / 'rules.test.yaml'}:4:9: tests[0].results[0]: no interval for "
        "'nightly': set interval here, in the test or on the target (a target with a cron "
        "schedule has none)"
    )


def test_errors_in_the_config_point_into_the_config(tmp_path: Path) -> None:
    (tmp_path / "pudimd.yaml").write_text(
        CONFIG.replace("failure_threshold: 2", "failure_threshold: 0")
    )
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "config: pudimd.yaml\ntests: []\n")
    assert str(caught.value) == (
        f"{tmp_path / 'pudimd.yaml'}:19:26: alerting.rules[0].failure_threshold: "
        "Input should be greater than or equal to 1 (got 0)"
    )


# -- bad test files ----------------------------------------------------------------------

INLINE = "rules: [{name: TargetDown}]\ntargets: [{name: db, probe: tcp}]\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tests: [\n", "t.yaml:2:1: invalid YAML"),
        ("- a\n", "t.yaml:1:1: the top level must be a mapping"),
        (
            INLINE + "tests:\n  - nme: x\n    alerts: [{at: 0s, alertname: TargetDown}]\n",
            "t.yaml:4:5: tests[0].nme: unknown field 'nme'; did you mean 'name'?",
        ),
        (
            INLINE + "tests:\n  - results: [{target: dbb, series: ok, interval: 1s}]\n"
            "    alerts: [{at: 0s, alertname: TargetDown}]\n",
            "t.yaml:4:24: tests[0].results[0].target: unknown target 'dbb'; did you mean 'db'?",
        ),
        (
            INLINE
            + "tests:\n  - results:\n      - target: db\n        interval: 1s\n        series: ok fial\n"
            "    alerts: [{at: 0s, alertname: TargetDown}]\n",
            "t.yaml:7:17: tests[0].results[0].series: entry 2 'fial': expected ok, fail, "
            "degraded or _",
        ),
        (
            INLINE
            + "tests:\n  - results: [{target: db, series: [ok, {sucess: false}], interval: 1s}]\n"
            "    alerts: [{at: 0s, alertname: TargetDown}]\n",
            "t.yaml:4:42: tests[0].results[0].series[1].sucess: unknown field 'sucess'; "
            "did you mean 'success'?",
        ),
        (
            INLINE + "tests:\n  - alerts: [{at: 0s, alertname: TargtDown}]\n",
            "t.yaml:4:34: tests[0].alerts[0].alertname: no rule is named 'TargtDown' "
            "(rules: TargetDown)",
        ),
        (
            INLINE + "tests:\n  - alerts: [{at: soon, alertname: TargetDown}]\n",
            "t.yaml:4:19: tests[0].alerts[0].at: invalid duration 'soon'",
        ),
        (
            INLINE + "tests:\n  - alerts:\n      - at: 0s\n        alertname: TargetDown\n"
            "        expected: [{labels: {target: db}, blocked_by: [sw]}]\n",
            "t.yaml:7:55: tests[0].alerts[0].expected[0].blocked_by: unknown target 'sw'",
        ),
        (
            INLINE + "tests:\n  - name: idle\n",
            "t.yaml:4:5: tests[0]: no alerts to check: a test without them cannot fail",
        ),
        (INLINE + "tests: []\n", "t.yaml:3:8: tests: no tests: add at least one"),
        (
            "config: pudimd.yaml\n" + INLINE + "tests: []\n",
            "t.yaml:1:9: config: set config or inline rules and targets, not both",
        ),
        (
            "rules: [{name: TargetDown}]\ntests: []\n",
            "t.yaml:1:1: missing 'targets': set config (a pudimd config file) or both rules "
            "and targets",
        ),
        (
            "rules: [{name: TargetDown, failure_threshold: 0}]\ntargets: []\ntests: []\n",
            "t.yaml:1:47: rules[0].failure_threshold: Input should be greater than or equal to 1 "
            "(got 0)",
        ),
        (
            "rules: [{name: A, targets: [nope]}]\ntargets: [{name: a, probe: x, depends_on: [a]}]"
            "\ntests: [{alerts: [{at: 0s, alertname: A}]}]\n",
            "t.yaml:1:9: rules[0]: targets: unknown target 'nope'\n"
            "t.yaml:2:43: targets[0].depends_on: depends_on: 'a' is this target itself",
        ),
        ("config: nowhere.yaml\ntests: []\n", "nowhere.yaml: cannot read: No such file"),
    ],
)
def test_bad_files_are_errors_at_their_line_and_column(text: str, expected: str) -> None:
    assert expected in problems(text)


# -- the manual --------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[3] / "docs" / "rule-tests.md"


def doc_blocks() -> list[tuple[str, str]]:
    """The fenced blocks of docs/rule-tests.md as (info string, text)."""
    return re.findall(r"```(\w*)\n(.*?)```", DOCS.read_text(), re.S)


def test_the_examples_in_the_manual_pass_and_its_outputs_are_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = doc_blocks()
    files: dict[str, str] = {}
    outputs: list[str] = []
    for info, text in blocks:
        named = re.fullmatch(r"# ([\w.-]+\.yaml)", text.splitlines()[0])
        if info == "yaml" and named:
            files[named[1]] = text
            Path(named[1]).write_text(text)
        elif info == "":
            outputs.append(text)
    assert {"pudimd.yaml", "rules.test.yaml", "certs.test.yaml", "bad.test.yaml"} <= set(files)
    ran = 0
    for name in sorted(files):
        if name.endswith(".test.yaml") and name != "bad.test.yaml":
            for outcome in load_tests(name).run():
                assert outcome.passed, [str(f) for f in outcome.failures]
                ran += 1
    assert ran == 5
    # the failure shown: the first test expecting severity critical
    failure_text = next(o for o in outputs if o.startswith("FAIL "))
    Path("rules.test.yaml").write_text(
        files["rules.test.yaml"].replace("severity: page}\n", "severity: critical}\n", 1)
    )
    outcome = next(load_tests("rules.test.yaml").run(re.compile("db pages")))
    shown = [f"FAIL {outcome.name}"]
    shown += [f"  {line}" for failure in outcome.failures for line in str(failure).splitlines()]
    assert shown == failure_text.splitlines()
    # the errors shown for bad.test.yaml
    errors_text = next(o for o in outputs if o.startswith("bad.test.yaml:"))
    with pytest.raises(ConfigError) as caught:
        load_tests("bad.test.yaml")
    assert str(caught.value).splitlines() == errors_text.splitlines()
