"""Target templates in the config loader: built-ins expand to valid targets, parameters are
typed, errors point at the using target in the file, custom and versioned templates, and
the ``pudimd templates`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml_rs
from click.testing import CliRunner

from pudimd.cli import cli
from pudimd.config import ConfigError, ConfigSchema, load_config, load_config_text, schema_for
from pudimd.config.template_files import builtin_templates
from pudimd.config.templates import Catalog, expand_use
from pudimd.daemon import make_host


@pytest.fixture(scope="module")
def schema() -> ConfigSchema:
    return schema_for(make_host(None))


def problems(text: str, schema: ConfigSchema, file: str = "pudimd.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, schema, file=file)
    return str(caught.value).splitlines()


BUILTIN_USES = {
    "website": {"url": "https://shop.example/"},
    "json_health": {"url": "http://127.0.0.1:8080/health"},
    "postgres": {"host": "db.example"},
    "redis": {"host": "[::1]"},
    "dns_record": {"record": "www.example.com", "expect": "192\\.0\\.2\\.1"},
}


def test_every_builtin_is_covered_here() -> None:
    assert {t.spec.name for t in builtin_templates()} == set(BUILTIN_USES)


@pytest.mark.parametrize("name", sorted(BUILTIN_USES))
def test_each_builtin_expands_to_targets_that_validate(name: str, schema: ConfigSchema) -> None:
    text = yaml_rs.dumps({"targets": [{"name": "t", "use": name, "params": BUILTIN_USES[name]}]})
    config = load_config_text(text, schema)
    template = config.template_catalog.find(name)
    assert template is not None and template.source == "builtin"
    assert len(config.targets) == len(template.spec.targets)
    assert config.targets[0].name == "t"
    assert [t.probe for t in config.targets] == [b["probe"] for b in template.spec.targets]


def test_website_expands_to_an_http_and_a_tls_check(schema: ConfigSchema) -> None:
    config = load_config_text(
        "targets:\n"
        "  - name: shop\n"
        "    use: website\n"
        "    params: {url: 'https://shop.example:8443/a', min_days_left: '10'}\n"
        "    labels: {team: web}\n",
        schema,
    )
    http, tls = config.targets
    assert (http.name, http.probe, http.target) == ("shop", "http", "https://shop.example:8443/a")
    assert http.settings.fail_if_not_ssl is True and http.settings.body_contains is None
    assert (tls.name, tls.probe, tls.target) == ("shop:tls", "tls", "shop.example:8443")
    assert tls.settings.min_days_left == 10 and tls.settings.server_name == "shop.example"
    assert tls.interval.total_seconds() == 3600 and http.interval.total_seconds() == 30
    assert http.labels == tls.labels == {"team": "web"}
    assert config.target_templates == {"shop": (0, "website@1"), "shop:tls": (0, "website@1")}


def test_using_site_fields_merge_over_the_templates(schema: ConfigSchema) -> None:
    config = load_config_text(
        "defaults: {labels: {env: prod}}\n"
        "templates:\n"
        "  - name: pair\n"
        "    params: {host: {type: host}, port: {type: int, default: 80}}\n"
        "    targets:\n"
        "      - {probe: tcp, target: '${params.host}:${params.port}', labels: {a: t, b: t}}\n"
        "      - {name_suffix: dns, probe: dns, target: '${params.host}',\n"
        "         dns: {query_type: AAAA, recursion_desired: false}, interval: 5m}\n"
        "targets:\n"
        "  - name: box\n"
        "    use: pair\n"
        "    params: {host: box.example}\n"
        "    labels: {b: use}\n"
        "    interval: 1m\n"
        "    depends_on: [gw]\n"
        "    dns: {query_type: A}\n"
        "  - {name: gw, probe: tcp, target: 'gw:22'}\n",
        schema,
    )
    tcp, dns, gw = config.targets
    assert tcp.target == "box.example:80" and tcp.labels == {"env": "prod", "a": "t", "b": "use"}
    assert dns.name == "box:dns" and dns.labels == {"env": "prod", "b": "use"}
    assert dns.settings.query_type == "A" and dns.settings.recursion_desired is False
    assert tcp.interval == dns.interval and dns.interval.total_seconds() == 60
    assert tcp.depends_on == dns.depends_on == ["gw"] and gw.name == "gw"


def test_a_whole_reference_keeps_its_type_and_an_unset_one_drops_its_key() -> None:
    catalog = Catalog(builtin_templates())
    targets, found, _ = expand_use(
        {"name": "db", "use": "postgres", "params": {"host": "db", "port": "6432", "tls": "yes"}},
        catalog,
    )
    assert found == []
    assert targets == [
        {
            "name": "db",
            "probe": "postgres",
            "target": "db:6432",
            "postgres": {"username": "postgres", "role": "any", "tls": True},
        }
    ]


def test_versions_coexist_plain_use_takes_the_newest_and_a_pin_holds(
    schema: ConfigSchema,
) -> None:
    body = "targets: [{{probe: tcp, target: 'h:{port}'}}]"
    config = load_config_text(
        "templates:\n"
        f"  - {{name: svc, version: 1, {body.format(port=1)}}}\n"
        f"  - {{name: svc, version: 2, {body.format(port=2)}}}\n"
        "targets:\n"
        "  - {name: newest, use: svc}\n"
        "  - {name: pinned, use: svc@1}\n",
        schema,
    )
    assert [(t.name, t.target) for t in config.targets] == [("newest", "h:2"), ("pinned", "h:1")]
    assert problems(
        "targets: [{name: x, use: svc@3}]\n"
        + "templates:\n"
        + (f"  - {{name: svc, version: 1, {body.format(port=1)}}}\n"),
        schema,
    ) == ["pudimd.yaml:1:26: targets[0].use: template 'svc' has no version 3 (versions: 1)"]


def test_errors_point_at_the_using_target(schema: ConfigSchema) -> None:
    text = (
        "targets:\n"
        "  - {name: a, probe: tcp, target: 'a:1'}\n"
        "  - name: shop\n"
        "    use: websit\n"
        "  - name: api\n"
        "    use: json_health\n"
        "    params:\n"
        "      url: not a url\n"
        "      status_code: abc\n"
        "      colour: red\n"
        "  - name: db\n"
        "    use: postgres\n"
        "    params: {port: 5432}\n"
    )
    assert problems(text, schema) == [
        "pudimd.yaml:4:10: targets[1].use: unknown template 'websit' (did you mean 'website'? "
        "known: dns_record, json_health, postgres, redis, website)",
        "pudimd.yaml:10:15: targets[2].params.colour: unknown parameter 'colour' of "
        "json_health@1 (known: expect, field, slow_ms, status_code, url)",
        "pudimd.yaml:8:12: targets[2].params.url: expected a URL (scheme://host/...), "
        "got 'not a url'",
        "pudimd.yaml:9:20: targets[2].params.status_code: expected an integer, got 'abc'",
        "pudimd.yaml:13:13: targets[3].params.host: missing required parameter 'host' "
        "(host: Server host name or address ([v6] in brackets))",
    ]


def test_an_expanded_target_that_fails_validation_is_reported_at_its_use(
    schema: ConfigSchema,
) -> None:
    text = (
        "targets:\n"
        "  - {name: a, probe: tcp, target: 'a:1'}\n"
        "  - name: shop\n"
        "    use: website\n"
        "    params: {url: 'https://shop.example'}\n"
        "    tls: {min_version: TLSv9}\n"
        "  - name: db\n"
        "    use: redis\n"
        "    params: {host: db}\n"
        "    redis: {colour: red}\n"
        "  - {name: z, probe: tcp, target: 'z:1', depends_on: [nope]}\n"
    )
    assert problems(text, schema) == [
        "pudimd.yaml:6:24: targets[1].tls.min_version: Input should be 'TLSv1', 'TLSv1.1', "
        "'TLSv1.2' or 'TLSv1.3' (got 'TLSv9') (template website@1, target 'shop:tls')",
        "pudimd.yaml:10:13: targets[2].redis.colour: unknown field 'colour' "
        "(template redis@1, target 'db')",
    ]
    fixed = text.replace("    tls: {min_version: TLSv9}\n", "").replace(
        "    redis: {colour: red}\n", ""
    )
    assert problems(fixed, schema) == [
        "pudimd.yaml:9:54: targets[3].depends_on: depends_on: unknown target 'nope'"
    ]


def test_a_template_field_that_fails_is_named_inside_the_template(schema: ConfigSchema) -> None:
    text = (
        "templates:\n"
        "  - name: bad\n"
        "    params: {port: {type: int}}\n"
        "    targets: [{probe: tcp, target: 'h:${params.port}', tcp: {send: 1}}]\n"
        "targets:\n"
        "  - {name: a, probe: tcp, target: 'a:1'}\n"
        "  - {name: b, use: bad, params: {port: 1}}\n"
    )
    (line,) = problems(text, schema)
    assert line.startswith("pudimd.yaml:7:5: targets[1]: template bad@1, target 'b': tcp.send")


def test_template_definitions_are_checked_where_they_are_written(schema: ConfigSchema) -> None:
    text = (
        "templates:\n"
        "  - name: mine\n"
        "    params: {port: {type: int, default: x}, 'bad name': {type: host}}\n"
        "    targets: [{probe: tcp, target: x}]\n"
        "  - name: refs\n"
        "    params: {host: {type: host}}\n"
        "    targets:\n"
        "      - {probe: tcp, target: '${params.hots}:1', name: x}\n"
        "      - {probe: tcp, target: '${params.host.port}'}\n"
        "  - {name: ../etc, targets: [{probe: tcp, target: x}]}\n"
        "  - {name: refs, targets: [{probe: tcp, target: x}], colour: 1}\n"
        "targets: []\n"
    )
    assert problems(text, schema) == [
        "pudimd.yaml:3:20: templates[0].params.port: default: expected an integer, got 'x'",
        "pudimd.yaml:8:56: templates[1].targets[0].name: a template target has no name: "
        "it gets the using target's",
        "pudimd.yaml:8:30: templates[1].targets[0].target: ${params.hots}: unknown parameter "
        "'hots' (did you mean 'host'? known: host)",
        "pudimd.yaml:9:9: templates[1].targets[1].name_suffix: targets after the first need a "
        "name_suffix (letters, digits, _ . -)",
        "pudimd.yaml:9:30: templates[1].targets[1].target: ${params.host.port}: parameter "
        "'host' (host) has no 'port' (only url and host_port have parts)",
        "pudimd.yaml:10:12: templates[2].name: invalid template name '../etc': use letters, "
        "digits, _ and - (no /, \\, dots or spaces)",
        "pudimd.yaml:11:54: templates[3].colour: unknown field 'colour'",
    ]


def test_template_files_globs_and_templates_dir(tmp_path: Path, schema: ConfigSchema) -> None:
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "a.yaml").write_text(
        "- {name: ping, version: 2, targets: [{probe: tcp, target: 'h:2'}]}\n"
        "- {name: website, description: mine, params: {url: {type: url}},"
        " targets: [{probe: http, target: '${params.url}'}]}\n"
    )
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "ping.yaml").write_text(
        "name: ping\nversion: 1\ntargets: [{probe: tcp, target: 'h:1'}]\n"
    )
    config_path = tmp_path / "pudimd.yaml"
    config_path.write_text(
        "template_files: ['more/*.yaml']\n"
        "targets:\n"
        "  - {name: p, use: ping}\n"
        "  - {name: p1, use: ping@1}\n"
        "  - {name: w, use: website, params: {url: 'http://w.example'}}\n"
    )
    config = load_config(config_path, schema)
    assert [(t.name, t.target) for t in config.targets] == [
        ("p", "h:2"),
        ("p1", "h:1"),
        ("w", "http://w.example"),
    ]
    website = config.template_catalog.find("website")
    assert website is not None and website.source == "file", "a custom template overrides"
    assert website.file == str((tmp_path / "more" / "a.yaml").resolve())
    ping = config.template_catalog.find("ping", 1)
    assert ping is not None and ping.file == str((tmp_path / "templates" / "ping.yaml").resolve())


def test_errors_in_template_files_name_that_file(tmp_path: Path, schema: ConfigSchema) -> None:
    (tmp_path / "templates").mkdir()
    bad = tmp_path / "templates" / "bad.yaml"
    bad.write_text("name: bad\ntargets:\n  - {probe: tcp, target: x, name_suffix: 1}\n")
    dup = tmp_path / "dup.yaml"
    dup.write_text("templates:\n  - {name: bad, targets: [{probe: tcp, target: x}]}\n")
    config_path = tmp_path / "pudimd.yaml"
    config_path.write_text("template_files: [dup.yaml, missing.yaml]\ntargets: []\n")
    assert problems(config_path.read_text(), schema, str(config_path)) == [
        f"{config_path}:1:28: template_files[1]: no such file: {tmp_path / 'missing.yaml'}",
        f"{bad.resolve()}:3:42: targets[0].name_suffix: the first target takes the using "
        "target's name",
    ]
    bad.write_text("name: bad\ntargets: [{probe: tcp, target: x}]\n")
    config_path.write_text("template_files: [dup.yaml]\ntargets: []\n")
    assert problems(config_path.read_text(), schema, str(config_path)) == [
        f"{bad.resolve()}:1:7: name: template bad@1 is already defined in {dup.resolve()}"
    ]


def test_plain_configs_are_untouched(schema: ConfigSchema) -> None:
    config = load_config_text("targets: [{name: a, probe: tcp, target: 'a:1'}]\n", schema)
    assert config.expanded_targets == [{"name": "a", "probe": "tcp", "target": "a:1"}]
    assert problems("targets:\n  - {name: a, probe: tcp, target: 'a:1', interval: x}\n", schema)[
        0
    ].startswith("pudimd.yaml:2:52: targets[0].interval: ")


def test_cli_list_show_expand_and_check_config(tmp_path: Path) -> None:
    config_path = tmp_path / "pudimd.yaml"
    config_path.write_text(
        "templates:\n"
        "  - {name: ping, description: a port, params: {addr: {type: host_port}},"
        " targets: [{probe: tcp, target: '${params.addr}'}]}\n"
        "targets:\n"
        "  - {name: p, use: ping, params: {addr: 'db:5432'}, labels: {team: db}}\n"
    )
    runner = CliRunner()
    listed = runner.invoke(cli, ["templates", "list", "-c", str(config_path)])
    assert listed.exit_code == 0, listed.output
    assert "ping@1  [config]  addr*\n    a port\n" in listed.output
    assert "website@1  [builtin]  url*, body_contains," in listed.output
    as_json = runner.invoke(cli, ["templates", "list", "-c", str(config_path), "--json"])
    assert {t["name"] for t in json.loads(as_json.output)} >= {"ping", "website"}
    shown = runner.invoke(cli, ["templates", "show", "website", "-c", str(config_path)])
    assert shown.exit_code == 0
    exported: Any = yaml_rs.loads(shown.output)
    assert exported["name"] == "website" and exported["params"]["url"]["type"] == "url"
    website = Catalog(builtin_templates()).find("website")
    assert website is not None and exported == website.export()
    missing = runner.invoke(cli, ["templates", "show", "nope", "-c", str(config_path)])
    assert missing.exit_code == 1 and "no template 'nope'" in missing.output
    expanded = runner.invoke(cli, ["templates", "expand", "-c", str(config_path)])
    assert expanded.exit_code == 0, expanded.output
    assert yaml_rs.loads(expanded.output) == {
        "targets": [{"name": "p", "probe": "tcp", "target": "db:5432", "labels": {"team": "db"}}]
    }
    config_path.write_text(config_path.read_text().replace("db:5432", "db"))
    checked = runner.invoke(cli, ["check-config", str(config_path)])
    assert checked.exit_code == 1
    assert checked.output.startswith(
        f"{config_path}:4:41: targets[0].params.addr: expected HOST:PORT"
    )


def test_docs_describe_every_builtin_and_its_parameters() -> None:
    text = (Path(__file__).parents[2] / "docs" / "templates.md").read_text()
    for template in builtin_templates():
        section = text.split(f"\n### {template.spec.name}\n", 1)[1].split("\n### ", 1)[0]
        for name in template.spec.params:
            assert f"| `{name}` | {template.spec.params[name].type} |" in section, name
