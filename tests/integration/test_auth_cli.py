"""``pudimd tokens`` on the state database of a config (offline, and next to a running
daemon), and the API token the other commands send (``--token``, ``PUDIMD_TOKEN``,
``PUDIMD_TOKEN_FILE``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pudimd.auth.passwords import verify_password_sync
from tests.integration.daemon_harness import DaemonProcess, running_daemon

pytestmark = pytest.mark.integration

PUDIMD = [sys.executable, "-m", "pudimd"]
CONFIG = "targets: []\nstate_dir: state\n"


def pudimd(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PUDIMD_TOKEN")}
    return subprocess.run(
        [*PUDIMD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        input=stdin,
        env={**base, "HOME": "/nonexistent", **(env or {})},
    )


def ok(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    out = pudimd(*args, env=env, stdin=stdin)
    assert out.returncode == 0, f"pudimd {' '.join(args)}: {out.stderr}{out.stdout}"
    return out.stdout


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pudimd.yaml"
    path.write_text(CONFIG)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["tokens"],
        ["tokens", "create"],
        ["tokens", "list"],
        ["tokens", "revoke"],
        ["tokens", "hash-password"],
    ],
)
def test_every_tokens_command_has_help(command: list[str]) -> None:
    assert "Usage:" in ok(*command, "--help")


def test_create_list_revoke_offline(config: Path) -> None:
    c = str(config)
    secret = ok("tokens", "create", "-c", c, "--name", "boot", "--role", "admin").strip()
    assert secret.startswith("pudimd_") and len(secret) > 40
    made = json.loads(
        ok(
            "tokens",
            "create",
            "-c",
            c,
            "--name",
            "ci",
            "--role",
            "viewer",
            "--scope",
            "alerts:read",
            "--scope",
            "targets",
            "--expires",
            "30d",
            "--json",
        )
    )
    assert made["token"].startswith("pudimd_") and made["scopes"] == ["alerts:read", "targets"]
    assert made["expires_at"] is not None and made["created_by"] == "cli"
    assert (config.parent / "state" / "pudimd.db").exists()
    table = ok("tokens", "list", "-c", c)
    assert table.splitlines()[0].split()[:4] == ["ID", "NAME", "ROLE", "SCOPES"]
    assert "boot" in table and "alerts:read,targets" in table and secret not in table
    assert ok("tokens", "revoke", "-c", c, "1").strip() == "token 1 revoked"
    listed = json.loads(ok("tokens", "list", "-c", c, "--json"))
    assert [t["name"] for t in listed] == ["ci"]
    everything = json.loads(ok("tokens", "list", "-c", c, "--all", "--json"))
    assert [t["name"] for t in everything] == ["boot", "ci"]
    assert everything[0]["revoked_at"] is not None
    again = pudimd("tokens", "revoke", "-c", c, "1")
    assert again.returncode == 1 and again.stderr.strip() == "pudimd: no live token 1"


def test_bad_input_is_one_clear_line(config: Path, tmp_path: Path) -> None:
    c = str(config)
    bad_scope = pudimd(
        "tokens", "create", "-c", c, "--name", "x", "--role", "admin", "--scope", "nope"
    )
    assert bad_scope.returncode == 2 and "unknown scope 'nope'" in bad_scope.stderr
    bad_role = pudimd("tokens", "create", "-c", c, "--name", "x", "--role", "root")
    assert bad_role.returncode == 2 and "root" in bad_role.stderr
    missing = pudimd("tokens", "list", "-c", str(tmp_path / "none.yaml"))
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_hash_password_reads_stdin() -> None:
    encoded = ok("tokens", "hash-password", stdin="correct horse\n").strip()
    assert encoded.startswith("$argon2id$")
    assert verify_password_sync(encoded, "correct horse")
    assert not verify_password_sync(encoded, "correct horse\n")


@pytest.fixture
def daemon(config: Path) -> Iterator[DaemonProcess]:
    yield from running_daemon(config, config.parent / "state")


def test_commands_send_the_token_and_a_revoked_one_is_refused(
    daemon: DaemonProcess, config: Path, tmp_path: Path
) -> None:
    c = str(config)
    made = json.loads(
        ok(
            "tokens",
            "create",
            "-c",
            c,
            "--state-dir",
            str(daemon.state_dir),
            "--name",
            "op",
            "--role",
            "viewer",
            "--json",
        )
    )
    versions = ["config", "versions", "--url", daemon.url, "-o", "json"]
    refused = pudimd(*versions)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    assert "missing or invalid credentials" in refused.stderr
    assert json.loads(ok(*versions, env={"PUDIMD_TOKEN": made["token"]}))[0]["id"] == 1
    assert json.loads(ok(*versions, "--token", made["token"]))[0]["id"] == 1
    token_file = tmp_path / "token"
    token_file.write_text(made["token"] + "\n")
    assert json.loads(ok(*versions, env={"PUDIMD_TOKEN_FILE": str(token_file)}))[0]["id"] == 1
    # a viewer may not roll back: 403 with the reason
    rollback = pudimd("config", "rollback", "1", "--url", daemon.url, "--token", made["token"])
    assert rollback.returncode == 1 and "HTTP 403" in rollback.stderr
    ok("tokens", "revoke", "-c", c, "--state-dir", str(daemon.state_dir), str(made["id"]))
    # the daemon caches lookups for up to 5 s
    import time

    deadline = time.monotonic() + 30
    while pudimd(*versions, "--token", made["token"]).returncode == 0:
        assert time.monotonic() < deadline, "the revoked token is still accepted"
        time.sleep(0.5)
