"""``pudimd targets``, ``pudimd status`` and ``pudimd login`` as an operator runs them: real
subprocesses against one real daemon (through pudimd.client), the config file changed
under them, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml_rs

from tests.helpers import PUDIMD, free_port
from tests.integration.daemon_harness import DaemonProcess, running_daemon

pytestmark = pytest.mark.integration

CONFIG = """\
# the operator's comment
targets:
  - name: db      # the database
    probe: tcp
    target: 127.0.0.1:{closed}
    interval: 1h
    labels: {{team: data}}
  - name: cache
    probe: tcp
    target: 127.0.0.1:{closed}
    interval: 1h
"""


def pudimd(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PUDIMD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        input=stdin,
        check=False,
    )


def ok(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    out = pudimd(*args, stdin=stdin, env=env)
    assert out.returncode == 0, f"pudimd {' '.join(args)}: {out.stderr}{out.stdout}"
    return out.stdout


def one_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1, f"exit {out.returncode}: {out.stderr}{out.stdout}"
    assert "Traceback" not in out.stderr, out.stderr
    return out.stderr.strip().splitlines()[0]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    path = tmp_path_factory.mktemp("cli-targets") / "pudimd.yaml"
    path.write_text(CONFIG.format(closed=free_port()))
    yield from running_daemon(path, path.parent / "state", token_env=True)


def at(daemon: DaemonProcess) -> list[str]:
    return ["--url", daemon.url]


def names(daemon: DaemonProcess) -> list[str]:
    data: Any = yaml_rs.loads(daemon.config.read_text())
    return [t["name"] for t in data["targets"]]


def test_list_as_table_json_and_yaml(daemon: DaemonProcess) -> None:
    text = ok("targets", "list", *at(daemon))
    header, *rows = text.splitlines()
    assert header.split() == ["NAME", "PROBE", "TARGET", "EVERY", "HEALTH", "MESSAGE"]
    assert [row.split()[0] for row in rows[:2]] == ["cache", "db"]
    listed = json.loads(ok("targets", "list", "--json", "--label", "team=data", *at(daemon)))
    assert [t["name"] for t in listed] == ["db"] and listed[0]["status"]["scheduled"] is True
    as_yaml: Any = yaml_rs.loads(ok("targets", "list", "--yaml", "--probe", "tcp", *at(daemon)))
    assert {t["name"] for t in as_yaml} >= {"cache", "db"}


def test_add_get_rm_through_the_file(daemon: DaemonProcess) -> None:
    port = free_port()
    out = ok(
        "targets",
        "add",
        "--name",
        "web",
        "--probe",
        "tcp",
        "--target",
        f"127.0.0.1:{port}",
        "--interval",
        "1h",
        "--label",
        "team=web",
        *at(daemon),
    )
    assert out.strip() == "added web"
    assert "web" in names(daemon) and "# the database" in daemon.config.read_text()
    got: Any = yaml_rs.loads(ok("targets", "get", "web", *at(daemon)))
    assert got["labels"] == {"team": "web"} and got["status"]["scheduled"] is True
    assert json.loads(ok("targets", "get", "web", "--json", *at(daemon)))["name"] == "web"
    error = one_error(
        pudimd("targets", "add", "--name", "web", "--probe", "tcp", "--target", "x:1", *at(daemon))
    )
    assert "409" in error and "exists" in error
    error = one_error(
        pudimd(
            "targets",
            "add",
            "--name",
            "bad",
            "--probe",
            "tcp",
            "--target",
            "x:1",
            "--interval",
            "often",
            *at(daemon),
        )
    )
    assert "422" in error
    assert "bad" not in names(daemon)
    assert ok("targets", "rm", "web", *at(daemon)).strip() == "removed web"
    assert "web" not in names(daemon)
    assert "404" in one_error(pudimd("targets", "get", "web", *at(daemon)))


def test_export_then_import(daemon: DaemonProcess, tmp_path: Path) -> None:
    exported = tmp_path / "targets.yaml"
    ok("targets", "export", "-o", str(exported), *at(daemon))
    data: Any = yaml_rs.loads(exported.read_text())
    assert {"cache", "db"} <= {t["name"] for t in data["targets"]}
    data["targets"].append(
        {"name": "imported", "probe": "tcp", "target": "127.0.0.1:9", "interval": "1h"}
    )
    exported.write_text(json.dumps(data))
    before = daemon.config.read_text()
    out = ok("targets", "import", str(exported), "--dry-run", *at(daemon))
    assert out.startswith("1 created") and daemon.config.read_text() == before
    out = ok("targets", "import", "-", *at(daemon), stdin=json.dumps(data))
    assert out.startswith("1 created, 0 updated, 0 deleted")
    assert "imported" in names(daemon)
    ok("targets", "rm", "imported", *at(daemon))


def test_status(daemon: DaemonProcess) -> None:
    data = json.loads(ok("status", "--json", *at(daemon)))
    assert data["version"]
    text = ok("status", *at(daemon))
    assert "version" in text


def test_login_keeps_a_checked_token(daemon: DaemonProcess, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PUDIMD_TOKEN"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    bad = pudimd("login", "--token-stdin", *at(daemon), env=env, stdin="pudimd_nope\n")
    assert "401" in one_error(bad)
    assert not (tmp_path / "pudimd" / "token").exists()
    out = ok("login", "--token-stdin", *at(daemon), env=env, stdin=daemon.token + "\n")
    assert "logged in as" in out
    kept = tmp_path / "pudimd" / "token"
    assert kept.read_text().strip() == daemon.token
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # the other commands use it
    assert "cache" in ok("targets", "list", *at(daemon), env=env)
    unauthenticated = {**env, "XDG_CONFIG_HOME": str(tmp_path / "empty")}
    assert "401" in one_error(pudimd("targets", "list", *at(daemon), env=unauthenticated))


def test_unreachable_daemon_is_one_line(tmp_path: Path) -> None:
    error = one_error(pudimd("targets", "list", "--url", f"http://127.0.0.1:{free_port()}"))
    assert "cannot reach" in error
