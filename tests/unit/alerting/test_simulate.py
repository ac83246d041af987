"""``pudimd simulate``'s engine: check results replayed through the real rules, routes,
grouping, silences, inhibition, depends_on and escalations on a virtual clock, recording
what would be sent (and sending nothing)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pudimd.alerting.outbox import Outbox
from pudimd.alerting.simulate import START, Scenario, Simulation, load_scenario, simulate
from pudimd.config import ConfigError, ConfigSchema, schema_for
from pudimd.daemon import make_host
from tests.helpers import free_port
from tests.unit.alerting_fixtures import collector

pytestmark = pytest.mark.anyio

# ops gets what no other route takes; team=web goes to web (one group per target); team=dba
# goes to dba and escalates to alice, then bob 5m later; team=batch goes to web too, but not
# from 00:00 to 00:05 (UTC, the first 5 minutes of the simulation).  TargetFlaky (a ticket)
# is inhibited by TargetDown (a page) on the same target.
CONFIG = """
defaults: {interval: 30s}
targets:
  - {name: switch, probe: tcp, target: "10.0.0.1:22", interval: 1m}
  - {name: db, probe: tcp, target: "db:5432", depends_on: [switch]}
  - {name: api, probe: tcp, target: "api:80"}
  - {name: queue, probe: tcp, target: "queue:5672"}
  - {name: cache, probe: tcp, target: "cache:6379"}
  - {name: files, probe: tcp, target: "files:445"}
  - {name: web, probe: tcp, target: "web:80", labels: {team: web}}
  - {name: pg, probe: tcp, target: "pg:5432", labels: {team: dba}}
  - {name: batch, probe: tcp, target: "batch:22", labels: {team: batch}}
alerting:
  rules:
    - name: TargetDown
      failure_threshold: 2
      labels: {severity: page}
    - name: TargetFlaky
      targets: [cache, files]
      failure_threshold: 1
      success_threshold: 3
      labels: {severity: ticket}
  route:
    receiver: ops
    group_by: [alertname]
    group_wait: 30s
    group_interval: 1m
    repeat_interval: 10m
    routes:
      - matchers: ['team="web"']
        receiver: web
        group_by: [alertname, target]
      - matchers: ['team="dba"']
        receiver: dba
        escalation_policy: dba-page
      - matchers: ['team="batch"']
        receiver: web
        mute_time_intervals: [nightly-jobs]
  receivers:
    - name: ops
      webhook_configs: [{url: "OPS_URL"}]
    - name: web
      webhook_configs: [{url: "CLOSED_URL"}]
    - name: dba
      webhook_configs: [{url: "CLOSED_URL"}]
    - name: alice
      webhook_configs: [{url: "CLOSED_URL"}]
    - name: bob
      webhook_configs: [{url: "CLOSED_URL"}]
  time_intervals:
    - name: nightly-jobs
      time_intervals: [{times: [{start_time: "00:00", end_time: "00:05"}]}]
  inhibit_rules:
    - source_matchers: ['severity="page"']
      target_matchers: ['severity="ticket"']
      equal: [target]
oncall:
  users:
    - {name: alice, receiver: alice}
    - {name: bob, receiver: bob}
  escalation_policies:
    - name: dba-page
      levels:
        - targets: [{user: alice}]
          delay: 5m
        - targets: [{user: bob}]
"""


@pytest.fixture(scope="module")
def schema() -> ConfigSchema:
    return schema_for(make_host(None))


def write_config(directory: Path, ops_url: str | None = None) -> Path:
    closed = f"http://127.0.0.1:{free_port()}/hook"
    text = CONFIG.replace("CLOSED_URL", closed).replace("OPS_URL", ops_url or closed)
    path = directory / "pudimd.yaml"
    path.write_text(text)
    return path


def scenario(
    directory: Path, results: str, schema: ConfigSchema, ops_url: str | None = None
) -> Scenario:
    write_config(directory, ops_url)
    path = directory / "incident.yaml"
    path.write_text("config: pudimd.yaml\n" + results)
    return load_scenario(path, schema=schema)


async def run(
    directory: Path, results: str, schema: ConfigSchema, *, tail: float = 3600.0
) -> Simulation:
    return await simulate(scenario(directory, results, schema), tail=tail)


def timeline(outcome: Simulation, receiver: str | None = None) -> list[str]:
    """``offset receiver state alerts [level]`` per notification."""
    out = []
    for sent in outcome.notifications:
        if receiver is not None and sent.receiver != receiver:
            continue
        line = f"{sent.columns()[0]} {sent.receiver} {sent.state} " + ",".join(
            str(alert) for alert in sent.alerts
        )
        if sent.escalation is not None:
            line += f" level {sent.escalation.level}"
        out.append(line)
    return out


async def test_routes_and_grouping_times_on_the_virtual_clock(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    outcome = await run(
        tmp_path,
        """
results:
  - {target: api, series: ok fail x80 ok}          # every 30s: down from 30s to 40m30s
  - {target: queue, start: 3m, series: fail x20 ok} # down from 3m to 13m
  - {target: web, series: fail x4 ok}              # down from 0s to 2m
""",
        schema,
    )
    assert timeline(outcome) == [
        # web's group (its own route, group_by target): group_wait after it fired at 30s
        "+1m web firing TargetDown:web",
        # TargetDown fires at 1m (the second failure); group_wait 30s
        "+1m30s ops firing TargetDown:api",
        "+2m web resolved TargetDown:web(resolved)",
        # queue fires at 3m30s, on the group's group_interval tick (1m30s + 1m + 1m)
        "+3m30s ops firing TargetDown:api,TargetDown:queue",
        # queue resolves at 13m: told at the next tick, which is also 10m after the last
        "+13m30s ops firing TargetDown:api,TargetDown:queue(resolved)",
        "+23m30s ops firing TargetDown:api",  # repeat_interval 10m: unchanged, again
        "+33m30s ops firing TargetDown:api",
        "+40m30s ops resolved TargetDown:api(resolved)",
    ]
    first = outcome.notifications[1]
    assert first.columns() == [
        "+1m30s",
        "2024-01-01T00:01:30Z",
        "ops/webhook/0",
        "firing",
        '{alertname="TargetDown"}',
        "TargetDown:api",
    ]
    assert first.moment == START + 90
    assert first.alerts[0].labels == {
        "alertname": "TargetDown",
        "target": "api",
        "probe": "tcp",
        "severity": "page",
    }
    # nothing can change after the last resolution: the run stops there, not after --tail
    assert outcome.end == 40 * 60 + 30
    assert outcome.counts() == {"ops": 6, "web": 2, "dba": 0, "alice": 0, "bob": 0}
    assert outcome.summary() == [
        "8 notifications in 40m30s of virtual time (2024-01-01T00:00:00Z to "
        "2024-01-01T00:40:30Z); nothing was sent",
        "  ops: 6",
        "  web: 2",
        "  dba: 0",
        "  alice: 0",
        "  bob: 0",
    ]


async def test_a_silence_holds_notifications_back_until_it_ends(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    outcome = await run(
        tmp_path,
        """
results:
  - {target: api, series: ok fail x20 ok}     # firing from 1m to 10m30s
  - {target: queue, series: ok fail x20 ok}   # the same
silences:
  - {matchers: ['target="api"'], start: 0s, end: 5m, comment: deploy}
  - {matchers: ['target="queue"'], end: 1h}
""",
        schema,
    )
    # api: muted at group_wait (1m30s) and at each tick until 5m; the tick after the
    # silence ends tells it.  queue: muted all along, never told, not even its resolution.
    assert timeline(outcome) == [
        "+5m30s ops firing TargetDown:api",
        "+10m30s ops resolved TargetDown:api(resolved)",
    ]


async def test_inhibition_mutes_the_ticket_of_a_target_that_pages(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    outcome = await run(
        tmp_path,
        """
results:
  - {target: cache, series: ok fail x5}   # TargetFlaky at 30s, TargetDown (a page) at 1m
  - {target: files, series: ok fail ok x5}   # TargetFlaky only (one failure)
""",
        schema,
        tail=300,
    )
    assert timeline(outcome) == [
        "+1m ops firing TargetFlaky:files",  # cache's ticket is inhibited by its page
        "+1m30s ops firing TargetDown:cache",
        "+2m ops resolved TargetFlaky:files(resolved)",  # after three good checks
    ]
    assert outcome.end == 3 * 60 + 300  # the last check (files' at 3m), then --tail


async def test_depends_on_holds_a_dependent_back_while_its_parent_is_down(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    outcome = await run(
        tmp_path,
        """
results:
  - {target: switch, series: ok fail x5 ok}   # every minute: down from 1m to 6m
  - {target: db, series: ok fail x14 ok}      # every 30s: down from 30s to 7m30s
""",
        schema,
    )
    assert timeline(outcome) == [
        # db fired at 1m, blocked by switch: only switch (firing at 2m) is told
        "+2m30s ops firing TargetDown:switch",
        # switch is back at 6m: db is no longer blocked
        "+6m30s ops firing TargetDown:db,TargetDown:switch(resolved)",
        "+7m30s ops resolved TargetDown:db(resolved)",
    ]


async def test_a_mute_time_interval_holds_notifications_until_it_ends(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    outcome = await run(
        tmp_path,
        """
results:
  - {target: batch, series: ok fail x20 ok}   # firing from 1m to 10m30s
""",
        schema,
    )
    # group_wait ends at 1m30s, inside nightly-jobs (00:00-00:05): sent when it ends
    assert timeline(outcome) == [
        "+5m web firing TargetDown:batch",
        "+11m web resolved TargetDown:batch(resolved)",  # group_interval ticks from 5m
    ]


ESCALATING = """
results:
  - {target: pg, series: ok fail x30}   # TargetDown from 1m, never resolved
"""


async def test_an_escalation_reaches_level_two_after_its_delay(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    outcome = await run(tmp_path, ESCALATING, schema, tail=300)
    assert timeline(outcome) == [
        "+1m30s dba firing TargetDown:pg",
        "+1m30s alice firing TargetDown:pg level 1",  # at once: the group notified
        "+6m30s bob firing TargetDown:pg level 2",  # level 1's delay (5m) later
        "+11m30s dba firing TargetDown:pg",  # repeat_interval
    ]
    bob = outcome.notifications[2]
    assert bob.escalation is not None
    assert (bob.escalation.policy, bob.escalation.cycle) == ("dba-page", 0)
    assert outcome.end == 15 * 60 + 300


async def test_an_acknowledgement_before_the_delay_stops_the_escalation(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    outcome = await run(
        tmp_path,
        ESCALATING
        + """
acknowledgements:
  - {at: 4m, target: pg, by: alice, comment: looking}
  - {at: 5m, alertname: TargetDown, target: api}   # api is fine: selects nothing
""",
        schema,
        tail=300,
    )
    assert timeline(outcome) == [
        "+1m30s dba firing TargetDown:pg",
        "+1m30s alice firing TargetDown:pg level 1",
        "+4m dba acknowledged TargetDown:pg",  # at once; no level 2, no repeats
    ]
    assert outcome.notes == ["acknowledgements[1] at +5m: no unresolved alert is selected"]


async def test_nothing_is_sent_and_nothing_is_delivered(
    tmp_path: Path, schema: ConfigSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ops posts to a live receiver, the others to a closed port: the receiver hears
    nothing, no delivery is attempted, and the closed port costs nothing."""
    attempts: list[object] = []

    async def attempt(self: Outbox, row: object) -> None:
        attempts.append(row)

    monkeypatch.setattr(Outbox, "_attempt", attempt)
    async with collector() as live:
        results = """
results:
  - {target: api, series: ok fail x10 ok}
  - {target: web, series: ok fail x10 ok}
  - {target: pg, series: ok fail x10 ok}
"""
        started = time.monotonic()
        outcome = await simulate(
            scenario(tmp_path, results, schema, f"http://127.0.0.1:{live.port}/hook")
        )
        elapsed = time.monotonic() - started
    counts = outcome.counts()
    assert counts["ops"] == 2 and counts["web"] == 2 and counts["alice"] == 1
    assert live.payloads == []
    assert attempts == []
    assert elapsed < 5


def problems(tmp_path: Path, results: str, schema: ConfigSchema) -> list[str]:
    write_config(tmp_path)
    path = tmp_path / "incident.yaml"
    path.write_text(results)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path, schema=schema)
    return [line.replace(str(path), "incident.yaml") for line in str(caught.value).splitlines()]


def test_a_malformed_results_file_is_reported_at_its_lines(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    assert problems(
        tmp_path,
        """config: pudimd.yaml
results:
  - {target: api, series: ok, every: 30s}
silences:
  - {matchers: ['target="api"'], start: 5m, end: 1m}
acknowledgements:
  - {at: 1m, by: alice}
""",
        schema,
    ) == [
        "incident.yaml:3:31: results[0].every: unknown field 'every'",
        "incident.yaml:5:5: silences[0]: end must be after start",
        "incident.yaml:7:5: acknowledgements[0]: say which alerts: set alertname, target or labels",
    ]


def test_unknown_names_in_a_results_file_are_reported_at_their_lines(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    assert problems(
        tmp_path,
        """config: pudimd.yaml
results:
  - {target: dbb, series: ok}
  - {target: api, series: ok fial}
silences:
  - {matchers: ['target=~".*"'], end: 5m}
acknowledgements:
  - {at: 1m, alertname: TargetDwn}
""",
        schema,
    ) == [
        "incident.yaml:3:14: results[0].target: unknown target 'dbb'; did you mean 'db'?",
        "incident.yaml:4:27: results[1].series: entry 2 'fial': expected ok, fail, degraded or "
        "_, each with an optional :DURATION and xN (e.g. fail x3, ok:250ms)",
        "incident.yaml:6:5: silences[0]: at least one matcher must not match the empty string "
        "(this silence would mute every alert)",
        "incident.yaml:8:25: acknowledgements[0].alertname: no rule is named 'TargetDwn' "
        "(rules: TargetDown, TargetFlaky)",
    ]


def test_a_config_error_is_reported_in_the_config(tmp_path: Path, schema: ConfigSchema) -> None:
    write_config(tmp_path)
    config = tmp_path / "pudimd.yaml"
    config.write_text(config.read_text().replace("receiver: bob}", "receiver: bobby}"))
    path = tmp_path / "incident.yaml"
    path.write_text("results: []\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path, config, schema=schema)
    assert str(caught.value).startswith(f"{config}:")
    assert "bobby" in str(caught.value)


async def test_a_secret_file_that_cannot_be_read_is_not_needed(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    write_config(tmp_path)
    config = tmp_path / "pudimd.yaml"
    missing = tmp_path / "no-such-secret"
    text = config.read_text().replace(
        "    - name: bob\n      webhook_configs: [{url: ",
        f"    - name: bob\n      webhook_configs: [{{url_file: {missing}}}, {{url: ",
    )
    config.write_text(text)
    path = tmp_path / "incident.yaml"
    path.write_text(ESCALATING)
    loaded = load_scenario(path, config, schema=schema)
    assert loaded.notes == [
        f"{config}: secret file {str(missing)!r} cannot be read; nothing is sent, so it is "
        "not needed"
    ]
    outcome = await simulate(loaded, tail=300)
    assert [s.integration for s in outcome.notifications if s.receiver == "bob"] == [
        "webhook/0",
        "webhook/1",
    ]
    # the real loader still refuses it (check-config, the daemon)
    from pudimd.config import load_config

    with pytest.raises(ConfigError, match="cannot read secret file"):
        load_config(config, schema)


def recorded_rows(first: float) -> Iterator[dict[str, object]]:
    """Rows as `sqlite3 -json` exports the results table: api down for 10 checks."""
    for n in range(12):
        yield {
            "id": n + 1,
            "target": "api",
            "probe": "tcp",
            "ts": first + 30 * n,
            "success": int(n == 0 or n == 11),
            "duration": 0.01,
            "status": None,
            "message": "" if n in (0, 11) else "connection refused",
            "phases": None,
            "metrics": '{"attempts": 1}',
        }
    yield {"target": "gone", "probe": "tcp", "ts": first, "success": 0, "duration": 0.0}


async def test_recorded_results_replay_at_their_own_times(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    write_config(tmp_path)
    first = 1_717_236_000.25  # 2024-06-01T10:00:00.25Z
    (tmp_path / "night.json").write_text(json.dumps(list(recorded_rows(first))))
    path = tmp_path / "incident.yaml"
    path.write_text("config: pudimd.yaml\nrecorded: night.json\n")
    loaded = load_scenario(path, schema=schema)
    assert loaded.start == 1_717_236_000.0  # the second of the first result
    assert loaded.notes == [
        "recorded: 1 result(s) of 'gone' left out: no enabled target of that name"
    ]
    outcome = await simulate(loaded)
    # the checks come at .25s: TargetDown fires at 1m0.25s, group_wait 30s
    assert [s.columns()[:4] for s in outcome.notifications] == [
        ["+1m30s250ms", "2024-06-01T10:01:30.250Z", "ops/webhook/0", "firing"],
        ["+5m30s250ms", "2024-06-01T10:05:30.250Z", "ops/webhook/0", "resolved"],
    ]
    # another start moves the times; results before it are left out
    later = await simulate(loaded, start=first + 60)
    assert "recorded: 2 result(s) before the start left out" in later.notes
    assert [s.columns()[:2] for s in later.notifications] == [
        ["+1m", "2024-06-01T10:02:00.250Z"],
        ["+5m", "2024-06-01T10:06:00.250Z"],  # the fourth group_interval tick
    ]


async def test_rules_are_evaluated_between_checks(tmp_path: Path, schema: ConfigSchema) -> None:
    """A rule's ``for`` runs out between two checks: the evaluation every second (as in
    the daemon) fires it then, not at the next check."""
    config = tmp_path / "pudimd.yaml"
    config.write_text(
        f"""
targets: [{{name: api, probe: tcp, target: "api:80", interval: 30s}}]
alerting:
  rules: [{{name: TargetDown, failure_threshold: 2, for: 45s}}]
  route: {{receiver: ops, group_wait: 10s}}
  receivers: [{{name: ops, webhook_configs: [{{url: "http://127.0.0.1:{free_port()}/"}}]}}]
"""
    )
    path = tmp_path / "incident.yaml"
    path.write_text("results: [{target: api, series: ok fail x10}]\n")
    outcome = await simulate(load_scenario(path, config, schema=schema), tail=0)
    # pending at 1m (the second failure), firing at 1m45s, group_wait 10s
    assert timeline(outcome) == ["+1m55s ops firing TargetDown:api"]
    path.write_text("evaluation_interval: 1m\nresults: [{target: api, series: ok fail x10}]\n")
    outcome = await simulate(load_scenario(path, config, schema=schema), tail=0)
    assert timeline(outcome) == ["+2m10s ops firing TargetDown:api"]  # evaluated at 2m


def test_bad_recorded_rows_are_reported_with_their_lines(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    write_config(tmp_path)
    lines = [
        '{"target": "api", "ts": 1717236000, "success": 1}',
        '{"target": "api", "ts": "soon", "success": 1}',
        "{not json",
    ]
    (tmp_path / "night.jsonl").write_text("\n".join(lines) + "\n")
    path = tmp_path / "incident.yaml"
    path.write_text("config: pudimd.yaml\nrecorded: [night.jsonl, missing.json]\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path, schema=schema)
    rows = tmp_path / "night.jsonl"
    assert str(caught.value).splitlines() == [
        f"{path}:2:25: recorded[1]: cannot read {str(tmp_path / 'missing.json')!r}: No such "
        "file or directory",
        f"{rows}:2: invalid row: ts: Input should be a valid number, unable to parse string "
        "as a number",
        f"{rows}:3: invalid row: not JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
    ]


async def test_a_parent_without_results_cannot_answer_and_says_so(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    outcome = await run(tmp_path, "results: [{target: db, series: ok fail x10 ok}]\n", schema)
    # db fires at 1m and asks for switch's check: nobody answers, so its alert is held for
    # 30s (RECHECK_WAIT), as when a parent's check cannot run; it ends as group_wait does
    assert timeline(outcome) == [
        "+1m30s ops firing TargetDown:db",
        "+5m30s ops resolved TargetDown:db(resolved)",
    ]
    assert outcome.notes == [
        "switch had no result yet when a target depending on it asked for its check at +1m: "
        "the dependent's alert was held (up to 30s) as if switch's check could not run"
    ]
