"""``pudimd templates list|show|expand``: target templates (docs/templates.md), read from
the config file and the built-ins, without a daemon."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from pudimd.cli_common import config_option

__all__ = ["templates"]


_config = config_option(
    "Config file (its templates, template_files and templates_dir); built-ins only "
    "when it does not exist."
)


def _fail(lines: str) -> NoReturn:
    for line in lines.splitlines():
        click.echo(line, err=True)
    sys.exit(1)


def catalog_of(config_path: Path) -> Any:
    """The templates the config file at ``config_path`` may use (built-ins only when there
    is no such file).  Exits 1 printing file:line:column problems."""
    import yaml_rs

    from pudimd.config import ConfigError, Problem
    from pudimd.config.loader import format_path, read_config_text
    from pudimd.config.locate import Locator
    from pudimd.config.template_files import builtin_templates, load_catalog
    from pudimd.config.templates import Catalog

    if not config_path.exists():
        return Catalog(builtin_templates())
    try:
        text = read_config_text(config_path)
    except ConfigError as exc:
        _fail(str(exc))
    try:
        data = yaml_rs.loads(text, parse_datetime=False) if text.strip() else {}
    except Exception:
        _fail(f"{config_path}: invalid YAML (run pudimd check-config {config_path})")
    if not isinstance(data, dict):
        data = {}
    problems: list[Problem] = []
    locator = Locator(text)

    def problem(path: Any, message: str, *, key: bool = False) -> None:
        found = locator.locate(path, key=key)
        line, col = found if found else (None, None)
        problems.append(Problem(str(config_path), line, col, format_path(path), message))

    catalog, file_problems = load_catalog(data, str(config_path), problem)
    problems.extend(file_problems)
    if problems:
        _fail("\n".join(map(str, problems)))
    return catalog


@click.group()
def templates() -> None:
    """Target templates: built-in and custom (docs/templates.md)."""


@templates.command("list")
@_config
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def templates_list(config_path: Path, as_json: bool) -> None:
    """List every template: name@version, source and parameters (* required)."""
    found = [template.summary() for template in catalog_of(config_path).all()]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for item in found:
        params = ", ".join(
            f"{name}{'*' if param['required'] else ''}" for name, param in item["params"].items()
        )
        source = item.get("file") or item["source"]
        click.echo(f"{item['name']}@{item['version']}  [{source}]  {params}")
        if item["description"]:
            click.echo(f"    {item['description']}")


@templates.command("show")
@_config
@click.argument("name")
@click.option("--version", "version", type=int, help="This version (default: the newest).")
@click.option("--json", "as_json", is_flag=True, help="Output JSON instead of YAML.")
@click.option("--yaml", "as_yaml", is_flag=True, help="Output YAML (the default).")
def templates_show(
    config_path: Path, name: str, version: int | None, as_json: bool, as_yaml: bool
) -> None:
    """Print template NAME's definition, as a template file would hold it (export)."""
    import yaml_rs

    if as_json and as_yaml:
        raise click.UsageError("--json and --yaml are exclusive")
    template = catalog_of(config_path).find(name, version)
    if template is None:
        what = f"{name}@{version}" if version is not None else repr(name)
        _fail(f"pudimd: no template {what} (see pudimd templates list)")
    exported = template.export()
    if as_json:
        click.echo(json.dumps(exported, indent=2))
    else:
        click.echo(yaml_rs.dumps(exported).rstrip("\n"))


@templates.command("expand")
@config_option()
def templates_expand(config_path: Path) -> None:
    """Validate the config and print its targets (YAML) as they are once every `use:`
    target is expanded (before `defaults:`).  Exits 1 with the config's problems."""
    import yaml_rs

    from pudimd.config import ConfigError, load_config, schema_for
    from pudimd.daemon import make_host
    from pudimd.plugins import PluginError

    try:
        config = load_config(config_path, schema_for(make_host(config_path)))
    except (ConfigError, PluginError) as exc:
        _fail(str(exc))
    click.echo(yaml_rs.dumps({"targets": config.expanded_targets}).rstrip("\n"))
