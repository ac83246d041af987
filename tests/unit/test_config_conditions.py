from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pudimd.cli import cli
from pudimd.conditions import Condition
from pudimd.config import ConfigError, ConfigSchema, load_config_text, schema_for
from pudimd.config.schema import json_schema
from pudimd.plugins import PluginHost
from tests.testplugins import EchoPlugin


@pytest.fixture
def schema() -> ConfigSchema:
    host = PluginHost()
    host.register(EchoPlugin(), "echo")
    return schema_for(host)


CONFIG = """\
targets:
  - name: api
    probe: echo
    target: x
    conditions:
      - "[STATUS] == 200"
      - "[BODY].data.status == UP"
    degraded_if:
      - "[RESPONSE_TIME] > 800"
"""


def test_conditions_are_compiled_at_load(schema: ConfigSchema) -> None:
    (target,) = load_config_text(CONFIG, schema, env={}).targets
    assert target.conditions == [Condition("[STATUS] == 200"), Condition("[BODY].data.status == UP")]
    assert target.degraded_if == [Condition("[RESPONSE_TIME] > 800")]
    assert target.model_dump(mode="json")["conditions"] == [
        "[STATUS] == 200",
        "[BODY].data.status == UP",
    ]


def test_a_target_without_conditions_has_empty_lists(schema: ConfigSchema) -> None:
    (target,) = load_config_text(
        "targets:\n  - {name: a, probe: echo, target: x}\n", schema, env={}
    ).targets
    assert target.conditions == [] and target.degraded_if == []


def test_a_bad_condition_is_located_with_its_position(schema: ConfigSchema) -> None:
    text = CONFIG.replace('"[BODY].data.status == UP"', '"[BODY].data.status = UP"')
    with pytest.raises(ConfigError) as info:
        load_config_text(text, schema, file="pudimd.yaml", env={})
    assert str(info.value) == (
        "pudimd.yaml:7:9: targets[0].conditions[1]: expected an operator "
        "(==, !=, <, <=, >, >=) at position 20"
    )


def test_a_bad_degraded_if_condition_is_located(schema: ConfigSchema) -> None:
    text = CONFIG.replace('"[RESPONSE_TIME] > 800"', "len(5) > 1")
    with pytest.raises(ConfigError) as info:
        load_config_text(text, schema, file="pudimd.yaml", env={})
    assert str(info.value) == (
        "pudimd.yaml:9:9: targets[0].degraded_if[0]: len() takes a placeholder, "
        "e.g. len([BODY].items) at position 5"
    )


def test_a_condition_that_is_not_text_is_refused(schema: ConfigSchema) -> None:
    text = CONFIG.replace('"[STATUS] == 200"', "200")
    with pytest.raises(ConfigError) as info:
        load_config_text(text, schema, file="pudimd.yaml", env={})
    assert "targets[0].conditions[0]: expected a condition as text" in str(info.value)


def test_conditions_are_strings_in_the_json_schema(schema: ConfigSchema) -> None:
    doc = json_schema(schema)
    (target,) = (
        m
        for name, m in doc["$defs"].items()
        if name.endswith("Target") and "conditions" in m.get("properties", {})
    )
    assert target["properties"]["conditions"]["items"]["type"] == "string"
    assert "docs/conditions.md" in target["properties"]["conditions"]["description"]


def test_check_config_prints_the_bad_condition_with_file_line_and_position(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pudimd.yaml"
    path.write_text(
        "targets:\n"
        "  - name: port\n"
        "    probe: tcp\n"
        "    target: 127.0.0.1:9\n"
        "    conditions:\n"
        "      - \"[CONNECTED] == true\"\n"
        "      - \"len([BODY] > 0\"\n"
    )
    run = CliRunner().invoke(cli, ["check-config", str(path)])
    assert run.exit_code == 1
    assert run.stderr.strip() == (
        f"{path}:7:9: targets[0].conditions[1]: expected ')' closing len(, "
        "found '>' at position 12"
    )
