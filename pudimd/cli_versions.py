"""``pudimd config versions|diff|rollback``: the configs the running daemon applied, through
its ``/api/v1/config`` endpoints (the daemon found from the config's ``server.listen`` or
``--url``).  A rollback is recorded with the login name (``--as`` to say otherwise)."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from pathlib import Path

import click

from pudimd.cli_alerting import _options, _output, _table, call, daemon_url

__all__ = ["COMMANDS", "config_diff", "config_rollback", "config_versions"]

_HEADERS = {"X-Pudimd-Interface": "cli"}


def _when(text: str) -> str:
    """An API time (RFC 3339, UTC) as local time to the second."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment.tzinfo else text


@click.command("versions")
@_options
@_output
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def config_versions(config_path: Path, url: str | None, output: str, limit: int) -> None:
    """List the config versions the daemon applied, newest first (* marks the one
    running)."""
    base = daemon_url(config_path, url)
    found = call(base, "GET", f"/api/v1/config/versions?limit={limit}")["versions"]
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    rows = [
        [
            f"{v['id']}{'*' if v['current'] else ''}",
            _when(v["at"]),
            v["source"],
            v["author"],
            v["message"].splitlines()[0] if v["message"] else "",
        ]
        for v in found
    ]
    _table(rows, ["ID", "APPLIED", "SOURCE", "AUTHOR", "MESSAGE"])


@click.command("diff")
@_options
@click.argument("old", type=click.IntRange(min=1))
@click.argument("new", type=click.IntRange(min=1), required=False)
def config_diff(config_path: Path, url: str | None, old: int, new: int | None) -> None:
    """Print the unified diff from config version OLD to NEW (default: the running one)."""
    base = daemon_url(config_path, url)
    query = f"from={old}" + (f"&to={new}" if new is not None else "")
    answer = call(
        base, "GET", f"/api/v1/config/diff?{query}", headers={"Accept": "application/json"}
    )
    if answer["diff"]:
        click.echo(answer["diff"], nl=False)
    else:
        click.echo(f"versions {answer['from']} and {answer['to']} are the same", err=True)


@click.command("rollback")
@_options
@click.argument("version", type=click.IntRange(min=1))
@click.option("-m", "--message", default="", help="Why (default: 'rollback to version N').")
@click.option("--as", "author", metavar="NAME", help="Who does it (default: your login name).")
def config_rollback(
    config_path: Path, url: str | None, version: int, message: str, author: str | None
) -> None:
    """Put config VERSION back: the daemon validates it, writes it to its config file,
    reloads and records it as a new version.  Refused (exit 1, nothing changed) when it
    does not validate any more."""
    base = daemon_url(config_path, url)
    body = {"author": author or getpass.getuser(), "message": message}
    answer = call(base, "POST", f"/api/v1/config/rollback/{version}", body, headers=_HEADERS)
    recorded = answer.get("version")
    if not answer["changed"]:
        click.echo(f"version {version} is the running config already; nothing changed")
    elif recorded is not None:
        click.echo(f"rolled back to version {version}: now running as version {recorded['id']}")
    else:
        click.echo(f"rolled back to version {version} (the new version was not recorded)")


COMMANDS = (config_versions, config_diff, config_rollback)
"""What ``pudimd config`` gains (registered in :mod:`pudimd.cli`)."""
