from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pudimd.hookspecs import hookimpl
from pudimd.plugins import PluginError, PluginHost, await_me_maybe
from tests.testplugins import EchoPlugin, EchoProbe

ROOT = Path(__file__).resolve().parents[2]


def test_builtin_plugins_load_through_entry_points() -> None:
    host = PluginHost()
    host.load_entry_points()
    for name in ("http", "tcp"):
        info = host.infos[name]
        assert info.error is None, info.error
        assert info.distribution == "pudimd"
        assert info.module == f"pudimd_plugins.probes.{name}"
    assert {"http", "tcp"} <= set(host.types("probe"))
    assert host.owner_of("probe", "http") == "http"


def test_disabled_plugin_is_not_loaded() -> None:
    host = PluginHost(disabled=["tcp"])
    host.load_entry_points()
    assert host.infos["tcp"].disabled
    assert "tcp" not in host.types("probe")


def test_two_plugins_claiming_one_type_name_both_named() -> None:
    class Again:
        @hookimpl
        def pudimd_probe_types(self) -> list[type[Any]]:
            return [EchoProbe]

    host = PluginHost()
    host.register(EchoPlugin(), "first")
    host.register(Again(), "second")
    with pytest.raises(
        PluginError, match=r"'echo' is provided by both plugin 'first' and plugin 'second'"
    ):
        host.types("probe")


def test_type_without_settings_is_refused() -> None:
    class NoSettings:
        type = "nosettings"

    class Plugin:
        @hookimpl
        def pudimd_probe_types(self) -> list[type[Any]]:
            return [NoSettings]

    host = PluginHost()
    host.register(Plugin(), "bad")
    with pytest.raises(PluginError, match=r"bad.*Settings"):
        host.types("probe")


@pytest.mark.anyio
async def test_event_hook_failures_are_isolated_and_counted() -> None:
    errors: list[tuple[str, str]] = []
    seen: list[str] = []

    class Good:
        @hookimpl
        async def pudimd_startup(self, daemon: Any) -> str:
            seen.append("good")
            return "ok"

    class Bad:
        @hookimpl
        def pudimd_startup(self, daemon: Any) -> None:
            raise ValueError("nope")

    class Slow:
        @hookimpl
        async def pudimd_startup(self, daemon: Any) -> None:
            import anyio

            await anyio.sleep(10)

    host = PluginHost(on_error=lambda p, h, e: errors.append((p, h)), hook_timeout=0.2)
    host.register(Good(), "good")
    host.register(Bad(), "bad")
    host.register(Slow(), "slow")
    results = await host.call_event("pudimd_startup", daemon=None)
    assert results == ["ok"]
    assert sorted(errors) == [("bad", "pudimd_startup"), ("slow", "pudimd_startup")]


@pytest.mark.anyio
async def test_await_me_maybe_accepts_values_callables_and_awaitables() -> None:
    async def coro() -> int:
        return 3

    assert await await_me_maybe(1) == 1
    assert await await_me_maybe(lambda: 2) == 2
    assert await await_me_maybe(coro) == 3
    assert await await_me_maybe(coro()) == 3


def test_plugin_that_fails_to_import_is_reported_not_fatal(tmp_path: Path) -> None:
    """A real (if minimal) installed distribution whose entry point cannot be imported."""
    dist = tmp_path / "pudimd_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pudimd-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pudimd]\nbroken = pudimd_broken_mod\n")
    (tmp_path / "pudimd_broken_mod.py").write_text("raise ImportError('missing libfoo')\n")
    out = subprocess.run(
        [sys.executable, "-m", "pudimd", "plugins", "-c", "/nonexistent.yaml"],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    broken = next(line for line in out.stdout.splitlines() if line.startswith("broken "))
    assert "pudimd-broken" in broken and "1.0" in broken
    assert "error: cannot load pudimd_broken_mod: ImportError: missing libfoo" in broken
    http = next(line for line in out.stdout.splitlines() if line.startswith("http "))
    assert "probe" in http and "ok" in http


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_plugins() -> None:
    offenders = []
    for path in sorted((ROOT / "pudimd").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in {"plugins", "pudimd_plugins"} or top.startswith("pudimd_"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []
    assert _imports(ROOT / "plugins/pudimd_plugins/probes/http.py"), "the scan reads real imports"


@pytest.mark.anyio
async def test_trace_logs_every_event_hook_call_with_its_duration(capsys: pytest.CaptureFixture[str]) -> None:
    from pudimd.log import configure_logging

    class Plugin:
        @hookimpl
        def pudimd_startup(self, daemon: Any) -> None:
            return None

    configure_logging("json", "info")
    host = PluginHost()
    host.register(Plugin(), "traced")
    await host.call_event("pudimd_startup", daemon=None)
    assert "hook call" not in capsys.readouterr().err
    host.trace = True
    await host.call_event("pudimd_startup", daemon=None)
    line = capsys.readouterr().err
    assert '"event": "hook call"' in line and '"plugin": "traced"' in line and '"seconds"' in line
