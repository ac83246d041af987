"""The shapes of the plugin types that register hooks return.

A plugin *type* is a class with a unique ``type`` name, a pydantic ``Settings`` model (a
subclass of :class:`pudimd.settings.PluginSettings`) and the async methods of its kind.
These Protocols are the whole contract; see ``docs/plugins.md`` for a worked example.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pudimd.alerting.notification import Notification
    from pudimd.blackbox import Metric
    from pudimd.results import ProbeResult
    from pudimd.settings import PluginSettings

__all__ = [
    "BlackboxProber",
    "DiscoveryType", "Notifier", "NotifierType", "PluginType", "Probe", "ProbeType",
    "StrategyType",
]


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


class Notifier(Protocol):
    """An instance of a notifier type, made once per integration of a receiver (one entry
    of its ``webhook_configs``, ``slack_configs``...) and again when that entry changes."""

    async def send(self, notification: Notification, timeout: float) -> str | None:
        """Deliver ``notification`` once.

        Called by the outbox dispatcher after the notification was written to the outbox;
        ``timeout`` is the seconds this attempt may take (the dispatcher also enforces it).
        Return None or a short detail worth recording with the attempt (the vendor's
        message id).  Raise :class:`pudimd.alerting.notification.DeliveryError` to say it
        failed (``retryable=False`` when trying again cannot help); any other exception
        counts as a retryable failure.  Render texts with ``notification.render(custom,
        default)`` so a broken custom template falls back to the default.
        """
        ...

    async def aclose(self) -> None:
        """Release what the instance holds (sessions).  Called when the receiver's config
        changes and at shutdown."""
        ...


class NotifierType(PluginType, Protocol):
    """A notifier type: ``NotifierType(settings)`` makes a :class:`Notifier`.

    ``Settings`` is a subclass of :class:`pudimd.settings.NotifierSettings` (it has
    ``send_resolved``).  Optional class attributes (looked up with getattr):

    - ``config_key``: the receiver field holding this type's entries (default
      ``<type>_configs``; the built-ins use Alertmanager's names, e.g. ``msteamsv2_configs``
      for ``teams``);
    - ``global_defaults``: a mapping from a key of the config's ``alerting.global`` block
      (Alertmanager's ``global``, e.g. ``smtp_smarthost``) to the Settings field it
      provides a default for.
    """

    def __call__(self, settings: PluginSettings) -> Notifier: ...


class DiscoveryType(PluginType, Protocol):
    """A discovery backend type (target discovery); its methods are defined with discovery."""


class StrategyType(PluginType, Protocol):
    """A deployment strategy type; its methods are defined with deployments."""


@runtime_checkable
class BlackboxProber(Protocol):
    """Optional members of a probe type that serves blackbox_exporter modules on ``/probe``.

    ``blackbox_prober`` names the blackbox prober kind (``http``, ``tcp``, ``dns``,
    ``icmp``, ``grpc``); the first probe type claiming a kind serves it.
    """

    blackbox_prober: ClassVar[str]

    @classmethod
    def from_blackbox(cls, prober: Mapping[str, Any]) -> PluginSettings:
        """This type's ``Settings`` equivalent to a blackbox module's prober block (the
        mapping under ``http:``, ``tcp:``... of the module; empty when the module has none),
        with blackbox's defaults where pudimd's differ.  Raise ``ValueError`` naming the
        field for a field that cannot be honoured, rather than ignoring it."""
        ...

    # Optional too (looked up with getattr): ``blackbox_target(target: str) -> str``, a
    # staticmethod rewriting the ``target`` query parameter the way blackbox does for this
    # prober before ``check()`` sees it (the http prober prefixes ``http://``).

    @staticmethod
    def blackbox_metrics(result: ProbeResult) -> list[Metric]:
        """The prober-specific metrics blackbox_exporter would export for ``result``
        (``probe_http_status_code``, ``probe_dns_answer_rrs``...), with blackbox's names,
        labels and help texts; not the shared ones the core adds (``probe_success``,
        ``probe_duration_seconds``, ``probe_dns_lookup_time_seconds``,
        ``probe_ip_protocol``, ``probe_ip_addr_hash``)."""
        ...
