"""Every extension point of pudimd, in one place.

A plugin is a module (or object) with functions decorated ``@hookimpl`` and named like the
specs below; it is registered through the ``pudimd`` entry-point group::

    [project.entry-points.pudimd]
    foo = "pudimd_foo"

Hooks come in two families.

*Register hooks* (``pudimd_*_types``) are called once, after every plugin is loaded, and
return a list of plugin types (classes).  Two plugins claiming the same type name is a
start-up error naming both.

*Event hooks* (``pudimd_startup``, ``pudimd_shutdown``, ``pudimd_result``) may return
``None``, a value, or an awaitable; the core awaits what is returned.  Each implementation is
called on its own, under a timeout (``plugins.hook_timeout``); an exception or a timeout is
logged with the plugin's name, counted in ``pudimd_plugin_errors_total{plugin,hook}`` and
never stops the daemon or the other implementations.

Heavy imports belong inside the functions (or under ``TYPE_CHECKING``): plugins are loaded
by every ``pudimd`` command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pudimd.daemon import Daemon
    from pudimd.results import ProbeResult
    from pudimd.scheduler import Job

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("pudimd")
hookimpl = pluggy.HookimplMarker("pudimd")


# --------------------------------------------------------------------------------------
# Registration: called once after all plugins are loaded.
# --------------------------------------------------------------------------------------


@hookspec
def pudimd_probe_types() -> list[type[Any]]:  # type: ignore[empty-body]
    """Return the probe types this plugin provides.

    Called once at start-up (and by ``pudimd plugins``, ``check-config``, ``config schema``).
    Takes no arguments.  Returns a list of classes, each with:

    - ``type``: the name targets select it by (``probe: http``); lowercase letters, digits
      and underscores, unique across all plugins;
    - ``Settings``: a subclass of :class:`pudimd.settings.PluginSettings`, the schema of the
      block under the type's name in a target (``http: {method: POST}``);
    - ``__init__(settings)`` and ``async check(target: str, timeout: float) ->
      ProbeResult``, and optionally ``async aclose()``; see :class:`pudimd.contracts.Probe`.
    """


@hookspec
def pudimd_notifier_types() -> list[type[Any]]:  # type: ignore[empty-body]
    """Return the notifier types this plugin provides.

    Called once at start-up.  Takes no arguments.  Returns a list of classes, each with:

    - ``type``: the name (``webhook``, ``slack``...), unique across all plugins;
    - ``Settings``: a subclass of :class:`pudimd.settings.NotifierSettings`, the schema of
      one entry under the type's ``config_key`` in a receiver (``webhook_configs: [{url:
      ...}]``);
    - ``__init__(settings)`` and ``async send(notification, timeout) -> str | None``, and
      optionally ``async aclose()``; optionally ``config_key`` and ``global_defaults``.
      See :class:`pudimd.contracts.Notifier` and :class:`pudimd.contracts.NotifierType`.
    """


@hookspec
def pudimd_discovery_types() -> list[type[Any]]:  # type: ignore[empty-body]
    """Return the service-discovery types this plugin provides.

    Called once at start-up.  Takes no arguments.  Returns a list of classes with a unique
    ``type`` name and a ``Settings`` model.  Their watch methods are specified with discovery.
    """


@hookspec
def pudimd_strategy_types() -> list[type[Any]]:  # type: ignore[empty-body]
    """Return the deployment strategy types this plugin provides.

    Called once at start-up.  Takes no arguments.  Returns a list of classes with a unique
    ``type`` name and a ``Settings`` model.  Their step methods are specified with
    deployments.
    """


# --------------------------------------------------------------------------------------
# Daemon life cycle.
# --------------------------------------------------------------------------------------


@hookspec
def pudimd_startup(daemon: Daemon) -> Any:
    """Called once the daemon is up: config loaded, storage open, HTTP listener bound,
    scheduler running, just before it reports READY to systemd.

    ``daemon``: the running :class:`pudimd.daemon.Daemon` (``daemon.config`` is the
    current config).  Return nothing or an awaitable; the core awaits it under
    ``plugins.hook_timeout``.
    """


@hookspec
def pudimd_shutdown(daemon: Daemon) -> Any:
    """Called when the daemon stops (SIGTERM, SIGINT), after in-flight checks are cancelled
    and before storage is closed.

    ``daemon``: the stopping daemon.  Return nothing or an awaitable; the core awaits it
    under ``plugins.hook_timeout`` (and within the 10 s stop budget).
    """


@hookspec
def pudimd_api_routes(daemon: Daemon) -> Any:
    """Add HTTP endpoints to the daemon's listener.

    Called once when the HTTP application is built, before the daemon listens (and again
    by each test app built for ``daemon``).  ``daemon``: the daemon the routes serve.
    Return a list of aiohttp route definitions (``aiohttp.web.get("/ping/{key}",
    handler)``, ``web.post(...)``, ``web.route("*", ...)``), or None.  Called synchronously:
    build the list, do no I/O.  A raise is logged with the plugin's name, counted, and the
    plugin's routes are left out; a route that clashes with one the core or another plugin
    already serves is an error of the same kind.
    """


# --------------------------------------------------------------------------------------
# Per check.
# --------------------------------------------------------------------------------------


@hookspec
def pudimd_result(job: Job, result: ProbeResult) -> Any:
    """Called after every check, with the result already in the live state and queued for
    storage.

    ``job``: the scheduled target (``job.target`` is its validated config: ``name``,
    ``probe``, ``target``, ``labels``...; ``job.state`` its live state).
    ``result``: the :class:`pudimd.results.ProbeResult` of this check.
    Return nothing or an awaitable (a third-party sink may ship the result elsewhere); the
    core awaits it under ``plugins.hook_timeout``.  Keep it quick: it runs for every check.
    """
