"""The ``pudimd`` command as an operator runs it: exit codes, one-line errors, --help."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import PUDIMD, free_port


def _commands() -> list[list[str]]:
    """Every command and subcommand of ``pudimd``, from the click tree itself, so a new
    command cannot ship without ``--help``."""
    import click

    from pudimd.cli import cli

    found: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        found.append(path)
        if isinstance(command, click.Group):
            for name, sub in sorted(command.commands.items()):
                walk(sub, [*path, name])

    walk(cli, [])
    return found


COMMANDS = _commands()


def pudimd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PUDIMD, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "pudimd")
def test_every_command_has_help(command: list[str]) -> None:
    out = pudimd(*command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage:")


def test_version() -> None:
    out = pudimd("version")
    assert out.returncode == 0 and out.stdout.startswith("pudimd 0.")


def test_usage_error_exits_2() -> None:
    assert pudimd("probe").returncode == 2
    assert pudimd("no-such-command").returncode == 2


def test_check_config_accepts_the_shipped_example() -> None:
    out = pudimd("check-config", "etc/pudimd.yaml")
    assert out.returncode == 0, out.stderr
    assert "etc/pudimd.yaml: OK, 5 targets" in out.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("targets: [\n", ":2:1: invalid YAML"),
        (
            "targets:\n  - {name: a, probe: htp, target: x}\n",
            ":2:22: targets[0].probe: unknown probe type 'htp' (did you mean 'http'? installed: ",
        ),
        (
            "targets:\n  - {name: a, probe: tcp, target: 'h:1', intervl: 1s}\n",
            "targets[0].intervl: unknown field 'intervl'; did you mean 'interval'?",
        ),
        (
            "targets:\n  - {name: a, probe: tcp, target: 'h:1', interval: -1s}\n",
            "targets[0].interval: invalid duration '-1s': must not be negative",
        ),
        (
            "targets:\n  - {name: a, probe: tcp, target: 'h:1', cron: 'every day'}\n",
            "targets[0].cron: invalid cron expression 'every day'",
        ),
        (
            "targets:\n  - {name: a, probe: http, target: 'http://x', http: {password_file: /nonexistent}}\n",
            "targets[0].http.password_file: cannot read secret file '/nonexistent'",
        ),
        (
            "targets:\n  - {name: a, probe: http, target: 'http://x', http: {method: 7}}\n",
            "targets[0].http.method",
        ),
    ],
)
def test_check_config_rejects_bad_input_in_one_located_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = pudimd("check-config", str(path))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) >= 1 and all(line.startswith(f"{path}:") for line in lines), out.stderr
    assert expected in out.stderr
    assert "Traceback" not in out.stderr


def test_run_with_a_bad_config_exits_1_with_the_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  listen: 127.0.0.1:0\ntargets:\n  - {name: a, probe: tcp}\n")
    out = pudimd("run", "-c", str(path), "--state-dir", str(tmp_path / "s"))
    assert out.returncode == 1
    assert (
        out.stderr.strip()
        == f"pudimd: {path}:4:5: targets[0].target: missing required field 'target'"
    )


def test_run_with_an_unreachable_database_exits_1_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "pudimd.yaml"
    path.write_text(f"storage:\n  url: postgresql+asyncpg://pudimd:hunter2@127.0.0.1:{port}/x\n")
    out = pudimd("run", "-c", str(path), "--listen", f"127.0.0.1:{free_port()}")
    assert out.returncode == 1
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("pudimd: ")]
    assert line.startswith(
        f"pudimd: cannot open database postgresql+asyncpg://pudimd:***@127.0.0.1:{port}/x:"
    )
    assert "hunter2" not in out.stderr and "Traceback" not in out.stderr


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_run_on_a_taken_port_exits_1(tmp_path: Path, busy_port: int) -> None:
    path = tmp_path / "pudimd.yaml"
    path.write_text("targets: []\n")
    out = pudimd(
        "run",
        "-c",
        str(path),
        "--listen",
        f"127.0.0.1:{busy_port}",
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert out.returncode == 1
    assert f"pudimd: cannot listen on 127.0.0.1:{busy_port}:" in out.stderr
    assert "Traceback" not in out.stderr


def test_run_with_a_bad_listen_flag_is_a_usage_error(tmp_path: Path) -> None:
    out = pudimd("run", "-c", "etc/pudimd.yaml", "--listen", "nowhere")
    assert out.returncode == 2 and "--listen" in out.stderr


def test_probe_tcp_up_and_down(busy_port: int) -> None:
    up = pudimd("probe", "tcp", f"127.0.0.1:{busy_port}")
    assert up.returncode == 0, up.stdout + up.stderr
    assert up.stdout.startswith(f"UP tcp 127.0.0.1:{busy_port} in ")
    down = pudimd("probe", "tcp", f"127.0.0.1:{free_port()}", "--json")
    assert down.returncode == 1
    result = json.loads(down.stdout)
    assert result["success"] is False and "refused" in result["message"]


def test_probe_settings_are_validated_like_the_config() -> None:
    out = pudimd("probe", "http", "http://127.0.0.1:1/", "--set", "valid_status_codes=[200, oops]")
    assert out.returncode == 1
    assert out.stderr.startswith("pudimd: <command line>") and "valid_status_codes" in out.stderr


def test_plugins_lists_builtins_with_distribution_and_version() -> None:
    out = pudimd("plugins", "--json")
    assert out.returncode == 0
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["http"]["types"] == {"probe": ["http"]}
    assert rows["tcp"]["distribution"] == "pudimd" and rows["tcp"]["status"] == "ok"
    table = pudimd("plugins").stdout.splitlines()
    assert table[0].split() == ["NAME", "KIND", "TYPES", "DISTRIBUTION", "VERSION", "STATUS"]


def test_plugin_disabled_in_config_is_listed_and_its_type_refused(tmp_path: Path) -> None:
    path = tmp_path / "pudimd.yaml"
    path.write_text(
        "plugins: {disabled: [tcp]}\ntargets:\n  - {name: a, probe: tcp, target: 'h:1'}\n"
    )
    listing = pudimd("plugins", "-c", str(path))
    assert any(
        line.startswith("tcp ") and line.endswith("disabled")
        for line in listing.stdout.splitlines()
    )
    out = pudimd("check-config", str(path))
    assert out.returncode == 1 and "unknown probe type 'tcp'" in out.stderr
    installed = out.stderr.rsplit("installed: ", 1)[1].rstrip(")\n").split(", ")
    assert "http" in installed and "tcp" not in installed


def test_config_schema_covers_plugin_settings() -> None:
    out = pudimd("config", "schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert {"HttpSettings", "TcpSettings", "HttpTarget", "TcpTarget"} <= set(schema["$defs"])
    assert schema["$defs"]["HttpTarget"]["properties"]["probe"]["const"] == "http"


def test_config_reference_in_docs_is_up_to_date() -> None:
    out = pudimd("config", "schema", "--markdown")
    assert out.returncode == 0
    assert Path("docs/configuration.md").read_text() == out.stdout, "run `make docs`"


def test_probe_manual_in_docs_is_up_to_date() -> None:
    out = pudimd("config", "probes")
    assert out.returncode == 0
    assert "## http" in out.stdout and "## heartbeat" in out.stdout
    assert Path("docs/probes.md").read_text() == out.stdout, "run `make docs`"
