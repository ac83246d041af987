"""What every ``pudimd`` command shares: the default config path, the one-line failure,
and the ``-c/--config`` + ``--state-dir`` options of the commands that work on the state
database without the daemon."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

__all__ = ["DEFAULT_CONFIG", "fail", "state_options"]

DEFAULT_CONFIG = "/etc/pudimd/pudimd.yaml"


def fail(message: str) -> NoReturn:
    """Print ``message`` to stderr, each line as ``pudimd: LINE``, and exit 1."""
    for line in message.splitlines() or [message]:
        click.echo(f"pudimd: {line}", err=True)
    sys.exit(1)


def state_options(fn: Any) -> Any:
    """``-c/--config`` and ``--state-dir``: where the daemon keeps its state."""
    fn = click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="The state directory, when the daemon runs with --state-dir.",
    )(fn)
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_CONFIG,
        show_default=True,
        help="Config file (to find the state database).",
    )(fn)
