"""The aiohttp application and how it is served inside the daemon's task group."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from aiohttp import web
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST

from pudimd import __version__
from pudimd.api.probe import ProbeEndpoint, close_runner

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

__all__ = ["ListenError", "make_app", "serve"]

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")


class ListenError(Exception):
    """The listener could not bind its address."""


async def _index(request: web.Request) -> web.Response:
    text = (
        f"pudimd {__version__}\n\n"
        "/metrics      Prometheus metrics\n"
        "/-/healthy    200 while the process runs\n"
        "/-/ready      200 once checks are scheduled\n"
        "/-/reload     POST: reload the config file\n"
        "/probe        blackbox_exporter probes: ?target=...&module=...[&debug=true]\n"
        "/api/v2/      Alertmanager API v2 (alerts, silences, status, receivers)\n"
        "/api/v1/alertmanager/webhook  POST: an Alertmanager's webhook notifications\n"
    )
    return web.Response(text=text)


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[DAEMON].metrics
    rows = metrics.snapshot()
    # Formatting thousands of series is CPU work: off the event loop, so checks stay on time.
    body = await anyio.to_thread.run_sync(metrics.render, rows)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="pudimd is Healthy.\n")


async def _ready(request: web.Request) -> web.Response:
    if request.app[DAEMON].ready:
        return web.Response(text="pudimd is Ready.\n")
    return web.Response(status=503, text="pudimd is not ready.\n")


async def _reload(request: web.Request) -> web.Response:
    error = await request.app[DAEMON].reload(source="http")
    if error is None:
        return web.Response(text="config reloaded\n")
    return web.Response(status=500, text=f"failed to reload config: {error}\n")


def make_app(daemon: Daemon) -> web.Application:
    """The application serving every HTTP surface of ``daemon``."""
    app = web.Application()
    app[DAEMON] = daemon
    from pudimd.auth.install import install as install_auth

    install_auth(app, daemon)
    app.router.add_get("/", _index)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    app.router.add_post("/-/reload", _reload)
    app.router.add_put("/-/reload", _reload)
    from pudimd.api import actionlinks, events, specroute
    from pudimd.api.alertingedit import alerting_edit_routes
    from pudimd.api.alertmanager import alertmanager_routes
    from pudimd.api.amwebhook import webhook_routes
    from pudimd.api.backups import backups_routes
    from pudimd.api.configedit import EditContext, config_routes
    from pudimd.api.notify import notify_routes
    from pudimd.api.oncall import oncall_routes
    from pudimd.api.reports import reports_routes
    from pudimd.api.results import results_routes
    from pudimd.api.status import status_routes
    from pudimd.api.targets import targets_routes
    from pudimd.api.templates import templates_routes
    from pudimd.api.versions import versions_routes

    app.router.add_routes(alertmanager_routes(daemon))
    app.router.add_routes(webhook_routes(daemon))
    app.router.add_routes(notify_routes(daemon))
    app.router.add_routes(oncall_routes(daemon))
    app.router.add_routes(reports_routes(daemon))
    app.router.add_routes(versions_routes(daemon))
    app.router.add_routes(backups_routes(daemon))
    app.router.add_routes(templates_routes(daemon))
    edits = EditContext(daemon)
    app.router.add_routes(targets_routes(daemon, edits))
    app.router.add_routes(config_routes(edits))
    app.router.add_routes(alerting_edit_routes(daemon, edits))
    actionlinks.install(app, daemon)
    events.install(app, daemon)
    app.router.add_routes(status_routes(daemon))
    app.router.add_routes(results_routes(daemon))
    specroute.install(app)  # after every /api/v1 route: the spec test walks them all
    probe = ProbeEndpoint(daemon)
    app.router.add_get("/probe", probe.handle)
    app.on_cleanup.append(lambda _app: close_runner(probe))
    for plugin, routes in daemon.host.call_sync("pudimd_api_routes", daemon=daemon):
        try:
            app.router.add_routes(routes)
        except Exception as exc:  # a clash (RuntimeError) or not a route (TypeError...)
            daemon.host.record_error(plugin, "pudimd_api_routes", exc)
    return app


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``task_status.started(port)`` reports
    the bound port (useful with port 0)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound = runner.addresses[0][1] if runner.addresses else port
        task_status.started(bound)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
