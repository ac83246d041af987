"""The on-call commands (``pudimd alerts``, ``silences``, ``notify test``, ``route test``) as
an operator runs them: real subprocesses against one real daemon, with real exit codes,
what they print, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import re
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from pudimd.alerting.notification import parse_time
from tests.helpers import PUDIMD, free_port
from tests.integration.daemon_harness import DaemonProcess, running_daemon
from tests.unit.notifiers.notifier_helpers import Recorder, recording_server

pytestmark = pytest.mark.integration

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Routing: critical alerts reach `pager` and go on (continue) to `chat`; critical db
# alerts reach the nested `dba` instead of `pager`; warnings reach `chat`; the rest
# `default`.  None of those has an integration: only `notify test` sends anything.
CONFIG = """alerting:
  route:
    receiver: default
    group_by: [alertname]
    group_wait: 0s
    group_interval: 1s
    routes:
      - matchers: ['severity="critical"']
        receiver: pager
        continue: true
        routes:
          - matchers: ['team="db"']
            receiver: dba
      - matchers: ['severity=~"critical|warning"']
        receiver: chat
      - matchers: ['alertname="CliOncall"']
        receiver: hook
        group_interval: 50ms
  receivers:
    - name: default
    - name: pager
    - name: dba
    - name: chat
    - name: hook
      webhook_configs: [{{url: "{hook}/hook"}}]
    - name: broken
      webhook_configs: [{{url: "http://127.0.0.1:{closed}/hook"}}]
"""


def pudimd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PUDIMD, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def ok(*args: str) -> str:
    """What ``pudimd args...`` prints; it must exit 0 without writing to stderr."""
    out = pudimd(*args)
    assert out.returncode == 0, f"pudimd {' '.join(args)}: {out.stderr}{out.stdout}"
    assert out.stderr == "", out.stderr
    return out.stdout


def error_line(out: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one line a failed command wrote to stderr (exit ``code``, no traceback)."""
    assert out.returncode == code, f"exit {out.returncode}: {out.stderr}{out.stdout}"
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def usage_error(out: subprocess.CompletedProcess[str]) -> str:
    """click's usage error (exit 2): its ``Error: ...`` line."""
    assert out.returncode == 2, f"exit {out.returncode}: {out.stderr}{out.stdout}"
    assert "Traceback" not in out.stderr, out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    return line


def table(text: str) -> list[dict[str, str]]:
    """The CLI's table output as rows keyed by the header (a column starts where its
    header does; cells may be empty)."""
    lines = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", lines[0])]
    names = [lines[0][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {
            name: line[a:b].strip()
            for name, a, b in zip(names, starts, [*starts[1:], None], strict=True)
        }
        for line in lines[1:]
    ]


def moment(text: str) -> datetime:
    """A table's ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def when(text: str) -> datetime:
    value = parse_time(text)
    assert value is not None, text
    return value


def near(value: datetime, expected: datetime, within: float = 30.0) -> bool:
    return abs((value - expected).total_seconds()) <= within


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """The webhook receiver of `hook`: an aiohttp server on loopback in its own thread (it
    outlives every test's event loop, as the daemon does)."""
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(recording_server()) as server,
    ):
        yield server


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, recorder: Recorder) -> Path:
    path = tmp_path_factory.mktemp("cli-alerting") / "pudimd.yaml"
    path.write_text(CONFIG.format(hook=recorder.url, closed=free_port()))
    return path


@pytest.fixture(scope="module")
def daemon(config: Path) -> Iterator[DaemonProcess]:
    yield from running_daemon(config, config.parent / "state", token_env=True)


@pytest.fixture(scope="module")
def url(daemon: DaemonProcess) -> str:
    return daemon.url


def api_alerts(daemon: DaemonProcess, alertname: str) -> list[dict[str, Any]]:
    status, text = daemon.get(f"/api/v2/alerts?filter=alertname%3D{alertname}")
    assert status == 200, text
    found: list[dict[str, Any]] = json.loads(text)
    return found


# -- --help -------------------------------------------------------------------------------

COMMANDS = [
    ["alerts"],
    ["alerts", "list"],
    ["alerts", "add"],
    ["alerts", "ack"],
    ["alerts", "unack"],
    ["alerts", "assign"],
    ["alerts", "comment"],
    ["alerts", "resolve"],
    ["alerts", "snooze"],
    ["alerts", "history"],
    ["silences"],
    ["silences", "add"],
    ["silences", "list"],
    ["silences", "expire"],
    ["notify"],
    ["notify", "test"],
    ["route"],
    ["route", "test"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_alerting_command_has_help(command: list[str]) -> None:
    shown = ok(*command, "--help")
    assert shown.startswith("Usage: ")
    assert " ".join(command) in shown.splitlines()[0]


# -- alerts -------------------------------------------------------------------------------


def test_alerts_add_then_list_shows_a_table(url: str) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    assert ok(
        "alerts",
        "add",
        "--url",
        url,
        "CliTableDisk",
        "severity=critical",
        "team=db",
        "--annotation",
        "summary=disk full",
    ) == ("alert CliTableDisk posted\n")
    ok("alerts", "add", "--url", url, "CliTableSlow", "severity=warning")
    rows = table(ok("alerts", "list", "--url", url, "alertname=~CliTable.*"))
    assert all(re.fullmatch("[0-9a-f]{16}", row["FINGERPRINT"]) for row in rows)
    shown = [{k: v for k, v in row.items() if k not in ("STARTS AT", "FINGERPRINT")} for row in rows]
    assert shown == [
        {
            "ALERTNAME": "CliTableDisk",
            "STATE": "active",
            "ACK": "",
            "LABELS": "severity=critical,team=db",
            "SUMMARY": "disk full",
        },
        {
            "ALERTNAME": "CliTableSlow",
            "STATE": "active",
            "ACK": "",
            "LABELS": "severity=warning",
            "SUMMARY": "",
        },
    ]
    for row in rows:
        assert near(moment(row["STARTS AT"]), before), row


def test_alerts_list_json_has_what_was_posted_and_its_receivers(url: str) -> None:
    posted = datetime.now(UTC)
    ok(
        "alerts",
        "add",
        "--url",
        url,
        "CliJson",
        "severity=critical",
        "team=db",
        "--annotation=summary=s",
        "--annotation=runbook=http://wiki/x=y",
        "--generator-url=http://gen.example/x",
        "--duration=10m",
    )
    (alert,) = json.loads(ok("alerts", "list", "--url", url, "-o", "json", "alertname=CliJson"))
    assert alert["labels"] == {"alertname": "CliJson", "severity": "critical", "team": "db"}
    assert alert["annotations"] == {"summary": "s", "runbook": "http://wiki/x=y"}
    assert alert["generatorURL"] == "http://gen.example/x"
    assert alert["status"] == {
        "state": "active",
        "silencedBy": [],
        "inhibitedBy": [],
        "mutedBy": [],
    }
    # the nested db route, then `chat` (the critical route has continue: true)
    assert [r["name"] for r in alert["receivers"]] == ["dba", "chat"]
    assert near(when(alert["startsAt"]), posted)
    assert near(when(alert["endsAt"]), posted + timedelta(minutes=10))


def test_alerts_list_filters_by_matchers(url: str) -> None:
    for name, severity in [("CliFilterA", "warning"), ("CliFilterB", "info")]:
        ok("alerts", "add", "--url", url, name, f"severity={severity}", "group=cli-filter")

    def names(*matchers: str) -> list[str]:
        found = json.loads(ok("alerts", "list", "--url", url, "-o", "json", *matchers))
        return sorted(a["labels"]["alertname"] for a in found)

    assert names("group=cli-filter") == ["CliFilterA", "CliFilterB"]
    assert names("group=cli-filter", "severity=warning") == ["CliFilterA"]
    assert names("group=cli-filter", "severity!=warning") == ["CliFilterB"]
    assert names('{group="cli-filter", alertname=~".*B"}') == ["CliFilterB"]
    assert names("group=cli-filter", "severity=critical") == []
    assert table(ok("alerts", "list", "--url", url, "group=nothing-has-this")) == []


def test_alerts_add_refuses_bad_labels(url: str) -> None:
    assert "expected NAME=VALUE, got 'severity'" in usage_error(
        pudimd("alerts", "add", "--url", url, "CliBad", "severity")
    )
    assert "--annotation: expected NAME=VALUE, got 'summary'" in usage_error(
        pudimd("alerts", "add", "--url", url, "CliBad", "--annotation", "summary")
    )
    assert "ALERTNAME: must not be empty" in usage_error(pudimd("alerts", "add", "--url", url, ""))
    assert "for --duration: invalid duration 'soon'" in usage_error(
        pudimd("alerts", "add", "--url", url, "CliBad", "--duration", "soon")
    )
    # the daemon's own reason, unquoted, in one line
    line = error_line(pudimd("alerts", "add", "--url", url, "CliBad", "bad-name=1"))
    assert line == (
        "pudimd: POST /api/v2/alerts: HTTP 400: alert 0: invalid label name 'bad-name' in labels"
    )
    line = error_line(pudimd("alerts", "list", "--url", url, "alertname=~("))
    assert line.startswith("pudimd: GET /api/v2/alerts?") and "HTTP 400: bad filter: " in line
    assert json.loads(ok("alerts", "list", "--url", url, "-o", "json", "alertname=CliBad")) == []


# -- silences -----------------------------------------------------------------------------


def test_silence_suppresses_until_expired(url: str, daemon: DaemonProcess) -> None:
    ok("alerts", "add", "--url", url, "CliSilenced", "team=db", "--annotation=summary=muted")
    ok("alerts", "add", "--url", url, "CliSilenced", "team=web")
    added = datetime.now(UTC)
    out = ok(
        "silences",
        "add",
        "--url",
        url,
        "alertname=CliSilenced",
        'team=~"d.*"',
        "--comment",
        "disk swap",
        "--author",
        "alice",
        "--duration",
        "30m",
    )
    silence_id = out.strip()
    assert UUID.fullmatch(silence_id), out

    (row,) = [r for r in table(ok("silences", "list", "--url", url)) if r["ID"] == silence_id]
    assert {k: v for k, v in row.items() if k != "ENDS AT"} == {
        "ID": silence_id,
        "MATCHERS": 'alertname="CliSilenced",team=~"d.*"',
        "STATE": "active",
        "CREATED BY": "alice",
        "COMMENT": "disk swap",
    }
    assert near(moment(row["ENDS AT"]), added + timedelta(minutes=30))
    (shown,) = [
        s
        for s in json.loads(ok("silences", "list", "--url", url, "-o", "json"))
        if s["id"] == silence_id
    ]
    assert shown["matchers"] == [
        {"name": "alertname", "value": "CliSilenced", "isRegex": False, "isEqual": True},
        {"name": "team", "value": "d.*", "isRegex": True, "isEqual": True},
    ]
    assert shown["expireOnResolve"] is False
    length = when(shown["endsAt"]) - when(shown["startsAt"])
    assert abs(length.total_seconds() - 1800) < 1, length

    # muted: hidden by default, shown as suppressed with --all, silencedBy in the API
    listed = table(ok("alerts", "list", "--url", url, "alertname=CliSilenced"))
    assert [(r["LABELS"], r["STATE"]) for r in listed] == [("team=web", "active")]
    listed = table(ok("alerts", "list", "--url", url, "--all", "alertname=CliSilenced"))
    assert sorted((r["LABELS"], r["STATE"]) for r in listed) == [
        ("team=db", "suppressed"),
        ("team=web", "active"),
    ]
    states = {
        a["labels"]["team"]: (a["status"]["state"], a["status"]["silencedBy"])
        for a in api_alerts(daemon, "CliSilenced")
    }
    assert states == {"db": ("suppressed", [silence_id]), "web": ("active", [])}

    assert ok("silences", "expire", "--url", url, silence_id) == f"silence {silence_id} expired\n"
    assert silence_id not in ok("silences", "list", "--url", url)
    (row,) = [
        r for r in table(ok("silences", "list", "--url", url, "--expired")) if r["ID"] == silence_id
    ]
    assert row["STATE"] == "expired"
    listed = table(ok("alerts", "list", "--url", url, "alertname=CliSilenced"))
    assert sorted((r["LABELS"], r["STATE"]) for r in listed) == [
        ("team=db", "active"),
        ("team=web", "active"),
    ]
    states = {
        a["labels"]["team"]: (a["status"]["state"], a["status"]["silencedBy"])
        for a in api_alerts(daemon, "CliSilenced")
    }
    assert states == {"db": ("active", []), "web": ("active", [])}


def test_silence_defaults_and_list_filter(url: str) -> None:
    env = {**os.environ, "LOGNAME": "cli-tester", "USER": "cli-tester"}
    out = pudimd(
        "silences",
        "add",
        "--url",
        url,
        "alertname=CliDefaults",
        "--comment=defaults",
        "--expire-on-resolve",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    first = out.stdout.strip()
    second = ok("silences", "add", "--url", url, "alertname=CliOther", "--comment=other").strip()
    (shown,) = json.loads(
        ok("silences", "list", "--url", url, "-o", "json", "alertname=CliDefaults")
    )
    assert shown["id"] == first and shown["id"] != second
    assert shown["createdBy"] == "cli-tester"
    assert shown["comment"] == "defaults"
    assert shown["expireOnResolve"] is True
    length = when(shown["endsAt"]) - when(shown["startsAt"])
    assert abs(length.total_seconds() - 3600) < 1, length  # --duration defaults to 1h
    ok("silences", "expire", "--url", url, first, second)


def test_silences_add_refuses_what_would_mute_everything_or_nothing(url: str) -> None:
    before = json.loads(ok("silences", "list", "--url", url, "-o", "json", "--expired"))
    assert "Missing argument 'MATCHERS...'" in usage_error(
        pudimd("silences", "add", "--url", url, "--comment", "all")
    )
    assert "Missing option '--comment'" in usage_error(
        pudimd("silences", "add", "--url", url, "alertname=X")
    )
    assert "invalid matcher 'alertname'" in usage_error(
        pudimd("silences", "add", "--url", url, "--comment", "c", "alertname")
    )
    assert "for --duration: invalid duration '-1h': must not be negative" in usage_error(
        pudimd("silences", "add", "--url", url, "--comment", "c", "alertname=X", "--duration=-1h")
    )
    line = error_line(pudimd("silences", "add", "--url", url, "--comment", "all", "alertname=~.*"))
    assert line.startswith("pudimd: POST /api/v2/silences: HTTP 400: silence invalid: ")
    assert "this silence would mute every alert" in line and '"' not in line
    after = json.loads(ok("silences", "list", "--url", url, "-o", "json", "--expired"))
    assert after == before


def test_silences_expire_an_unknown_id_fails(url: str) -> None:
    line = error_line(pudimd("silences", "expire", "--url", url, "no-such-silence"))
    assert line == "pudimd: DELETE /api/v2/silence/no-such-silence: HTTP 404: silence not found"


# -- notify test --------------------------------------------------------------------------


def test_notify_test_sends_a_v4_webhook_payload(url: str, recorder: Recorder) -> None:
    before = len([r for r in recorder.requests if r.path == "/hook"])
    assert ok("notify", "test", "--url", url, "hook") == "hook/webhook/0: delivered\n"
    # the command waits for the delivery: the request is already recorded
    hooks = [r for r in recorder.requests if r.path == "/hook"]
    assert len(hooks) == before + 1
    request = hooks[-1]
    assert request.method == "POST"
    assert request.headers["Content-Type"].startswith("application/json")
    payload = request.json()
    assert payload["version"] == "4"
    assert payload["status"] == "firing"
    assert payload["receiver"] == "hook"
    assert isinstance(payload["groupKey"], str) and payload["groupKey"]
    assert payload["truncatedAlerts"] == 0
    assert payload["groupLabels"] == {"alertname": "PudimdTest"}
    assert payload["commonLabels"]["alertname"] == "PudimdTest"
    assert isinstance(payload["commonAnnotations"], dict)
    assert isinstance(payload["externalURL"], str)
    (alert,) = payload["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == payload["commonLabels"]
    assert alert["annotations"]["summary"] == "Test notification from pudimd"
    assert near(when(alert["startsAt"]), datetime.now(UTC))
    assert parse_time(alert["endsAt"]) is None  # firing: Go's zero time
    assert isinstance(alert["generatorURL"], str)
    assert re.fullmatch("[0-9a-f]{16}", alert["fingerprint"])


def test_notify_test_of_an_unknown_receiver_fails_clearly(url: str) -> None:
    out = pudimd("notify", "test", "--url", url, "nope")
    assert error_line(out) == (
        "pudimd: POST /api/v1/notify/test?receiver=nope: HTTP 404: unknown receiver 'nope' "
        "(receivers: default, pager, dba, chat, hook, broken)"
    )
    assert out.stdout == ""


def test_notify_test_of_a_failing_receiver_exits_1(url: str) -> None:
    out = pudimd("notify", "test", "--url", url, "broken")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith("broken/webhook/0: retrying (")
    assert "Connect" in out.stdout and "Traceback" not in out.stderr


# -- route test (offline) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (
            ["alertname=A", "severity=critical", "team=db"],
            [
                'dba  group {}/{severity="critical"}/{team="db"}:{alertname="A"}',
                'chat  group {}/{severity=~"critical|warning"}:{alertname="A"}',
            ],
        ),
        (
            ["alertname=A", "severity=critical", "team=web"],
            [
                'pager  group {}/{severity="critical"}:{alertname="A"}',
                'chat  group {}/{severity=~"critical|warning"}:{alertname="A"}',
            ],
        ),
        (
            ["alertname=B", "severity=warning", "team=db"],
            ['chat  group {}/{severity=~"critical|warning"}:{alertname="B"}'],
        ),
        (["alertname=C", "severity=info"], ['default  group {}:{alertname="C"}']),
    ],
    ids=["nested-and-continue", "continue", "second-route", "root"],
)
def test_route_test_prints_the_receivers_reached(
    config: Path, labels: list[str], expected: list[str]
) -> None:
    assert ok("route", "test", "-c", str(config), *labels).splitlines() == expected


def test_route_test_refuses_bad_labels(config: Path) -> None:
    for bad in ["severity", "=critical"]:
        line = usage_error(pudimd("route", "test", "-c", str(config), "alertname=A", bad))
        assert line == f"Error: Invalid value for LABELS: expected NAME=VALUE, got {bad!r}"
    assert "Missing argument 'LABELS...'" in usage_error(pudimd("route", "test", "-c", str(config)))


def test_route_test_reports_config_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("alerting:\n  route: {receiver: nope}\n  receivers: [{name: a}]\n")
    assert error_line(pudimd("route", "test", "-c", str(bad), "a=b")) == (
        f"pudimd: {bad}:2:21: alerting.route.receiver: unknown receiver 'nope' (receivers: a)"
    )
    bare = tmp_path / "bare.yaml"
    bare.write_text("targets: []\n")
    assert error_line(pudimd("route", "test", "-c", str(bare), "a=b")) == (
        f"pudimd: {bare}: no alerting.route: alerts are kept but notify no receiver"
    )


def test_route_test_reads_an_alertmanager_config(tmp_path: Path) -> None:
    (tmp_path / "alertmanager.yml").write_text(
        "route:\n"
        "  receiver: team\n"
        "  group_by: [cluster]\n"
        "  routes:\n"
        '    - {matchers: [env="prod"], receiver: prod}\n'
        "receivers: [{name: team}, {name: prod}]\n"
    )
    path = tmp_path / "pudimd.yaml"
    path.write_text("alertmanager_config_file: alertmanager.yml\n")
    assert ok("route", "test", "-c", str(path), "env=prod", "cluster=eu").splitlines() == [
        'prod  group {}/{env="prod"}:{cluster="eu"}'
    ]
    # the same file given on the command line to a config without alerting
    bare = tmp_path / "bare.yaml"
    bare.write_text("targets: []\n")
    routed = ok(
        "route",
        "test",
        "-c",
        str(bare),
        "--alertmanager-config",
        str(tmp_path / "alertmanager.yml"),
        "env=dev",
        "cluster=us",
    )
    assert routed.splitlines() == ['team  group {}:{cluster="us"}']


# -- finding the daemon -------------------------------------------------------------------


def test_the_daemon_is_found_from_the_configs_listen_address(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    ok("alerts", "add", "--url", daemon.url, "CliFound")
    client = tmp_path / "client.yaml"
    client.write_text(f'server:\n  listen: "0.0.0.0:{daemon.port}"\n')  # wildcard: loopback
    (row,) = table(ok("alerts", "list", "-c", str(client), "alertname=CliFound"))
    assert row["ALERTNAME"] == "CliFound"


UNREACHABLE = [
    ["alerts", "list"],
    ["alerts", "add", "CliNowhere", "a=b"],
    ["silences", "add", "--comment", "c", "alertname=X"],
    ["silences", "list"],
    ["silences", "expire", "some-id"],
    ["notify", "test", "hook"],
]


@pytest.mark.parametrize("command", UNREACHABLE, ids=lambda c: " ".join(c[:2]))
def test_an_unreachable_daemon_is_one_line(command: list[str]) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    out = pudimd(*command, "--url", base)
    assert error_line(out) == f"pudimd: cannot reach the daemon at {base}: Connection refused"
    assert out.stdout == ""


def test_a_bad_url_is_one_line() -> None:
    line = error_line(pudimd("alerts", "list", "--url", "localhost:9797"))
    assert line == "pudimd: --url: expected http://HOST:PORT (or https://), got 'localhost:9797'"


@contextmanager
def not_http() -> Iterator[str]:
    """A TCP server that answers every connection with an SSH banner, not HTTP."""

    class Banner(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            self.request.recv(65536)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Banner) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join()


def test_something_else_than_pudimd_is_one_line(recorder: Recorder) -> None:
    # an HTTP server answering 200 "ok" to everything
    line = error_line(pudimd("alerts", "list", "--url", recorder.url))
    assert line == (
        "pudimd: GET /api/v2/alerts?silenced=false&inhibited=false: "
        f"the answer from {recorder.url} is not JSON (is it pudimd?)"
    )
    # not HTTP at all
    with not_http() as base:
        line = error_line(pudimd("silences", "list", "--url", base))
    assert (
        line == f"pudimd: GET /api/v2/silences: the answer from {base} is not HTTP (is it pudimd?)"
    )


def test_notify_test_of_a_receiver_without_integrations_fails_at_once(url: str) -> None:
    started = time.monotonic()
    assert error_line(pudimd("notify", "test", "--url", url, "default")) == (
        "pudimd: receiver 'default' has no integrations"
    )
    assert time.monotonic() - started < 10


# -- on-call actions ----------------------------------------------------------------------


def test_ack_snooze_comment_resolve_and_the_history(url: str, recorder: Recorder) -> None:
    ok("alerts", "add", "--url", url, "CliOncall", "team=web", "--annotation=summary=5xx")
    [row] = table(ok("alerts", "list", "--url", url, "alertname=CliOncall"))
    fp = row["FINGERPRINT"]
    assert ok("alerts", "ack", "--url", url, "--as", "alice", "--for", "1h", fp).startswith(
        f"{fp} CliOncall: firing, acknowledged by alice until "
    )
    [row] = table(ok("alerts", "list", "--url", url, "alertname=CliOncall"))
    assert row["ACK"] == "alice"
    assert ok("alerts", "unack", "--url", url, "--as", "alice", fp) == f"{fp} CliOncall: firing\n"
    # snooze needs an end; a bad fingerprint and an unknown one are clear errors
    assert "snooze needs --for or --until" in usage_error(
        pudimd("alerts", "snooze", "--url", url, fp)
    )
    assert "is not a fingerprint" in usage_error(pudimd("alerts", "ack", "--url", url, "nope"))
    unknown = error_line(pudimd("alerts", "ack", "--url", url, "00000000000000ff"))
    assert "no alert with fingerprint '00000000000000ff'" in unknown
    assert "no users or teams are configured" in error_line(
        pudimd("alerts", "assign", "--url", url, "--to", "user:alice", fp)
    )
    ok("alerts", "snooze", "--url", url, "--as", "bob", "--for", "30m", "--comment", "deploying", fp)
    ok("alerts", "comment", "--url", url, "--as", "bob", fp, "rolled back")
    assert ok("alerts", "resolve", "--url", url, "--as", "bob", fp) == f"{fp} CliOncall: resolved\n"
    assert "is resolved" in error_line(pudimd("alerts", "ack", "--url", url, fp))
    history = json.loads(ok("alerts", "history", "--url", url, "-o", "json", fp))
    assert [(e["kind"], e["actor"], e["interface"]) for e in history["events"]] == [
        ("fired", None, None),
        ("acknowledged", "alice", "cli"),
        ("unacknowledged", "alice", "cli"),
        ("snoozed", "bob", "cli"),
        ("commented", "bob", "cli"),
        ("resolved", "bob", "cli"),
    ]
    # the default route sends CliOncall to hook, the recording webhook: fired, acknowledged,
    # unacknowledged, snoozed (an acknowledgement too), resolved
    sent = [n for n in history["notifications"] if n["receiver"] == "hook"]
    assert [(n["status"], n["acknowledged"]) for n in sent] == [
        ("firing", False),
        ("firing", True),
        ("firing", False),
        ("firing", True),
        ("resolved", False),
    ]
    assert all(n["state"] == "delivered" and n["attempts"] for n in sent)
    rows = table(ok("alerts", "history", "--url", url, fp))
    assert [r["EVENT"] for r in rows if not r["EVENT"].startswith(("notified", "attempt"))] == [
        "fired", "acknowledged", "unacknowledged", "snoozed", "commented", "resolved"
    ]  # fmt: skip
    assert "comment=deploying" in next(r for r in rows if r["EVENT"] == "snoozed")["DETAIL"]

