"""``pudimd oncall now|schedule`` and assignment to configured users and teams, through a
real daemon with an ``oncall`` section; ``check-config`` on bad ``oncall`` sections."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import PUDIMD
from tests.integration.daemon_harness import DaemonProcess, running_daemon

pytestmark = pytest.mark.integration

CONFIG = """\
alerting:
  route: {receiver: default, group_by: [alertname], escalation_policy: page}
  receivers: [{name: default}, {name: alice-pager}]
oncall:
  users:
    - {name: alice, email: alice@example.com, receiver: alice-pager}
    - {name: bob}
    - {name: carol}
  teams:
    - {name: dba, members: [alice, bob]}
  schedules:
    - name: primary
      time_zone: Europe/Lisbon
      layers:
        - name: weekly
          start: "2026-01-05T09:00"
          rotation: 1w
          users: [alice, bob]
      overrides:
        - {user: carol, start: "2026-12-24T00:00", end: "2026-12-26T00:00"}
  escalation_policies:
    - name: page
      levels:
        - {targets: [{schedule: primary}], delay: 15m}
        - {targets: [{team: dba}, {receiver: default}]}
"""


def pudimd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PUDIMD, *args], capture_output=True, text=True, timeout=60, check=False)


def ok(*args: str) -> str:
    out = pudimd(*args)
    assert out.returncode == 0, f"pudimd {' '.join(args)}: {out.stderr}{out.stdout}"
    return out.stdout


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    path = tmp_path_factory.mktemp("oncall") / "pudimd.yaml"
    path.write_text(CONFIG)
    yield from running_daemon(path, path.parent / "state", token_env=True)


def test_who_is_on_call_now_at_a_time_and_over_a_week(daemon: DaemonProcess) -> None:
    # 2026-01-05 09:00 Lisbon (UTC+0 in winter) starts alice's week, then bob's
    at = json.loads(
        ok("oncall", "now", "--url", daemon.url, "--at", "2026-01-06T12:00:00Z", "-o", "json")
    )
    assert at["schedules"] == {"primary": ["alice"]}
    at = json.loads(
        ok("oncall", "now", "--url", daemon.url, "--at", "2026-01-13T12:00:00Z", "-o", "json")
    )
    assert at["schedules"] == {"primary": ["bob"]}
    christmas = ok("oncall", "now", "--url", daemon.url, "--at", "2026-12-25T12:00:00Z")
    assert christmas.splitlines() == ["SCHEDULE  ON CALL", "primary   carol"]
    week = json.loads(
        ok("oncall", "schedule", "--url", daemon.url, "--from", "2026-12-20T00:00:00Z",
           "--days", "10", "-o", "json", "primary")
    )  # fmt: skip
    assert [(s["user"], s["start"][:16], s["end"][:16], s["layer"]) for s in week["shifts"]] == [
        ("bob", "2026-12-20T00:00", "2026-12-21T09:00", "weekly"),
        ("alice", "2026-12-21T09:00", "2026-12-24T00:00", "weekly"),
        ("carol", "2026-12-24T00:00", "2026-12-26T00:00", "override"),
        ("alice", "2026-12-26T00:00", "2026-12-28T09:00", "weekly"),
        ("bob", "2026-12-28T09:00", "2026-12-30T00:00", "weekly"),
    ]
    table = ok("oncall", "schedule", "--url", daemon.url, "--from", "2026-12-24T00:00:00Z",
               "--days", "1", "primary")  # fmt: skip
    assert table.splitlines()[1].split() == [
        "2026-12-24",
        "00:00",
        "2026-12-25",
        "00:00",
        "carol",
        "override",
    ]
    unknown = pudimd("oncall", "schedule", "--url", daemon.url, "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "pudimd: GET /api/v1/oncall/schedules/nope?days=7.0: HTTP 404: no schedule 'nope' "
        "(schedules: primary)"
    )


def test_alerts_are_assigned_to_configured_users_and_teams(daemon: DaemonProcess) -> None:
    ok("alerts", "add", "--url", daemon.url, "OncallAssign", "host=db1")
    listed = json.loads(
        ok("alerts", "list", "--url", daemon.url, "-o", "json", "alertname=OncallAssign")
    )
    fp = listed[0]["fingerprint"]
    assert "assigned to team:dba" in ok(
        "alerts", "assign", "--url", daemon.url, "--to", "team:dba", fp
    )
    assert "assigned to user:bob" in ok(
        "alerts", "assign", "--url", daemon.url, "--to", "user:bob", fp
    )
    bad = pudimd("alerts", "assign", "--url", daemon.url, "--to", "user:mallory", fp)
    assert bad.returncode == 1 and "unknown user 'mallory'" in bad.stderr
    listed = json.loads(
        ok("alerts", "list", "--url", daemon.url, "-o", "json", "alertname=OncallAssign")
    )
    assert listed[0]["status"]["assignee"] == "user:bob"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("members: [alice, bob]", "members: [alice, bobby]"),
         "oncall.teams[0].members[1]: unknown user 'bobby' (not in oncall.users): did you mean 'bob'?"),
        (("receiver: alice-pager", "receiver: nowhere"), "nowhere"),
        (("rotation: 1w", "rotation: 10m"), "rotation"),
        (("escalation_policy: page", "escalation_policy: pgae"),
         "alerting.route.escalation_policy: unknown escalation policy 'pgae'"),
        (("{team: dba}", "{team: dbb}"),
         "oncall.escalation_policies[0].levels[1].targets[0].team: unknown team 'dbb'"),
    ],
)  # fmt: skip
def test_check_config_locates_bad_oncall_sections(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = tmp_path / "pudimd.yaml"
    path.write_text(CONFIG.replace(*change))
    out = pudimd("check-config", str(path))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"{path}:") and expected in line, line
