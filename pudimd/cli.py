"""The ``pudimd`` command.

Exit codes: 0 success; 1 the thing asked for failed (invalid config, failed probe, refused
reload, daemon could not start); 2 bad usage.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from pudimd import __version__
from pudimd.cli_common import config_option
from pudimd.cli_common import fail as _fail

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="pudimd")
def cli() -> None:
    """pudimd: a plugin-based monitoring and alerting daemon.

    Exit codes: 0 success, 1 failure (invalid config, failed check, refused reload, daemon
    could not start), 2 bad usage.
    """


def _use_uvloop(choice: str) -> bool:
    if choice == "asyncio":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise click.BadParameter("uvloop is not installed", param_hint="--loop") from None
        return False
    return True


@cli.command()
@config_option()
@click.option(
    "--listen", metavar="HOST:PORT", help="Listen address (default: server.listen, 127.0.0.1:9797)."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory (default: state_dir, $STATE_DIRECTORY, ~/.local/state/pudimd).",
)
@click.option(
    "--loop",
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    default="auto",
    show_default=True,
    envvar="PUDIMD_LOOP",
    help="Event loop: uvloop (libuv; about 1.5x the checks per CPU-second), asyncio (the "
    "standard library's), auto (uvloop when installed).",
)
@click.option(
    "--alertmanager-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An alertmanager.yml to use as it is for routes, receivers, inhibit rules and time "
    "intervals (instead of alertmanager_config_file).",
)
def run(
    config_path: Path,
    listen: str | None,
    state_dir: Path | None,
    loop: str,
    alertmanager_config: Path | None,
) -> None:
    """Run the daemon in the foreground (what the systemd unit starts).

    SIGHUP reloads the config, SIGTERM/SIGINT stop gracefully within 10 s.
    """
    import anyio

    from pudimd.api.app import ListenError
    from pudimd.config import ConfigError
    from pudimd.config.models import parse_host_port
    from pudimd.daemon import Daemon
    from pudimd.log import configure_logging
    from pudimd.plugins import PluginError
    from pudimd.store import StoreError

    configure_logging()
    if listen is not None:
        try:
            parse_host_port(listen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from None
    known = (ConfigError, StoreError, ListenError, PluginError)
    try:
        daemon = Daemon(
            config_path,
            listen=listen,
            state_dir=state_dir,
            alertmanager_config=alertmanager_config,
        )
        anyio.run(daemon.run, backend_options={"use_uvloop": _use_uvloop(loop)})
    except known as exc:
        _fail(str(exc))
    except BaseExceptionGroup as group:  # raised inside the task group
        found = group.subgroup(lambda exc: isinstance(exc, known))
        if found is None:
            raise
        _fail("\n".join(str(exc) for exc in _leaves(found)))
    except KeyboardInterrupt:
        sys.exit(130)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


@cli.command("check-config")
@click.option(
    "--alertmanager-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Validate with this alertmanager.yml, as `run --alertmanager-config` would use it.",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def check_config(files: tuple[Path, ...], alertmanager_config: Path | None) -> None:
    """Validate config FILES (plugin settings included, and the alertmanager.yml they
    name); exit 1 if any is invalid."""
    from pudimd.config import ConfigError, load_config
    from pudimd.daemon import make_host
    from pudimd.plugins import PluginError

    failed = False
    for file in files:
        try:
            from pudimd.config import schema_for

            config = load_config(
                file, schema_for(make_host(file)), alertmanager_config=alertmanager_config
            )
        except (ConfigError, PluginError) as exc:
            failed = True
            for line in str(exc).splitlines():
                click.echo(line, err=True)
            continue
        alerting = config.alerting
        click.echo(
            f"{file}: OK, {len(config.targets)} targets, {len(alerting.receivers)} receivers, "
            f"{len(alerting.rules)} alert rules"
        )
    sys.exit(1 if failed else 0)


@cli.command()
@config_option()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def plugins(config_path: Path, as_json: bool) -> None:
    """List installed plugins: name, kinds, types, distribution, version, status."""
    from pudimd.daemon import make_host
    from pudimd.plugins import PluginError, PluginInfo

    host = make_host(config_path if config_path.exists() else None)
    try:
        for kind in ("probe", "notifier", "discovery", "strategy"):
            host.types(kind)
    except PluginError as exc:
        _fail(str(exc))
    infos = sorted(host.infos.values(), key=lambda i: i.name)

    def status(info: PluginInfo) -> str:
        if info.disabled:
            return "disabled"
        return f"error: {info.error}" if info.error else "ok"

    if as_json:
        rows = [
            {
                "name": info.name,
                "kinds": info.kinds,
                "types": info.types,
                "module": info.module,
                "distribution": info.distribution,
                "version": info.version,
                "status": status(info),
                "error": info.error,
            }
            for info in infos
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("NAME", "KIND", "TYPES", "DISTRIBUTION", "VERSION", "STATUS")]
    for info in infos:
        types = ", ".join(t for names in info.types.values() for t in names) or "-"
        table.append(
            (
                info.name,
                ",".join(info.kinds) or "-",
                types,
                info.distribution or "-",
                info.version or "-",
                status(info),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        cells = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        click.echo(f"{cells}  {row[-1]}")


def _parse_sets(sets: tuple[str, ...]) -> dict[str, Any]:
    import yaml_rs

    out: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--set")
        try:
            parsed: Any = yaml_rs.loads(f"v: {raw}", parse_datetime=False)
            value = parsed["v"] if raw else ""
        except Exception:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _json_value(value: Any) -> Any:
    """What ``json.dumps`` cannot write by itself in a result: a raw body (bytes) as text,
    anything else as its ``str``."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


@cli.command()
@click.argument("probe_type", metavar="TYPE")
@click.argument("target")
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="A probe setting (repeatable)."
)
@click.option("--timeout", default="10s", show_default=True, help="Time limit of the check.")
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    metavar="EXPR",
    help="A condition the result must meet, e.g. '[STATUS] == 200' (repeatable).",
)
@click.option(
    "--degraded-if",
    "degraded_if",
    multiple=True,
    metavar="EXPR",
    help="A condition that makes the result degraded, e.g. '[RESPONSE_TIME] > 800'.",
)
@click.option("--json", "as_json", is_flag=True, help="Output the result as JSON.")
@config_option()
def probe(
    probe_type: str,
    target: str,
    sets: tuple[str, ...],
    timeout: str,
    conditions: tuple[str, ...],
    degraded_if: tuple[str, ...],
    as_json: bool,
    config_path: Path,
) -> None:
    """Run one TYPE check of TARGET now and print the result; exit 1 if it failed (a
    degraded result is a success, printed DEGRADED).

    Example: pudimd probe http https://example.com --set valid_status_codes=[200,301]
    --condition '[BODY].status == UP'
    """
    import dataclasses

    import anyio

    from pudimd.config import ConfigError, load_config_text, schema_for
    from pudimd.daemon import make_host
    from pudimd.scheduler import Job, Scheduler

    host = make_host(config_path if config_path.exists() else None)
    schema = schema_for(host)
    doc = {
        "targets": [
            {
                "name": "cli",
                "probe": probe_type,
                "target": target,
                "timeout": timeout,
                probe_type: _parse_sets(sets),
                "conditions": list(conditions),
                "degraded_if": list(degraded_if),
            }
        ]
    }
    try:
        config = load_config_text(json.dumps(doc), schema, file="<command line>")
    except ConfigError as exc:
        _fail(str(exc))
    spec = config.targets[0]
    scheduler = Scheduler(host, config.scheduler)

    async def once() -> Any:
        instance, plugin = scheduler.make_probe(spec)
        job = Job(target=spec, probe=instance, plugin=plugin)
        try:
            return await scheduler.run_once(job)
        finally:
            aclose = getattr(instance, "aclose", None)
            if aclose is not None:
                await aclose()

    result = anyio.run(once, backend_options={"use_uvloop": _use_uvloop("auto")})
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2, default=_json_value))
    else:
        state = ("DEGRADED" if result.degraded else "UP") if result.success else "DOWN"
        click.echo(f"{state} {probe_type} {target} in {result.duration * 1000:.1f} ms")
        if result.status is not None:
            click.echo(f"  status: {result.status}")
        if result.message:
            click.echo(f"  message: {result.message}")
        if result.condition is not None:
            click.echo(f"  condition: {result.condition}")
        for name, seconds in result.phases.items():
            click.echo(f"  phase {name}: {seconds * 1000:.2f} ms")
        for name, value in result.metrics.items():
            click.echo(f"  {name}: {value:g}")
    sys.exit(0 if result.success else 1)


@cli.command()
@config_option()
@click.option(
    "--listen", metavar="HOST:PORT", help="Address of the running daemon (default: server.listen)."
)
def reload(config_path: Path, listen: str | None) -> None:
    """Ask the running daemon to reload its config (POST /-/reload); exit 1 if refused."""
    from pudimd.cli_alerting import daemon_url

    url = daemon_url(config_path, None, listen) + "/-/reload"
    request = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            click.echo(response.read().decode().strip())
    except urllib.error.HTTPError as exc:
        _fail(exc.read().decode().strip() or str(exc))
    except (urllib.error.URLError, OSError) as exc:
        _fail(f"cannot reach the daemon at {url}: {getattr(exc, 'reason', exc)}")


@cli.command()
def version() -> None:
    """Print the version."""
    import platform

    click.echo(f"pudimd {__version__} (Python {platform.python_version()})")


@cli.group()
def config() -> None:
    """Config file tools."""


@config.command("schema")
@config_option()
@click.option(
    "--markdown", is_flag=True, help="Print the Markdown reference instead of JSON Schema."
)
def config_schema(config_path: Path, markdown: bool) -> None:
    """Print the JSON Schema of the config file, covering every installed plugin."""
    from pudimd.config import schema_for
    from pudimd.config.schema import json_schema, reference_markdown
    from pudimd.daemon import make_host

    schema = schema_for(make_host(config_path if config_path.exists() else None))
    if markdown:
        click.echo(reference_markdown(schema), nl=False)
    else:
        click.echo(json.dumps(json_schema(schema), indent=2))


@config.command("probes")
@config_option()
def config_probes(config_path: Path) -> None:
    """Print the Markdown manual of every installed probe type (docs/probes.md)."""
    from pudimd.config.probedocs import probes_markdown
    from pudimd.daemon import make_host

    host = make_host(config_path if config_path.exists() else None)
    click.echo(probes_markdown(host), nl=False)


def _add_alerting_commands() -> None:
    from pudimd.cli_alerting import alerts, notify, route, silences
    from pudimd.cli_backups import COMMANDS as BACKUP_COMMANDS
    from pudimd.cli_oncall import oncall  # and ack, assign... in the alerts group
    from pudimd.cli_rules import rules
    from pudimd.cli_simulate import simulate
    from pudimd.cli_targets import login, status, targets
    from pudimd.cli_tokens import tokens
    from pudimd.cli_versions import COMMANDS as CONFIG_COMMANDS

    commands = (alerts, silences, notify, route, rules, oncall, simulate, tokens, targets)
    for command in (*commands, status, login):
        cli.add_command(command)
    for command in (*CONFIG_COMMANDS, *BACKUP_COMMANDS):
        config.add_command(command)


_add_alerting_commands()
cli.add_command(__import__("pudimd.cli_templates", fromlist=["templates"]).templates)


def main() -> None:
    """Console-script entry point."""
    cli()
