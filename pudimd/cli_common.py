"""What every ``pudimd`` command shares: the default config path and its ``-c/--config``
option, the one-line failure, and the ``--state-dir`` option of the commands that work on
the state database without the daemon."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

__all__ = ["DEFAULT_CONFIG", "config_option", "fail", "state_options"]

DEFAULT_CONFIG = "/etc/pudimd/pudimd.yaml"

FC = TypeVar("FC", bound=Callable[..., Any])


def config_option(
    help: str = "Config file.",
    *,
    default: str | None = DEFAULT_CONFIG,
    required: bool = False,
    exists: bool = False,
) -> Callable[[FC], FC]:
    """``-c/--config FILE`` as every command spells it, passed as ``config_path`` (a
    Path; ``default`` shown in --help when there is one)."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(exists=exists, dir_okay=False, path_type=Path),
        default=None if required else default,
        required=required,
        show_default=default is not None and not required,
        help=help,
    )


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
    return config_option("Config file (to find the state database).")(fn)
