"""``pudimd tokens``: API tokens made, listed and revoked directly in the state database
the config file names (the daemon may be running or not), which is how an operator makes
the first admin token; and ``pudimd tokens hash-password`` for ``auth.users``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pudimd.cli_common import fail as _fail
from pudimd.cli_common import state_options

if TYPE_CHECKING:
    from pudimd.store.threaded import AsyncEngine

__all__ = ["tokens"]

T = TypeVar("T")


def _store_url(config_path: Path, state_dir: Path | None) -> str:
    """The database URL the daemon uses for ``config_path`` (exits 1 on a bad config)."""
    from pudimd.config import ConfigError
    from pudimd.daemon import Daemon

    if not config_path.exists():
        _fail(f"config file {config_path} not found (use -c)")
    try:
        daemon = Daemon(config_path, state_dir=state_dir)
        return daemon.store_url(daemon.load())
    except ConfigError as exc:
        _fail(str(exc))


def _with_engine(
    config_path: Path, state_dir: Path | None, fn: Callable[[AsyncEngine], Awaitable[T]]
) -> T:
    import anyio

    from pudimd.store.engine import open_engine
    from pudimd.store.errors import StoreError

    url = _store_url(config_path, state_dir)

    async def main() -> T:
        engine = await open_engine(url)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    try:
        return anyio.run(main)
    except StoreError as exc:
        _fail(str(exc))


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group()
def tokens() -> None:
    """API tokens (in the state database, offline) and password hashes for auth.users."""


@tokens.command("create")
@state_options
@click.option("--name", required=True, help="What the token is for (shown in the audit log).")
@click.option(
    "--role",
    type=click.Choice(["viewer", "operator", "admin"]),
    required=True,
    help="viewer: read; operator: also act on alerts and silences; admin: everything.",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="RESOURCE[:read]",
    help="Limit the token to a resource (repeatable); none: every resource.",
)
@click.option("--expires", metavar="DURATION", help="Lifetime, e.g. 30d or 12h (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tokens_create(
    config_path: Path,
    state_dir: Path | None,
    name: str,
    role: str,
    scopes: tuple[str, ...],
    expires: str | None,
    as_json: bool,
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from pudimd.auth.routes import check_scopes, token_json
    from pudimd.auth.tokens import Role, create_token
    from pudimd.durations import parse_duration

    try:
        check_scopes(list(scopes))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from None
    expires_at = None
    if expires is not None:
        try:
            expires_at = time.time() + parse_duration(expires).total_seconds()
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires") from None
    chosen: Role = role  # type: ignore[assignment]  # click.Choice checked it

    async def create(engine: AsyncEngine) -> Any:
        return await create_token(
            engine, name, chosen, scopes=scopes, expires_at=expires_at, created_by="cli"
        )

    try:
        secret, info = _with_engine(config_path, state_dir, create)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps({**token_json(info), "token": secret}, indent=2))
        return
    click.echo(secret)
    click.echo(
        f"token {info.id} ({info.name}, {info.role}) created; it is shown only now", err=True
    )


@tokens.command("list")
@state_options
@click.option("--all", "show_all", is_flag=True, help="Include revoked tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tokens_list(config_path: Path, state_dir: Path | None, show_all: bool, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    from pudimd.auth.routes import token_json
    from pudimd.auth.tokens import TokenInfo, list_tokens

    async def listed(engine: AsyncEngine) -> list[TokenInfo]:
        return await list_tokens(engine, include_revoked=show_all)

    found = _with_engine(config_path, state_dir, listed)
    if as_json:
        click.echo(json.dumps([token_json(info) for info in found], indent=2))
        return
    from pudimd.cli_alerting import _table

    rows = [
        [
            str(info.id),
            info.name,
            info.role,
            ",".join(info.scopes) or "*",
            info.prefix + "...",
            _when(info.created_at),
            _when(info.expires_at),
            _when(info.last_used_at),
            "revoked" if info.revoked_at is not None else ("expired" if not info.usable() else ""),
        ]
        for info in found
    ]
    _table(rows, ["ID", "NAME", "ROLE", "SCOPES", "PREFIX", "CREATED", "EXPIRES", "LAST USED", ""])


@tokens.command("revoke")
@state_options
@click.argument("token_id", type=int)
def tokens_revoke(config_path: Path, state_dir: Path | None, token_id: int) -> None:
    """Revoke token TOKEN_ID (a running daemon refuses it within 5 seconds)."""
    from pudimd.auth.tokens import revoke_token

    async def revoke(engine: AsyncEngine) -> bool:
        return await revoke_token(engine, token_id)

    if not _with_engine(config_path, state_dir, revoke):
        _fail(f"no live token {token_id}")
    click.echo(f"token {token_id} revoked")


@tokens.command("hash-password")
def tokens_hash_password() -> None:
    """Read a password from standard input (prompted on a terminal) and print its argon2
    hash, for auth.users[].password_hash or basic_auth_users."""
    from pudimd.auth.passwords import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        _fail("empty password")
    click.echo(hash_password(password))
