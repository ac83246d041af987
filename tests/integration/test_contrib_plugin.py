"""The example third-party plugin in contrib/, installed the way a user would install
``pudimd-foo`` from PyPI, then used from a config file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PUDIMD
from tests.integration.daemon_harness import running_daemon

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT / "contrib" / "pudimd-example"),
        ],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def with_plugin(site: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return dict(os.environ)


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PUDIMD, *args], capture_output=True, text=True, env=env, timeout=60)


def test_installed_plugin_is_listed_with_its_distribution(with_plugin: dict[str, str]) -> None:
    rows = {
        row["name"]: row for row in json.loads(run("plugins", "--json", env=with_plugin).stdout)
    }
    example = rows["example"]
    assert example["distribution"] == "pudimd-example" and example["version"] == "0.1.0"
    assert example["types"] == {"probe": ["file_age"]} and example["status"] == "ok"


def test_installed_plugin_probe_type_works_from_a_config_file(
    with_plugin: dict[str, str], tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh.txt"
    fresh.write_text("hello")
    config = tmp_path / "pudimd.yaml"
    config.write_text(
        "targets:\n"
        f"  - {{name: fresh, probe: file_age, target: '{fresh}', interval: 200ms, file_age: {{max_age: 1h}}}}\n"
        f"  - {{name: missing, probe: file_age, target: '{tmp_path / 'nope'}', interval: 200ms}}\n"
    )
    checked = run("check-config", str(config), env=with_plugin)
    assert checked.returncode == 0, checked.stderr
    probe = run("probe", "file_age", str(fresh), "--set", "min_size=3", env=with_plugin)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    schema = json.loads(run("config", "schema", env=with_plugin).stdout)
    assert "FileAgeTarget" in schema["$defs"]
    for daemon in running_daemon(config, tmp_path / "state"):
        daemon.wait_metric("pudimd_target_up", lambda v: v == 1, target="fresh", probe="file_age")
        daemon.wait_metric("pudimd_target_up", lambda v: v == 0, target="missing", probe="file_age")


def test_without_the_plugin_its_type_is_unknown(tmp_path: Path) -> None:
    config = tmp_path / "pudimd.yaml"
    config.write_text("targets:\n  - {name: f, probe: file_age, target: /tmp}\n")
    out = run("check-config", str(config), env=dict(os.environ))
    assert out.returncode == 1 and "unknown probe type 'file_age'" in out.stderr
