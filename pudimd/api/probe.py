"""``GET /probe?target=&module=[&debug=true]``: blackbox_exporter's probe endpoint.

The modules are the config's (:attr:`pudimd.config.ConfigBase.blackbox_modules`); the
runner and its probe instances are kept until the daemon's config object changes (a
reload), then made anew.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from aiohttp import web

from pudimd.blackbox.modules import Module, probe_timeout
from pudimd.blackbox.render import CONTENT_TYPE, debug_page, render
from pudimd.blackbox.runner import ModuleError, Runner

if TYPE_CHECKING:
    from pudimd.config import ConfigBase
    from pudimd.daemon import Daemon

__all__ = ["ProbeEndpoint", "close_runner"]

_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


class ProbeEndpoint:
    """The ``/probe`` handler of one daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._config: ConfigBase | None = None
        self._runner: Runner | None = None

    @property
    def current_runner(self) -> Runner | None:
        """The runner made so far, if any (without making one)."""
        return self._runner

    def runner(self) -> Runner | None:
        config = self.daemon.config
        if config is None:
            return None
        if config is not self._config or self._runner is None:
            modules = config.blackbox_modules
            if self._runner is None:
                self._runner = Runner(self.daemon.host, modules)
            else:
                stale = self._runner.reset(modules)
                self.daemon.retire_probes(stale)
            self._config = config
        return self._runner

    async def handle(self, request: web.Request) -> web.Response:
        runner = self.runner()
        if runner is None:
            return web.Response(status=503, text="pudimd is not ready\n")
        query = request.query
        name = query.get("module") or "http_2xx"
        try:
            module = runner.module(name)
        except ModuleError as exc:
            return web.Response(status=exc.status, text=f"{exc.text}\n")
        target = query.get("target", "")
        if not target:
            return web.Response(status=400, text="Target parameter is missing\n")
        try:
            timeout = probe_timeout(request.headers.get(_TIMEOUT_HEADER), module.timeout)
        except ValueError as exc:
            text = f"Failed to parse timeout from Prometheus header: {exc}\n"
            return web.Response(status=500, text=text)
        try:
            outcome = await runner.run(module, target, timeout)
        except ModuleError as exc:
            return web.Response(status=exc.status, text=f"{exc.text}\n")
        if query.get("debug", "").lower() == "true":
            page = debug_page(outcome.logs, outcome.metrics, _module_yaml(module))
            return web.Response(text=page)
        body = render(outcome.metrics).encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _module_yaml(module: Module) -> str:
    import yaml_rs

    text: str = yaml_rs.dumps(dict(module.raw))
    text = text.removeprefix("---\n")
    return text if text.endswith("\n") else f"{text}\n"


async def close_runner(endpoint: ProbeEndpoint) -> None:
    """Close the probe instances of ``endpoint`` (at shutdown)."""
    runner = endpoint.current_runner
    if runner is not None:
        stale = runner.reset({})
        with anyio.CancelScope(shield=True):
            await endpoint.daemon.close_probes(stale)
