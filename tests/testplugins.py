"""Probe types for testing the core: they talk to nothing, so the scheduler's own behaviour
is what the tests see."""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import SecretStr

from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings, SecretFile


class EchoSettings(PluginSettings):
    succeed: bool = True
    delay: float = 0.0
    body_bytes: int = 0
    token: SecretStr | None = None
    token_file: SecretFile | None = None


class EchoProbe:
    """Succeeds (or not, per ``succeed``) after ``delay`` seconds; counts its calls."""

    type = "echo"
    Settings = EchoSettings
    calls: list[tuple[str, float]] = []

    def __init__(self, settings: EchoSettings) -> None:
        self.settings = settings
        self.closed = False

    async def check(self, target: str, timeout: float) -> ProbeResult:
        EchoProbe.calls.append((target, anyio.current_time()))
        if self.settings.delay:
            await anyio.sleep(self.settings.delay)
        values = {"BODY": b"x" * self.settings.body_bytes} if self.settings.body_bytes else {}
        return ProbeResult(success=self.settings.succeed, status=200, message=target, values=values)

    async def aclose(self) -> None:
        self.closed = True


class BrokenSettings(PluginSettings):
    mode: str = "raise"


class BrokenProbe:
    """Raises, hangs, or returns garbage, as ``mode`` says."""

    type = "broken"
    Settings = BrokenSettings

    def __init__(self, settings: BrokenSettings) -> None:
        self.mode = settings.mode

    async def check(self, target: str, timeout: float) -> Any:
        if self.mode == "raise":
            raise RuntimeError("kaboom")
        if self.mode == "hang":
            await anyio.sleep_forever()
        return "not a result"


class EchoPlugin:
    @hookimpl
    def pudimd_probe_types(self) -> list[type[Any]]:
        return [EchoProbe]


class BrokenPlugin:
    @hookimpl
    def pudimd_probe_types(self) -> list[type[Any]]:
        return [BrokenProbe]
