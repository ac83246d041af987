"""``pudimd targets list|get|add|rm|import|export``, ``pudimd status`` and ``pudimd login``:
the running daemon through :mod:`pudimd.client` (the daemon found from the config's
``server.listen`` or ``--url``; the token from ``--token``, ``PUDIMD_TOKEN`` or the file
``pudimd login`` writes).  Output is a table by default, ``--json`` or ``--yaml`` for
scripts."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from pudimd.cli_alerting import _options, _pairs, _table, api_token, daemon_url
from pudimd.cli_common import fail as _fail

__all__ = ["login", "status", "targets"]


@contextmanager
def _client(config_path: Path, url: str | None, *, token: str | None = None) -> Iterator[Any]:
    """A blocking client of the daemon; its errors become one-line messages, exit 1."""
    from pudimd.client import ApiError, Client, PudimdError

    base = daemon_url(config_path, url)
    try:
        with Client(base, token=token or api_token(), interface="cli", retries=2) as client:
            yield client
    except ApiError as exc:
        lines = [str(exc)]
        lines += [f"  {e.field}: {e.message}" for e in exc.errors if getattr(e, "field", None)]
        _fail("\n".join(lines))
    except PudimdError as exc:
        _fail(str(exc))


def _formats(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--yaml", "as_yaml", is_flag=True, help="Print YAML.")(fn)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def _dump(data: Any, as_json: bool, as_yaml: bool) -> bool:
    """Print ``data`` as JSON or YAML when asked; False when a table is wanted."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return True
    if as_yaml:
        import yaml_rs

        text = yaml_rs.dumps(data)
        click.echo(text[4:] if text.startswith("---\n") else text, nl=False)
        return True
    return False


def _read_document(path: str) -> Any:
    """A YAML or JSON file (``-``: standard input)."""
    import yaml_rs

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"{path}: {exc.strerror or exc}")
    try:
        return yaml_rs.loads(text, parse_datetime=False)
    except Exception as exc:
        _fail(f"{path}: not YAML or JSON: {exc}")


# -- targets ----------------------------------------------------------------------------


@click.group()
def targets() -> None:
    """List, add, remove, import and export the running daemon's targets.  Changes go
    through its config file: validated, written (comments kept) and applied at once."""


@targets.command("list")
@_options
@_formats
@click.option("--probe", help="Only targets of this probe type.")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Only targets with it.")
@click.option("--health", type=click.Choice(["up", "down", "degraded", "unknown"]))
@click.option("-q", "--query", help="Only targets whose name or target contains it.")
def targets_list(
    config_path: Path,
    url: str | None,
    as_json: bool,
    as_yaml: bool,
    probe: str | None,
    labels: tuple[str, ...],
    health: str | None,
    query: str | None,
) -> None:
    """List targets by name, with their health."""
    with _client(config_path, url) as client:
        found = client.targets(
            probe=probe, labels=_pairs(labels, "--label"), health=health, query=query
        )
    data = [{**t.config, "status": t.status} for t in found]
    if _dump(data, as_json, as_yaml):
        return
    rows = [
        [
            t.name,
            t.probe,
            t.target,
            str(t.config.get("interval") or t.config.get("cron") or ""),
            t.health,
            str(t.status.get("message") or "")[:60],
        ]
        for t in found
    ]
    _table(rows, ["NAME", "PROBE", "TARGET", "EVERY", "HEALTH", "MESSAGE"])


@targets.command("get")
@_options
@_formats
@click.argument("name")
def targets_get(
    config_path: Path, url: str | None, as_json: bool, as_yaml: bool, name: str
) -> None:
    """Show one target as written in the config (YAML by default), with its status."""
    with _client(config_path, url) as client:
        found = client.target(name)
    _dump({**found.config, "status": found.status}, as_json, not as_json or as_yaml)


@targets.command("add")
@_options
@click.option("-f", "--file", "path", help="The target as YAML or JSON (- for stdin).")
@click.option("--name")
@click.option("--probe")
@click.option("--target", "what", help="What to probe (URL, host:port...).")
@click.option("--interval")
@click.option("--label", "labels", multiple=True, metavar="K=V")
@click.option("--dry-run", is_flag=True, help="Validate only.")
def targets_add(
    config_path: Path,
    url: str | None,
    path: str | None,
    name: str | None,
    probe: str | None,
    what: str | None,
    interval: str | None,
    labels: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Add a target (from options or a file): validated, written to the config file and
    scheduled."""
    item: dict[str, Any] = {}
    if path is not None:
        loaded = _read_document(path)
        if not isinstance(loaded, dict):
            _fail(f"{path}: expected one target (a mapping)")
        item.update(loaded)
    for key, value in (("name", name), ("probe", probe), ("target", what), ("interval", interval)):
        if value is not None:
            item[key] = value
    if labels:
        item["labels"] = {**item.get("labels", {}), **_pairs(labels, "--label")}
    missing = [k for k in ("name", "probe", "target") if not item.get(k)]
    if missing:
        _fail(f"missing {', '.join('--' + k for k in missing)} (or give them in --file)")
    with _client(config_path, url) as client:
        if dry_run:
            result = client.import_targets([item], mode="merge", dry_run=True)
            click.echo(f"valid: would create {result.created}, update {result.updated}")
            return
        client.create_target(item)
    click.echo(f"added {item['name']}")


@targets.command("rm")
@_options
@click.argument("names", nargs=-1, required=True)
def targets_rm(config_path: Path, url: str | None, names: tuple[str, ...]) -> None:
    """Remove targets by name (from the config file; unscheduled at once)."""
    with _client(config_path, url) as client:
        for name in names:
            client.delete_target(name)
            click.echo(f"removed {name}")


@targets.command("import")
@_options
@click.argument("path")
@click.option(
    "--mode",
    type=click.Choice(["merge", "replace"]),
    default="merge",
    show_default=True,
    help="merge: create or replace by name; replace: the file's targets become all of them.",
)
@click.option("--dry-run", is_flag=True, help="Validate only.")
def targets_import(config_path: Path, url: str | None, path: str, mode: str, dry_run: bool) -> None:
    """Import targets from a YAML or JSON file (a list, or {targets: [...]}; - for stdin),
    all or nothing."""
    document = _read_document(path)
    items = document.get("targets") if isinstance(document, dict) else document
    if not isinstance(items, list):
        _fail(f"{path}: expected a list of targets (or targets: [...])")
    with _client(config_path, url, token=None) as client:
        result = client.import_targets(items, mode=mode, dry_run=dry_run)
    verb = "would be" if dry_run else ""
    click.echo(
        f"{result.created} created, {result.updated} updated, {result.deleted} deleted"
        + (f" ({verb} - nothing written)" if dry_run else "")
    )


@targets.command("export")
@_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML.")
@click.option("-o", "--output", "out", help="Write to this file instead of stdout.")
def targets_export(config_path: Path, url: str | None, as_json: bool, out: str | None) -> None:
    """Print every target as written in the config (secrets as <secret>), importable with
    `pudimd targets import`."""
    with _client(config_path, url) as client:
        items = client.export_targets()
    document = {"targets": items}
    if as_json:
        text = json.dumps(document, indent=2) + "\n"
    else:
        import yaml_rs

        text = yaml_rs.dumps(document)
        text = text[4:] if text.startswith("---\n") else text
    if out is None:
        click.echo(text, nl=False)
    else:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"{len(items)} targets written to {out}", err=True)


# -- status -----------------------------------------------------------------------------


@click.command("status")
@_options
@_formats
def status(config_path: Path, url: str | None, as_json: bool, as_yaml: bool) -> None:
    """The running daemon: version, uptime, config, targets, scheduler, store, outbox and
    plugins with their errors."""
    with _client(config_path, url) as client:
        data = client.daemon_status()
    if _dump(data, as_json, as_yaml):
        return
    rows = [[key, _short(value)] for key, value in data.items() if not isinstance(value, list)]
    _table(rows, ["", ""])
    plugins = data.get("plugins")
    if isinstance(plugins, list) and plugins:
        click.echo("")
        _table(
            [
                [
                    str(p.get("name", "")),
                    str(p.get("kind", "")),
                    str(p.get("version", "")),
                    str(p.get("error") or p.get("load_error") or ""),
                ]
                for p in plugins
                if isinstance(p, dict)
            ],
            ["PLUGIN", "KIND", "VERSION", "ERROR"],
        )


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return "" if value is None else str(value)


# -- login ------------------------------------------------------------------------------


def token_file() -> Path:
    """Where ``pudimd login`` keeps the token (what :func:`api_token` reads)."""
    if os.environ.get("PUDIMD_TOKEN_FILE"):
        return Path(os.environ["PUDIMD_TOKEN_FILE"])
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config_home / "pudimd" / "token"


@click.command("login")
@_options
@click.option(
    "--token-stdin", is_flag=True, help="Read the token from standard input (for scripts)."
)
def login(config_path: Path, url: str | None, token_stdin: bool) -> None:
    """Check an API token against the daemon and keep it (mode 0600) for the other
    commands.  Tokens come from `pudimd tokens create` (or an admin)."""
    if token_stdin:
        token = sys.stdin.readline().strip()
    else:
        token = api_token() or click.prompt("API token", hide_input=True).strip()
    if not token:
        _fail("no token given")
    with _client(config_path, url, token=token) as client:
        who = client.whoami()
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    name = who.get("name") or who.get("principal") or "?"
    click.echo(f"logged in as {name} ({who.get('role', '?')}); token kept in {path}")
