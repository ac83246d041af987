"""``pudimd rules test`` as an operator runs it: a real subprocess on test files next to a
real pudimd.yaml (the shipped example among them), with its exit codes and what it prints."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import PUDIMD

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Tests of the rules of etc/pudimd.yaml (TargetDown after 2 failed checks, severity
# warning; SlowHealth on self-health's p95 over 5m; self-ready-cron depends on self-port).
EXAMPLE_TESTS = """config: pudimd.yaml
tests:
  - name: nothing-on-port-9 is down after two failed checks
    results:
      - target: nothing-on-port-9                 # checked every 30s (its interval)
        series: [{success: false, message: connection refused, repeat: 3}]
    alerts:
      - {at: 0s, alertname: TargetDown}
      - at: 30s
        alertname: TargetDown
        expected:
          - labels:
              target: nothing-on-port-9
              probe: tcp
              env: demo                            # from defaults.labels
              expected: down
              severity: warning
            annotations:
              summary: nothing-on-port-9 is down
              description: connection refused

  - name: self-ready-cron is held back while self-port is down
    results:
      - {target: self-port, series: fail x6}       # every 20s
      - {target: self-ready-cron, series: fail x3, interval: 1m}   # cron: no interval of its own
    alerts:
      - at: 1m
        alertname: TargetDown
        expected:
          - labels: {target: self-port, probe: tcp, env: demo, severity: warning}
          - labels: {target: self-ready-cron, probe: http, env: demo, severity: warning}
            blocked_by: [self-port]

  - name: a slow health endpoint
    results:
      - {target: self-health, series: "ok:50ms x30 ok:400ms x5"}   # every 10s
    alerts:
      - {at: 5m19s, alertname: SlowHealth}
      - at: 5m20s                                  # the third slow check of 31
        alertname: SlowHealth
        expected:
          - labels: {target: self-health, probe: http, env: demo, severity: info}
            annotations:
              summary: "SlowHealth on self-health: latency_p95 0.4 above 0.25 over 5m"
              description: latency_p95 0.4 above 0.25 over 5m
"""

FAILING_TESTS = """config: pudimd.yaml
tests:
  - name: pages on the first failure
    results:
      - {target: self-port, series: fail x3}
    alerts:
      - at: 0s
        alertname: TargetDown
        expected:
          - labels: {target: self-port, probe: tcp, env: demo, severity: critical}
  - name: quiet when up
    results:
      - {target: self-port, series: ok x3}
    alerts:
      - {at: 40s, alertname: TargetDown}
"""


def pudimd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PUDIMD, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A folder holding a copy of etc/pudimd.yaml."""
    shutil.copy(ROOT / "etc" / "pudimd.yaml", tmp_path / "pudimd.yaml")
    return tmp_path


def test_the_example_configs_rules_pass_their_tests(example: Path) -> None:
    tests = example / "example.test.yaml"
    tests.write_text(EXAMPLE_TESTS)
    out = pudimd("rules", "test", tests)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        "PASS nothing-on-port-9 is down after two failed checks",
        "PASS self-ready-cron is held back while self-port is down",
        "PASS a slow health endpoint",
        "3 tests: 3 passed, 0 failed",
    ]
    assert out.stderr == ""


def test_a_failed_test_exits_1_with_expected_and_got(example: Path) -> None:
    tests = example / "failing.test.yaml"
    tests.write_text(FAILING_TESTS)
    out = pudimd("rules", "test", tests)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        "FAIL pages on the first failure",
        f"  {tests}:7: TargetDown at 0s:",
        "    expected:",
        '      {env="demo", probe="tcp", severity="critical", target="self-port"}',
        "    got:",
        "      (none)",
        "    differences:",
        '      missing: {env="demo", probe="tcp", severity="critical", target="self-port"}',
        "PASS quiet when up",
        "2 tests: 1 passed, 1 failed",
    ]


def test_run_selects_tests_and_an_unmatched_pattern_exits_2(example: Path) -> None:
    tests = example / "failing.test.yaml"
    tests.write_text(FAILING_TESTS)
    out = pudimd("rules", "test", "--run", "^quiet", tests)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == ["PASS quiet when up", "1 test: 1 passed, 0 failed"]
    out = pudimd("rules", "test", "--run", "nothing like it", tests)
    assert out.returncode == 2
    assert out.stderr == "pudimd: no test name matches --run 'nothing like it'\n"


def test_a_bad_file_exits_2_with_file_line_and_reason_and_the_others_still_run(
    example: Path,
) -> None:
    bad = example / "bad.test.yaml"
    bad.write_text(
        "config: pudimd.yaml\ntests:\n  - results: [{target: self-prot, series: fail x3}]\n"
        "    alerts: [{at: 0s, alertname: TargetDown}]\n"
    )
    good = example / "example.test.yaml"
    good.write_text(EXAMPLE_TESTS)
    out = pudimd("rules", "test", bad, good)
    assert out.returncode == 2
    assert out.stderr == (
        f"{bad}:3:24: tests[0].results[0].target: unknown target 'self-prot'; "
        "did you mean 'self-port'?\n"
    )
    assert out.stdout.splitlines()[-1] == "3 tests: 3 passed, 0 failed, 1 invalid file"
    assert "Traceback" not in out.stderr


def test_help_describes_the_command_and_its_exit_codes() -> None:
    out = pudimd("rules", "test", "--help")
    assert out.returncode == 0
    assert out.stdout.startswith("Usage:")
    assert "docs/rule-tests.md" in out.stdout and "--run REGEX" in out.stdout
    assert "Exit codes: 0 every test passed; 1 a test failed; 2" in " ".join(out.stdout.split())
