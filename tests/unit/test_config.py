from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pudimd.config import ConfigError, ConfigSchema, load_config, load_config_text, schema_for
from pudimd.config.schema import json_schema, reference_markdown
from pudimd.plugins import PluginHost
from tests.testplugins import BrokenPlugin, EchoPlugin


@pytest.fixture
def schema() -> ConfigSchema:
    host = PluginHost()
    host.register(EchoPlugin(), "echo")
    host.register(BrokenPlugin(), "broken")
    return schema_for(host)


def problems(text: str, schema: ConfigSchema, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, schema, file="pudimd.yaml", env=env or {})
    lines = str(info.value).splitlines()
    assert all("Traceback" not in line for line in lines)
    return lines


def test_valid_config_loads_with_defaults_applied(schema: ConfigSchema) -> None:
    config = load_config_text(
        """
defaults:
  interval: 10s
  timeout: 2s
  labels: {env: prod, team: a}
  echo: {delay: 0.5}
targets:
  - name: one
    probe: echo
    target: x
    labels: {team: b}
  - name: two
    probe: echo
    target: y
    interval: 1s
    echo: {succeed: false}
  - name: three
    probe: echo
    target: z
    cron: "*/5 * * * *"
    timezone: Europe/Lisbon
""",
        schema,
        env={},
    )
    one, two, three = config.targets
    assert one.interval == timedelta(seconds=10)
    assert one.timeout == timedelta(seconds=2)
    assert one.labels == {"env": "prod", "team": "b"}
    assert one.settings.delay == 0.5
    assert two.timeout == timedelta(seconds=1), "a defaulted timeout is capped at the interval"
    assert two.settings.succeed is False and two.settings.delay == 0.5
    assert three.interval is None and three.cron == "*/5 * * * *"


def test_malformed_yaml_names_line_and_column(schema: ConfigSchema) -> None:
    (line,) = problems("targets:\n  - name: a\n    probe: [echo\n", schema)
    assert line.startswith("pudimd.yaml:")
    assert "invalid YAML" in line
    assert line.split(":")[1].isdigit()


def test_unknown_probe_type_lists_installed_ones(schema: ConfigSchema) -> None:
    (line,) = problems("targets:\n  - name: a\n    probe: htp\n    target: x\n", schema)
    assert (
        line
        == "pudimd.yaml:3:12: targets[0].probe: unknown probe type 'htp' (installed: broken, echo)"
    )


def test_unknown_field_suggests_the_close_one(schema: ConfigSchema) -> None:
    (line,) = problems(
        "targets:\n  - name: a\n    probe: echo\n    target: x\n    intervl: 5s\n", schema
    )
    assert (
        line
        == "pudimd.yaml:5:5: targets[0].intervl: unknown field 'intervl'; did you mean 'interval'?"
    )


def test_mistyped_plugin_setting_is_located_in_its_block(schema: ConfigSchema) -> None:
    text = "targets:\n  - name: a\n    probe: echo\n    target: x\n    echo:\n      delay: soon\n"
    (line,) = problems(text, schema)
    assert line.startswith("pudimd.yaml:6:14: targets[0].echo.delay: ")
    assert "'soon'" in line


def test_negative_interval_is_refused(schema: ConfigSchema) -> None:
    (line,) = problems("targets:\n  - {name: a, probe: echo, target: x, interval: -5s}\n", schema)
    assert "targets[0].interval" in line and "negative" in line
    assert line.startswith("pudimd.yaml:2:")


def test_bad_cron_is_refused(schema: ConfigSchema) -> None:
    (line,) = problems("targets:\n  - {name: a, probe: echo, target: x, cron: '* * *'}\n", schema)
    assert "targets[0].cron: invalid cron expression '* * *'" in line


def test_interval_and_cron_together_are_refused(schema: ConfigSchema) -> None:
    (line,) = problems(
        "targets:\n  - {name: a, probe: echo, target: x, cron: '* * * * *', interval: 1m}\n", schema
    )
    assert "set interval or cron, not both" in line


def test_timeout_longer_than_interval_is_refused(schema: ConfigSchema) -> None:
    (line,) = problems(
        "targets:\n  - {name: a, probe: echo, target: x, interval: 5s, timeout: 10s}\n", schema
    )
    assert "timeout (10s) must not exceed interval (5s)" in line


def test_duplicate_target_names_point_at_the_second(schema: ConfigSchema) -> None:
    text = (
        "targets:\n  - {name: a, probe: echo, target: x}\n  - {name: a, probe: echo, target: y}\n"
    )
    (line,) = problems(text, schema)
    assert line.startswith("pudimd.yaml:3:")
    assert "duplicate target name 'a' (first at targets[0])" in line


def test_several_problems_are_all_reported(schema: ConfigSchema) -> None:
    text = "server:\n  listen: nowhere\ntargets:\n  - {name: a, probe: echo}\n  - {name: 'b c', probe: echo, target: y}\n"
    lines = problems(text, schema)
    assert len(lines) == 3
    assert any("server.listen" in line and "HOST:PORT" in line for line in lines)
    assert any("targets[0].target: missing required field 'target'" in line for line in lines)
    assert any("targets[1].name" in line for line in lines)


def test_env_interpolation_with_default_and_escape(schema: ConfigSchema) -> None:
    config = load_config_text(
        "targets:\n  - {name: a, probe: echo, target: '${HOST}:${PORT:-80}/$$x'}\n",
        schema,
        env={"HOST": "example.org"},
    )
    assert config.targets[0].target == "example.org:80/$x"


def test_missing_env_var_is_located(schema: ConfigSchema) -> None:
    (line,) = problems("targets:\n  - {name: a, probe: echo, target: '${NOPE}'}\n", schema)
    assert line.startswith("pudimd.yaml:2:")
    assert "environment variable NOPE is not set" in line


def test_secret_file_is_read_and_never_shown(schema: ConfigSchema, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    cfg = tmp_path / "pudimd.yaml"
    cfg.write_text("targets:\n  - {name: a, probe: echo, target: x, echo: {token_file: token}}\n")
    config = load_config(cfg, schema)
    token = config.targets[0].settings.token
    assert token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config) and "s3cret" not in str(config.targets[0])


def test_missing_secret_file_is_an_error_at_its_key(schema: ConfigSchema, tmp_path: Path) -> None:
    cfg = tmp_path / "pudimd.yaml"
    cfg.write_text(
        "targets:\n  - name: a\n    probe: echo\n    target: x\n    echo:\n      token_file: /nonexistent/token\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg, schema)
    (line,) = str(info.value).splitlines()
    assert line.startswith(f"{cfg}:6:19: targets[0].echo.token_file: cannot read secret file")


def test_unreadable_config_file(schema: ConfigSchema, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", schema)


def test_unknown_defaults_block_is_refused(schema: ConfigSchema) -> None:
    (line,) = problems("defaults:\n  ecko: {delay: 1}\n", schema)
    assert line == "pudimd.yaml:2:3: defaults.ecko: unknown field 'ecko'; did you mean 'echo'?"


def test_empty_file_is_a_valid_empty_config(schema: ConfigSchema) -> None:
    assert load_config_text("", schema).targets == []


def test_json_schema_covers_plugin_settings(schema: ConfigSchema) -> None:
    doc = json_schema(schema)
    defs = doc["$defs"]
    assert "EchoSettings" in defs and "BrokenSettings" in defs
    assert defs["EchoTarget"]["properties"]["probe"]["const"] == "echo"
    markdown = reference_markdown(schema)
    assert "## EchoSettings" in markdown
    assert "| `delay` | number | `0.0` |" in markdown
    assert "Installed probe types: `broken`, `echo`." in markdown
