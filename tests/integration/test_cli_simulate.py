"""``pudimd simulate`` as an operator runs it: a real subprocess on a copy of the shipped
etc/pudimd.yaml and a results file, with its output, notes, JSON form and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import PUDIMD, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# The rules of etc/pudimd.yaml: TargetDown after 2 failed checks (severity warning);
# self-ready-cron depends on self-port; the route sends everything to `nobody`, a receiver
# without integrations.
RESULTS = """config: pudimd.yaml
results:
  - {target: nothing-on-port-9, series: fail x10}          # every 30s
  - {target: self-port, series: ok fail x6 ok}              # every 20s: down 20s-2m20s
  - {target: self-ready-cron, series: fail x4 ok, interval: 1m}   # cron: no interval
acknowledgements:
  - {at: 2m, target: self-ready-cron, by: alice}
"""

# The example's commented-out on-call receiver and route, switched on: warnings (but the
# target that is down on purpose) go to a webhook and to Slack.
SWITCH_ON = [
    ("    # routes:\n", "    routes:\n"),
    (
        "    #   - matchers: ['severity=\"critical\"']\n",
        '      - matchers: [\'severity="warning", expected!="down"\']\n',
    ),
    ("    #     receiver: oncall\n", "        receiver: oncall\n"),
    ("    # - name: oncall\n", "    - name: oncall\n"),
    (
        '    #   webhook_configs: [{url: "http://127.0.0.1:5001/hook"}]\n',
        '      webhook_configs: [{url: "http://127.0.0.1:PORT/hook"}]\n',
    ),
    ("    #   slack_configs: [", "      slack_configs: ["),
]


def pudimd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PUDIMD, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A folder holding a copy of etc/pudimd.yaml and the results file."""
    shutil.copy(ROOT / "etc" / "pudimd.yaml", tmp_path / "pudimd.yaml")
    (tmp_path / "incident.yaml").write_text(RESULTS)
    return tmp_path


def switch_on_oncall(config: Path) -> str:
    """Switch the example's on-call receiver on (its webhook on a closed port); returns
    the path of the Slack secret file it names (absent here)."""
    text = config.read_text()
    for old, new in SWITCH_ON:
        assert text.count(old) == 1, f"etc/pudimd.yaml changed: {old!r} is not there once"
        text = text.replace(old, new.replace("PORT", str(free_port())))
    config.write_text(text)
    return "/etc/pudimd/slack-url"


def test_the_example_as_shipped_sends_nothing_and_says_why(example: Path) -> None:
    out = pudimd("simulate", "--results", example / "incident.yaml", "--tail", "10m")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        "0 notifications in 14m30s of virtual time (2024-01-01T00:00:00Z to "
        "2024-01-01T00:14:30Z); nothing was sent",
        "  nobody: 0 (no integrations; alerts routed here: TargetDown:nothing-on-port-9, "
        "TargetDown:self-port, TargetDown:self-ready-cron)",
    ]
    assert out.stderr == ""


def test_the_example_with_its_oncall_receiver(example: Path) -> None:
    secret = switch_on_oncall(example / "pudimd.yaml")
    out = pudimd(
        "simulate", "--results", example / "incident.yaml", "-c", example / "pudimd.yaml",
        "--tail", "10m",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        # self-port fails twice (40s); group_wait 10s
        "+50s  2024-01-01T00:00:50Z  oncall/slack/0    firing        "
        '{alertname="TargetDown"}  TargetDown:self-port',
        "+50s  2024-01-01T00:00:50Z  oncall/webhook/0  firing        "
        '{alertname="TargetDown"}  TargetDown:self-port',
        # self-ready-cron fired at 1m, held back (depends_on) until self-port is back at
        # 2m20s; alice acknowledged it at 2m; the group's next tick is 3m
        "+3m   2024-01-01T00:03:00Z  oncall/slack/0    acknowledged  "
        '{alertname="TargetDown"}  TargetDown:self-ready-cron',
        "+3m   2024-01-01T00:03:00Z  oncall/webhook/0  acknowledged  "
        '{alertname="TargetDown"}  TargetDown:self-port(resolved), TargetDown:self-ready-cron',
        # Slack does not send resolutions (send_resolved false by default)
        "+4m   2024-01-01T00:04:00Z  oncall/webhook/0  resolved      "
        '{alertname="TargetDown"}  TargetDown:self-ready-cron(resolved)',
        "",
        "5 notifications in 14m30s of virtual time (2024-01-01T00:00:00Z to "
        "2024-01-01T00:14:30Z); nothing was sent",
        "  nobody: 0 (no integrations; alerts routed here: TargetDown:nothing-on-port-9)",
        "  oncall: 5",
    ]
    assert out.stderr == (
        f"note: {example / 'pudimd.yaml'}: secret file {secret!r} cannot be read; nothing is "
        "sent, so it is not needed\n"
    )


def test_json_output_for_scripts(example: Path) -> None:
    switch_on_oncall(example / "pudimd.yaml")
    out = pudimd(
        "simulate", "--results", example / "incident.yaml", "-o", "json",
        "--start", "2026-03-01T12:00:00+01:00", "--tail", "5m",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    document = json.loads(out.stdout)
    assert document["start"] == "2026-03-01T11:00:00Z"
    assert document["end"] == 570.0
    first = document["notifications"][0]
    assert first == {
        "at": 50.0,
        "offset": "+50s",
        "time": "2026-03-01T11:00:50Z",
        "receiver": "oncall",
        "integration": "slack/0",
        "status": "firing",
        "acknowledged": False,
        "group": {"alertname": "TargetDown"},
        "group_key": '{}/{severity="warning",expected!="down"}:{alertname="TargetDown"}',
        "alerts": [
            {
                "alertname": "TargetDown",
                "target": "self-port",
                "status": "firing",
                "labels": {
                    "alertname": "TargetDown",
                    "env": "demo",
                    "probe": "tcp",
                    "severity": "warning",
                    "target": "self-port",
                },
            }
        ],
        "escalation": None,
    }
    assert [(n["offset"], n["integration"], n["acknowledged"]) for n in document["notifications"]][
        2:
    ] == [("+3m", "slack/0", True), ("+3m", "webhook/0", True), ("+4m", "webhook/0", False)]
    assert document["receivers"] == {
        "nobody": {
            "notifications": 0,
            "integrations": 0,
            "unreachable_alerts": ["TargetDown:nothing-on-port-9"],
        },
        "oncall": {"notifications": 5, "integrations": 2, "unreachable_alerts": []},
    }
    assert document["notes"] == [
        f"{example / 'pudimd.yaml'}: secret file '/etc/pudimd/slack-url' cannot be read; "
        "nothing is sent, so it is not needed"
    ]


def test_bad_input_exits_2_with_file_and_line(example: Path) -> None:
    results = example / "bad.yaml"
    results.write_text(
        "config: pudimd.yaml\n"
        "results:\n"
        "  - {target: self-prot, series: fail x3}\n"
        "  - {target: self-ready-cron, series: fail x3}\n"
    )
    out = pudimd("simulate", "--results", results)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.splitlines() == [
        f"{results}:3:14: results[0].target: unknown target 'self-prot'; did you mean 'self-port'?",
        f"{results}:4:5: results[1]: no interval for 'self-ready-cron': set interval here, at "
        "the top of the file or on the target (a target with a cron schedule has none)",
    ]
    config = example / "pudimd.yaml"
    config.write_text(config.read_text().replace("failure_threshold: 2", "failure_threshold: -2"))
    out = pudimd("simulate", "--results", example / "incident.yaml")
    assert out.returncode == 2
    assert out.stderr.startswith(f"{config}:"), out.stderr
    assert "failure_threshold" in out.stderr
    out = pudimd("simulate", "--results", example / "incident.yaml", "--start", "yesterday")
    assert out.returncode == 2
    assert "--start" in out.stderr
