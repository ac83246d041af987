"""An unchanged alertmanager.yml given to pudimd: a misspelt field is an unknown field with
a suggestion, an Alertmanager field pudimd lacks is "not supported by pudimd (yet)", both
at their line and column in the Alertmanager file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pudimd.alerting.amfields import am_fields
from pudimd.config import ConfigError, ConfigSchema, load_config, load_config_text, schema_for
from pudimd.daemon import make_host
from tests.helpers import PUDIMD

RECEIVER = """route:
  receiver: team
receivers:
  - name: team
"""
WEBHOOK = RECEIVER + "    webhook_configs:\n      - url: http://127.0.0.1:9/hook\n"


@pytest.fixture(scope="module")
def schema() -> ConfigSchema:
    """The schema of the installed plugins (webhook, email, slack... notifiers)."""
    return schema_for(make_host(None))


def am_problems(tmp_path: Path, schema: ConfigSchema, am_text: str) -> list[str]:
    """The problems ``check-config --alertmanager-config`` reports, file name cut off."""
    config = tmp_path / "pudimd.yaml"
    config.write_text("targets: []\n")
    am = tmp_path / "alertmanager.yml"
    am.write_text(am_text)
    with pytest.raises(ConfigError) as raised:
        load_config(config, schema, env={}, alertmanager_config=am)
    lines = str(raised.value).splitlines()
    assert all(line.startswith(f"{am}:") for line in lines), lines
    return [line.removeprefix(f"{am}:") for line in lines]


@pytest.mark.parametrize(
    ("am_text", "expected"),
    [
        pytest.param(
            "route:\n  receiver: team\n  group_wiat: 30s\nreceivers: [{name: team}]\n",
            "3:3: route.group_wiat: unknown field 'group_wiat'; did you mean 'group_wait'?",
            id="root",
        ),
        pytest.param(
            "route:\n  receiver: team\n  routes:\n    - receiver: team\n"
            "      matcher: ['severity=\"page\"']\nreceivers: [{name: team}]\n",
            "5:7: route.routes[0].matcher: unknown field 'matcher'; did you mean 'matchers'?",
            id="child",
        ),
        pytest.param(
            "route:\n  receiver: team\n  routes:\n    - routes:\n        - receiver: team\n"
            "          repeat_intervl: 1h\nreceivers: [{name: team}]\n",
            "6:11: route.routes[0].routes[0].repeat_intervl: unknown field 'repeat_intervl'; "
            "did you mean 'repeat_interval'?",
            id="grandchild",
        ),
        pytest.param(
            "route:\n  receiver: team\n  contine: true\nreceivers: [{name: team}]\n",
            "3:3: route.contine: unknown field 'contine'; did you mean 'continue'?",
            id="aliased-field",
        ),
        pytest.param(
            "route:\n  receiver: team\n  zzz: 1\nreceivers: [{name: team}]\n",
            "3:3: route.zzz: unknown field 'zzz'",
            id="nothing-close",
        ),
    ],
)
def test_a_typo_in_a_route_is_an_unknown_field_with_a_suggestion(
    tmp_path: Path, schema: ConfigSchema, am_text: str, expected: str
) -> None:
    assert am_problems(tmp_path, schema, am_text) == [expected]


@pytest.mark.parametrize(
    ("added", "expected"),
    [
        (
            "    emial_configs: []\n",
            "5:5: receivers[0].emial_configs: unknown field 'emial_configs'; "
            "did you mean 'email_configs'?",
        ),
        (
            "    webhook_config: []\n",
            "5:5: receivers[0].webhook_config: unknown field 'webhook_config'; "
            "did you mean 'webhook_configs'?",
        ),
    ],
)
def test_a_typo_in_a_receiver_is_an_unknown_field_with_a_suggestion(
    tmp_path: Path, schema: ConfigSchema, added: str, expected: str
) -> None:
    assert am_problems(tmp_path, schema, RECEIVER + added) == [expected]


@pytest.mark.parametrize(
    ("am_text", "expected"),
    [
        (
            WEBHOOK + "        send_resolve: false\n",
            "7:9: receivers[0].webhook_configs[0].send_resolve: unknown field 'send_resolve'; "
            "did you mean 'send_resolved'?",
        ),
        (
            WEBHOOK + "        http_config:\n          follow_redirect: false\n",
            "8:11: receivers[0].webhook_configs[0].http_config.follow_redirect: "
            "unknown field 'follow_redirect'; did you mean 'follow_redirects'?",
        ),
        (
            WEBHOOK + "        http_config:\n          tls_config: {insecure_skip_verfy: true}\n",
            "8:24: receivers[0].webhook_configs[0].http_config.tls_config.insecure_skip_verfy: "
            "unknown field 'insecure_skip_verfy'; did you mean 'insecure_skip_verify'?",
        ),
        (
            RECEIVER + "    email_configs:\n      - to: ops@example.org\n"
            "        smarthost: 'smtp.example.org:25'\n        from: am@example.org\n"
            "        auth_pasword: secret\n",
            "9:9: receivers[0].email_configs[0].auth_pasword: unknown field 'auth_pasword'; "
            "did you mean 'auth_password'?",
        ),
        (
            RECEIVER + "    slack_configs:\n      - api_url: https://hooks.example.org/x\n"
            "        chanel: '#ops'\n",
            "7:9: receivers[0].slack_configs[0].chanel: unknown field 'chanel'; "
            "did you mean 'channel'?",
        ),
    ],
    ids=["webhook", "http_config", "tls_config", "email", "slack"],
)
def test_a_typo_in_an_integration_config_is_an_unknown_field_with_a_suggestion(
    tmp_path: Path, schema: ConfigSchema, am_text: str, expected: str
) -> None:
    assert am_problems(tmp_path, schema, am_text) == [expected]


@pytest.mark.parametrize(
    ("added", "expected"),
    [
        (
            "recievers: []\n",
            "5:1: recievers: unknown field 'recievers'; did you mean 'receivers'?",
        ),
        (
            "inhibit_rule: []\n",
            "5:1: inhibit_rule: unknown field 'inhibit_rule'; did you mean 'inhibit_rules'?",
        ),
        (
            "global:\n  smtp_helo: mail.example.org\n",
            "6:3: global.smtp_helo: unknown field 'smtp_helo'; did you mean 'smtp_hello'?",
        ),
        (
            "inhibit_rules:\n  - {source_matchers: ['a=\"b\"'], target_matcher: ['a=\"c\"']}\n",
            "6:34: inhibit_rules[0].target_matcher: unknown field 'target_matcher'; "
            "did you mean 'target_matchers'?",
        ),
        (
            "time_intervals:\n  - name: nights\n    time_intervals:\n      - weekday: [monday]\n",
            "8:9: time_intervals[0].time_intervals[0].weekday: unknown field 'weekday'; "
            "did you mean 'weekdays'?",
        ),
    ],
    ids=["top-level", "top-level-plural", "global", "inhibit-rule", "time-interval"],
)
def test_a_typo_in_a_section_is_an_unknown_field_with_a_suggestion(
    tmp_path: Path, schema: ConfigSchema, added: str, expected: str
) -> None:
    assert am_problems(tmp_path, schema, RECEIVER + added) == [expected]


@pytest.mark.parametrize(
    ("am_text", "expected"),
    [
        (
            RECEIVER + "    opsgenie_configs: [{api_key: x}]\n",
            "5:5: receivers[0].opsgenie_configs: 'opsgenie_configs' is not supported by pudimd "
            "(yet)",
        ),
        (
            RECEIVER + "    telegram_configs: [{bot_token: x, chat_id: 1}]\n",
            "5:5: receivers[0].telegram_configs: 'telegram_configs' is not supported by pudimd "
            "(yet)",
        ),
        (
            RECEIVER + "    slack_configs:\n      - api_url: https://hooks.example.org/x\n"
            "        actions: []\n",
            "7:9: receivers[0].slack_configs[0].actions: 'actions' is not supported by pudimd "
            "(yet)",
        ),
        (
            WEBHOOK + "        http_config: {no_proxy: localhost}\n",
            "7:23: receivers[0].webhook_configs[0].http_config.no_proxy: 'no_proxy' is "
            "not supported by pudimd (yet)",
        ),
        (
            RECEIVER + "global:\n  opsgenie_api_key: x\n",
            "6:3: global.opsgenie_api_key: 'opsgenie_api_key' is not supported by pudimd (yet)",
        ),
        (
            RECEIVER + "tracing: {endpoint: 'otel:4317'}\n",
            "5:1: tracing: Alertmanager setting 'tracing' is not supported by pudimd",
        ),
    ],
    ids=["opsgenie", "telegram", "slack-actions", "http_config", "global", "top-level"],
)
def test_an_alertmanager_field_pudimd_lacks_is_not_supported_yet(
    tmp_path: Path, schema: ConfigSchema, am_text: str, expected: str
) -> None:
    assert am_problems(tmp_path, schema, am_text) == [expected]


def test_a_pudimd_setting_in_the_alertmanager_file_says_where_it_belongs(
    tmp_path: Path, schema: ConfigSchema
) -> None:
    assert am_problems(tmp_path, schema, RECEIVER + "rules: []\n") == [
        "5:1: rules: 'rules' is a pudimd setting: set it under alerting: in the pudimd config"
    ]


def test_the_alerting_section_of_the_pudimd_config_tells_typos_the_same_way(
    schema: ConfigSchema,
) -> None:
    text = (
        "alerting:\n  route:\n    receiver: team\n    group_wiat: 1s\n  receivers:\n"
        "    - name: team\n      opsgenie_configs: []\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config_text(text, schema, file="pudimd.yaml", env={})
    assert str(raised.value).splitlines() == [
        "pudimd.yaml:4:5: alerting.route.group_wiat: unknown field 'group_wiat'; "
        "did you mean 'group_wait'?",
        "pudimd.yaml:7:7: alerting.receivers[0].opsgenie_configs: 'opsgenie_configs' is not "
        "supported by pudimd (yet)",
    ]


def test_levels_alertmanager_does_not_have_hold_no_alertmanager_fields() -> None:
    assert "group_wait" in am_fields(["route", "routes", 0, "routes", 1])
    assert "send_resolved" in am_fields(["receivers", 0, "webhook_configs", 0])
    assert "ca_file" in am_fields(["receivers", 0, "slack_configs", 0, "http_config", "tls_config"])
    assert am_fields(["receivers", 0, "http_configs", 0]) == frozenset()  # pudimd's own
    assert am_fields(["rules", 0]) == frozenset()


def test_check_config_prints_one_located_line_per_problem(tmp_path: Path) -> None:
    config = tmp_path / "pudimd.yaml"
    config.write_text("targets: []\n")
    am = tmp_path / "alertmanager.yml"
    am.write_text(
        "route:\n"
        "  receiver: team\n"
        "  group_wiat: 30s\n"
        "receivers:\n"
        "  - name: team\n"
        "    opsgenie_configs: [{api_key: x}]\n"
        "    webhook_configs:\n"
        "      - url: http://127.0.0.1:9/hook\n"
        "        send_resolve: false\n"
    )
    out = subprocess.run(
        [*PUDIMD, "check-config", "--alertmanager-config", str(am), str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert all(re.match(rf"{re.escape(str(am))}:\d+:\d+: \S+: ", line) for line in lines), lines
    assert sorted(lines) == sorted(
        [
            f"{am}:3:3: route.group_wiat: unknown field 'group_wiat'; did you mean 'group_wait'?",
            f"{am}:6:5: receivers[0].opsgenie_configs: 'opsgenie_configs' is not supported by "
            "pudimd (yet)",
            f"{am}:9:9: receivers[0].webhook_configs[0].send_resolve: unknown field "
            "'send_resolve'; did you mean 'send_resolved'?",
        ]
    )
