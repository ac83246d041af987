"""The shapes of the plugin types that register hooks return.

A plugin *type* is a class with a unique ``type`` name, a pydantic ``Settings`` model (a
subclass of :class:`pudimd.settings.PluginSettings`) and the async methods of its kind.
These Protocols are the whole contract; see ``docs/plugins.md`` for a worked example.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pudimd.results import ProbeResult
    from pudimd.settings import PluginSettings

__all__ = ["DiscoveryType", "NotifierType", "PluginType", "Probe", "ProbeType", "StrategyType"]


@runtime_checkable
class PluginType(Protocol):
    """What every plugin type has: a ``type`` name and a ``Settings`` model."""

    type: ClassVar[str]
    Settings: ClassVar[builtins.type[PluginSettings]]


class Probe(Protocol):
    """An instance of a probe type, made once per target (and again when the target's
    config changes), so it may prepare what every check reuses (an SSL context, a pool)."""

    async def check(self, target: str, timeout: float) -> ProbeResult:
        """Check ``target`` once and say how it went.

        ``timeout`` is the seconds this check may take; the scheduler also enforces it from
        outside and turns an overrun into a failed result.  Exceptions are caught by the
        core, counted and turned into a failed result, but a probe should return
        ``ProbeResult.failure(reason)`` for the failures it understands.
        """
        ...

    async def aclose(self) -> None:
        """Release what the instance holds.  Called when its target is removed or changed
        and at shutdown."""
        ...


class ProbeType(PluginType, Protocol):
    """A probe type: ``ProbeType(settings)`` makes a :class:`Probe`."""

    def __call__(self, settings: PluginSettings) -> Probe: ...


class NotifierType(PluginType, Protocol):
    """A notifier type (alert delivery); its methods are defined with alerting."""


class DiscoveryType(PluginType, Protocol):
    """A discovery backend type (target discovery); its methods are defined with discovery."""


class StrategyType(PluginType, Protocol):
    """A deployment strategy type; its methods are defined with deployments."""
