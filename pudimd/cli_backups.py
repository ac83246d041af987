"""``pudimd config backup|backups|restore``: backups made and restored without the daemon
(see docs/backups.md).  ``backup`` is safe while the daemon runs (SQLite is snapshotted
online); ``restore`` of the database refuses while the daemon answers on its listen
address."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pudimd.cli_alerting import _table
from pudimd.cli_common import fail as _fail
from pudimd.cli_common import state_options

if TYPE_CHECKING:
    from pudimd.config import ConfigBase
    from pudimd.daemon import Daemon

__all__ = ["COMMANDS", "config_backup", "config_backups", "config_restore"]


def _daemon(config_path: Path, state_dir: Path | None) -> Daemon:
    """A daemon object that is never run: its rules for the state dir, database URL and
    listen address, and its config loader."""
    from pudimd.daemon import Daemon
    from pudimd.plugins import PluginError

    try:
        return Daemon(config_path, state_dir=state_dir)
    except PluginError as exc:
        _fail(str(exc))


def _load(daemon: Daemon) -> ConfigBase:
    from pudimd.config import ConfigError

    try:
        return daemon.load()
    except ConfigError as exc:
        _fail(str(exc))


@click.command("backup")
@state_options
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the archive here (default: backups.dir, else <state_dir>/backups).",
)
def config_backup(config_path: Path, state_dir: Path | None, directory: Path | None) -> None:
    """Make a backup now (config files and state database, as the backups section
    says), apply retention, and print the archive's path.  Works with or without the
    daemon running."""
    from pudimd.backups.backup import make_backup, plan_for
    from pudimd.backups.database import DatabaseError

    daemon = _daemon(config_path, state_dir)
    config = _load(daemon)
    plan = plan_for(
        config,
        config_path,
        state_dir=daemon.state_dir(config),
        store_url=daemon.store_url(config),
        directory=directory,
    )
    try:
        result = make_backup(plan)
    except (OSError, DatabaseError) as exc:
        _fail(f"backup failed: {exc}")
    for path in result.deleted:
        click.echo(f"deleted {path} (retention)", err=True)
    click.echo(str(result.archive.path))


@click.command("backups")
@state_options
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="List this directory (default: backups.dir, else <state_dir>/backups).",
)
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def config_backups(
    config_path: Path, state_dir: Path | None, directory: Path | None, as_json: bool
) -> None:
    """List the backup archives, newest first."""
    from pudimd.backups.archive import list_archives
    from pudimd.backups.backup import backup_dir

    if directory is None:
        daemon = _daemon(config_path, state_dir)
        config = _load(daemon)
        directory = backup_dir(config, config_path, daemon.state_dir(config))
    found = list_archives(directory)
    if as_json:
        click.echo(json.dumps([a.as_json() for a in found], indent=2))
        return
    if not found:
        click.echo(f"no backups in {directory}", err=True)
        return
    rows = [
        [a.name, a.created.astimezone().strftime("%Y-%m-%d %H:%M:%S"), _size(a.size)] for a in found
    ]
    _table(rows, ["ARCHIVE", "CREATED", "SIZE"])


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


@click.command("restore")
@state_options
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--config-only", is_flag=True, help="Restore the config files only.")
@click.option("--state-only", is_flag=True, help="Restore the state database only.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def config_restore(
    config_path: Path,
    state_dir: Path | None,
    archive: Path,
    config_only: bool,
    state_only: bool,
    yes: bool,
) -> None:
    """Restore ARCHIVE: verify it, validate its config, replace the state database (the
    daemon must be stopped; the current database is kept as
    pudimd.db.before-restore-TIME), then write the config files atomically."""
    from pudimd.backups.archive import ArchiveError
    from pudimd.backups.database import DatabaseError
    from pudimd.backups.restore import DaemonRunning, daemon_listening, restore_archive
    from pudimd.config import ConfigError, load_config, schema_for

    if config_only and state_only:
        raise click.UsageError("--config-only and --state-only exclude each other")
    daemon = _daemon(config_path, state_dir)
    what = "the config files" if config_only else "the state database"
    if not config_only and not state_only:
        what = "the config files and the state database"
    if not yes:
        click.confirm(f"Replace {what} of {config_path} with {archive.name}?", abort=True)

    def validate(staged: Path) -> ConfigBase:
        return load_config(staged, schema_for(daemon.host))

    def store_url(restored: ConfigBase | None) -> str:
        current: ConfigBase | None = None
        if config_path.exists():
            with contextlib.suppress(ConfigError):
                current = daemon.load()
        for config in (current, restored):
            if config is not None:
                host, port = daemon.listen_address(config)
                if daemon_listening(host, port):
                    raise DaemonRunning(
                        f"something answers at {host}:{port}, the daemon's listen address: "
                        "stop the daemon before restoring its database"
                    )
        chosen = restored or current
        if chosen is None:
            raise ArchiveError(
                f"{config_path} is missing or invalid: it is needed to find the database "
                "(restore the config too, or fix it first)"
            )
        return daemon.store_url(chosen)

    try:
        report = restore_archive(
            archive,
            config_path=config_path,
            validate=validate,
            store_url=store_url,
            restore_config=not state_only,
            restore_state=not config_only,
        )
    except ConfigError as exc:
        _fail(f"the archive's config does not validate; nothing restored:\n{exc}")
    except (ArchiveError, DaemonRunning, DatabaseError, OSError) as exc:
        _fail(f"restore failed: {exc}")
    if report.database is not None:
        kept = f" (the previous one kept as {report.aside})" if report.aside else ""
        click.echo(f"restored the database {report.database}{kept}")
    for path in report.written:
        click.echo(f"restored {path}")


COMMANDS = (config_backup, config_backups, config_restore)
"""What ``pudimd config`` gains (registered in :mod:`pudimd.cli`)."""
