"""The plugin host: loads plugins from the ``pudimd`` entry-point group, collects the types
they register, and calls their hooks in isolation.

Built-in plugins and third-party ones take the same path: each entry point in the group is a
module (or object) with ``@hookimpl`` functions, registered under the entry point's name.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import anyio
import pluggy
import structlog

from pudimd import hookspecs
from pudimd.settings import PluginSettings

__all__ = ["KINDS", "PluginError", "PluginHost", "PluginInfo", "await_me_maybe"]

ENTRY_POINT_GROUP = "pudimd"
log = structlog.get_logger("pudimd.plugins")

KINDS: dict[str, str] = {
    "probe": "pudimd_probe_types",
    "notifier": "pudimd_notifier_types",
    "discovery": "pudimd_discovery_types",
    "strategy": "pudimd_strategy_types",
}
"""Plugin kind -> the register hook that returns its types."""

_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = frozenset(
    {"name", "probe", "target", "interval", "cron", "timezone", "timeout", "labels", "enabled"}
)

ErrorCallback = Callable[[str, str, BaseException], None]


class PluginError(Exception):
    """A plugin broke a rule of the host (two types with one name, a type without
    ``Settings``...).  The message names the plugin(s)."""


@dataclass
class PluginInfo:
    """What ``pudimd plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    types: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    disabled: bool = False

    @property
    def kinds(self) -> list[str]:
        return sorted(self.types)


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if awaitable, call it if callable (then await that), else return it.

    Lets plugin authors write plain functions where they can (datasette's idiom)."""
    if callable(value) and not inspect.isclass(value):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value


class PluginHost:
    """Loads plugins and hands out the types and hooks they provide.

    ``disabled``: plugin names not to load (``plugins.disabled`` in the config).
    ``on_error(plugin, hook, exc)``: called for every plugin failure (the daemon counts them
    in ``pudimd_plugin_errors_total``).
    """

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        on_error: ErrorCallback | None = None,
        hook_timeout: float = 10.0,
    ) -> None:
        self.pm = pluggy.PluginManager("pudimd")
        self.pm.add_hookspecs(hookspecs)
        self.disabled = set(disabled)
        self.on_error = on_error
        self.hook_timeout = hook_timeout
        self.trace = False
        """Log every event-hook call with its plugin and duration (``plugins.trace``)."""
        self.infos: dict[str, PluginInfo] = {}
        self._types: dict[str, dict[str, type[Any]]] | None = None

    # -- loading ---------------------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load and register every plugin in the entry-point ``group``.

        A plugin that fails to import is recorded (``pudimd plugins`` shows the error) and
        skipped; a disabled one is recorded and not imported at all."""
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            self._load_entry_point(ep)

    def _load_entry_point(self, ep: EntryPoint) -> None:
        dist = ep.dist
        info = PluginInfo(
            name=ep.name,
            module=ep.value,
            distribution=dist.name if dist else None,
            version=dist.version if dist else None,
        )
        if ep.name in self.infos:
            other = self.infos[ep.name]
            info.error = (
                f"plugin name {ep.name!r} is also used by {other.module}"
                f" ({other.distribution}); this one was not loaded"
            )
            self.infos[f"{ep.name} ({ep.value})"] = info
            return
        self.infos[ep.name] = info
        if ep.name in self.disabled:
            info.disabled = True
            return
        try:
            plugin = ep.load()
        except Exception as exc:
            info.error = f"cannot load {ep.value}: {type(exc).__name__}: {exc}"
            log.error("plugin failed to load", plugin=ep.name, error=info.error)
            return
        self.register(plugin, ep.name, info=info)

    def register(self, plugin: object, name: str, *, info: PluginInfo | None = None) -> None:
        """Register ``plugin`` under ``name`` (entry points use this; so can tests and
        embedding code)."""
        if info is None:
            info = self.infos.setdefault(
                name, PluginInfo(name=name, module=getattr(plugin, "__name__", repr(plugin)))
            )
        if name in self.disabled:
            info.disabled = True
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validation: unknown hook, bad signature...
            info.error = f"cannot register: {exc}"
            log.error("plugin failed to register", plugin=name, error=info.error)
            return
        self._types = None

    # -- register hooks --------------------------------------------------------------

    def types(self, kind: str) -> dict[str, type[Any]]:
        """The registered types of ``kind`` (``probe``, ``notifier``...), by type name.

        Raises PluginError when two plugins claim one name or a type is malformed."""
        if self._types is None:
            self._types = self._collect_types()
        return self._types[kind]

    def _collect_types(self) -> dict[str, dict[str, type[Any]]]:
        collected: dict[str, dict[str, type[Any]]] = {}
        owners: dict[tuple[str, str], str] = {}
        for kind, hook_name in KINDS.items():
            found: dict[str, type[Any]] = {}
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin = impl.plugin_name
                try:
                    returned = impl.function() or []
                except Exception as exc:
                    self.record_error(plugin, hook_name, exc)
                    self.infos[plugin].error = f"{hook_name} raised {type(exc).__name__}: {exc}"
                    continue
                for cls in returned:
                    self._check_type(plugin, kind, cls)
                    if cls.type in found:
                        raise PluginError(
                            f"{kind} type {cls.type!r} is provided by both plugin "
                            f"{owners[(kind, cls.type)]!r} and plugin {plugin!r}; "
                            "disable one of them with plugins.disabled"
                        )
                    found[cls.type] = cls
                    owners[(kind, cls.type)] = plugin
                    if plugin in self.infos:
                        self.infos[plugin].types.setdefault(kind, []).append(cls.type)
            collected[kind] = dict(sorted(found.items()))
        return collected

    @staticmethod
    def _check_type(plugin: str, kind: str, cls: Any) -> None:
        name = getattr(cls, "type", None)
        if not isinstance(name, str) or not _TYPE_NAME.match(name):
            raise PluginError(
                f"plugin {plugin!r} returned a {kind} type {cls!r} whose `type` must be a name "
                "of lowercase letters, digits and underscores"
            )
        if kind == "probe" and name in _RESERVED:
            raise PluginError(f"plugin {plugin!r}: probe type name {name!r} is reserved")
        settings = getattr(cls, "Settings", None)
        if not (inspect.isclass(settings) and issubclass(settings, PluginSettings)):
            raise PluginError(
                f"plugin {plugin!r}: {kind} type {name!r} needs a `Settings` class derived "
                "from pudimd.settings.PluginSettings"
            )

    def owner_of(self, kind: str, type_name: str) -> str:
        """Name of the plugin providing ``type_name`` of ``kind`` (for errors and metrics)."""
        self.types(kind)
        for info in self.infos.values():
            if type_name in info.types.get(kind, []):
                return info.name
        return type_name

    # -- event hooks -----------------------------------------------------------------

    def has_impls(self, hook_name: str) -> bool:
        """Whether any plugin implements ``hook_name`` (lets hot paths skip the call)."""
        return bool(getattr(self.pm.hook, hook_name).get_hookimpls())

    async def call_event(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of event hook ``hook_name``, each in isolation.

        Each implementation runs under ``hook_timeout``; what it returns is awaited.
        Exceptions and timeouts are logged with the plugin's name and reported to
        ``on_error``; the other implementations still run.  Returns the successful
        results."""
        results: list[Any] = []
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            call = functools.partial(impl.function, **{n: kwargs[n] for n in impl.argnames})
            ok, value = await self.isolate(impl.plugin_name, hook_name, call, self.hook_timeout)
            if ok and value is not None:
                results.append(value)
        return results

    def call_sync(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of the synchronous hook ``hook_name``, each in
        isolation, and return ``(plugin_name, value)`` for those that returned something.

        Used for hooks called while something is being built (``pudimd_api_routes``): no
        timeout, but a raise is logged with the plugin's name, counted, and skipped."""
        results: list[tuple[str, Any]] = []
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            try:
                value = impl.function(**{n: kwargs[n] for n in impl.argnames})
            except Exception as exc:
                self.record_error(impl.plugin_name, hook_name, exc)
                continue
            if value is not None:
                results.append((impl.plugin_name, value))
        return results

    async def isolate(
        self,
        plugin: str,
        hook: str,
        call: Callable[[], Any | Awaitable[Any]],
        timeout: float,
    ) -> tuple[bool, Any]:
        """Run ``call`` (sync or async) for ``plugin`` under ``timeout``.

        Returns ``(True, value)`` or ``(False, exception)``: a raise or a timeout is logged
        with the plugin's name and reported to ``on_error``, never propagated (cancellation
        of the caller still is)."""
        started = time.perf_counter() if self.trace else 0.0
        try:
            with anyio.fail_after(timeout):
                value = await await_me_maybe(call)
            if self.trace:
                log.info(
                    "hook call", plugin=plugin, hook=hook, seconds=time.perf_counter() - started
                )
            return True, value
        except TimeoutError as exc:
            error: Exception = TimeoutError(f"did not return within {timeout:g}s")
            error.__cause__ = exc
        except Exception as exc:
            error = exc
        self.record_error(plugin, hook, error)
        return False, error

    def record_error(self, plugin: str, hook: str, exc: BaseException) -> None:
        """Log a failure of ``plugin`` in ``hook`` with its name and report it to ``on_error``."""
        log.error("plugin error", plugin=plugin, hook=hook, error=f"{type(exc).__name__}: {exc}")
        if self.on_error is not None:
            self.on_error(plugin, hook, exc)
