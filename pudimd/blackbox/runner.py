"""Running a blackbox module: the probe type serving its prober, one probe instance per
module (reused by every request until the config changes), and the shared metrics.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from pudimd.blackbox import Metric
from pudimd.blackbox.modules import Module
from pudimd.results import ProbeResult

if TYPE_CHECKING:
    from pudimd.contracts import Probe
    from pudimd.plugins import PluginHost

__all__ = ["ModuleError", "Outcome", "Runner", "ip_hash", "shared_metrics"]


class ModuleError(Exception):
    """A module that cannot be run: the HTTP status and text to answer with."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text

    def __repr__(self) -> str:
        return f"ModuleError(status={self.status!r}, text={self.text!r})"


def ip_hash(ip: str) -> float:
    """blackbox's ``probe_ip_addr_hash``: FNV-1a (32 bit) of the address bytes."""
    try:
        packed = ipaddress.ip_address(ip).packed
    except ValueError:
        return 0.0
    h = 0x811C9DC5
    for byte in packed:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return float(h)


_SUCCESS = "Displays whether or not the probe was a success"
_DURATION = "Returns how long the probe took to complete in seconds"
_DNS = "Returns the time taken for probe dns lookup in seconds"
_IP_PROTOCOL = "Specifies whether probe ip protocol is IP4 or IP6"
_IP_HASH = "Specifies the hash of IP address. It's useful to detect if the IP address changes."


def shared_metrics(result: ProbeResult, duration: float) -> list[Metric]:
    """The metrics every blackbox prober exports.

    The address is the one the probe talked to: ``values["SERVER_IP"]`` where ``IP`` means
    something else (the dns probe's first answer), else ``values["IP"]``.  The lookup time
    is the ``dns`` phase, or ``resolve`` for probes whose ``dns`` would be ambiguous."""
    values = result.values
    ip = values.get("SERVER_IP") or values.get("IP")
    lookup = result.phases.get("dns")
    if lookup is None:
        lookup = result.phases.get("resolve", 0.0)
    return [
        Metric("probe_success", _SUCCESS, 1.0 if result.success else 0.0),
        Metric("probe_duration_seconds", _DURATION, duration),
        Metric("probe_dns_lookup_time_seconds", _DNS, lookup),
        Metric("probe_ip_protocol", _IP_PROTOCOL, result.metrics.get("ip_protocol", 0.0)),
        Metric("probe_ip_addr_hash", _IP_HASH, ip_hash(ip) if isinstance(ip, str) else 0.0),
    ]


class Outcome:
    """What one ``/probe`` request produced."""

    __slots__ = ("_log", "metrics", "result")

    def __init__(self, result: ProbeResult, metrics: list[Metric], log: _Log) -> None:
        self.result = result
        self.metrics = metrics
        self._log = log

    @property
    def logs(self) -> list[str]:
        """The probe's log lines (formatted now: only ``debug=true`` reads them)."""
        return self._log.lines


def _logfmt(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _Log:
    """Log lines in blackbox's logfmt layout, for ``debug=true``: recorded cheaply on every
    probe, formatted only when a debug page asks for :attr:`lines`."""

    def __init__(self, module: str, target: str) -> None:
        self.module = module
        self.target = target
        self.records: list[tuple[float, str, str, dict[str, object]]] = []

    def __call__(self, level: str, msg: str, **fields: object) -> None:
        self.records.append((time.time(), level, msg, fields))

    @property
    def lines(self) -> list[str]:
        prefix = f"module={_logfmt(self.module)} target={_logfmt(self.target)}"
        out = []
        for at, level, msg, fields in self.records:
            ts = datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds")
            extra = "".join(f" {k}={_logfmt(v)}" for k, v in fields.items())
            out.append(
                f"ts={ts.replace('+00:00', 'Z')} caller=pudimd {prefix} level={level} "
                f"msg={_logfmt(msg)}{extra}"
            )
        return out


class _Served:
    """A module made ready: its probe type, instance and metric function (or the error)."""

    __slots__ = ("error", "metrics", "plugin", "probe", "target")

    def __init__(
        self,
        probe: Probe | None = None,
        metrics: Callable[[ProbeResult], list[Metric]] | None = None,
        plugin: str = "",
        error: ModuleError | None = None,
        target: Callable[[str], str] | None = None,
    ) -> None:
        self.probe = probe
        self.metrics = metrics
        self.plugin = plugin
        self.error = error
        self.target = target  # the type's optional ``blackbox_target``: target rewriting


class Runner:
    """Serves blackbox modules from the probe types registered with ``host``.

    Instances are made on a module's first use and reused; :meth:`reset` (called when the
    config changes) drops them and returns them for closing."""

    def __init__(self, host: PluginHost, modules: Mapping[str, Module]) -> None:
        self.host = host
        self.modules = dict(modules)
        self._served: dict[str, _Served] = {}

    def reset(self, modules: Mapping[str, Module]) -> list[Probe]:
        """Switch to ``modules``; returns the instances to close."""
        old = [s.probe for s in self._served.values() if s.probe is not None]
        self.modules = dict(modules)
        self._served = {}
        return old

    def probers(self) -> dict[str, type[Any]]:
        """The probe type serving each blackbox prober kind (the type named after the kind
        first, else the first by name)."""
        found: dict[str, type[Any]] = {}
        for name, cls in self.host.types("probe").items():
            kind = getattr(cls, "blackbox_prober", None)
            if isinstance(kind, str) and (kind not in found or name == kind):
                found[kind] = cls
        return found

    def _serve(self, module: Module) -> _Served:
        served = self._served.get(module.name)
        if served is None:
            served = self._prepare(module)
            self._served[module.name] = served
        return served

    def _prepare(self, module: Module) -> _Served:
        cls = self.probers().get(module.prober)
        if cls is None:
            return _Served(error=ModuleError(400, f"Unknown prober {module.prober!r}"))
        plugin = self.host.owner_of("probe", cls.type)
        try:
            settings = cls.from_blackbox(module.block)
            probe = cls(settings)
        except ValueError as exc:
            text = f"Module {module.name!r} cannot be served by pudimd: {exc}"
            return _Served(error=ModuleError(400, text))
        return _Served(
            probe, cls.blackbox_metrics, plugin, target=getattr(cls, "blackbox_target", None)
        )

    def module(self, name: str) -> Module:
        found = self.modules.get(name)
        if found is None:
            raise ModuleError(400, f"Unknown module {name!r}")
        return found

    async def run(self, module: Module, target: str, timeout: float) -> Outcome:
        """Probe ``target`` with ``module``; raises ModuleError when it cannot be run."""
        served = self._serve(module)
        if served.error is not None:
            raise served.error
        assert served.probe is not None and served.metrics is not None
        if served.target is not None:
            target = served.target(target)
        log = _Log(module.name, target)
        log("info", "Beginning probe", probe=module.prober, timeout_seconds=timeout)
        start = time.perf_counter()
        result: ProbeResult | None = None
        try:
            with anyio.move_on_after(timeout + 0.05):
                result = await served.probe.check(target, timeout)
        except Exception as exc:
            self.host.record_error(served.plugin, "check", exc)
            result = ProbeResult.failure(f"probe raised {type(exc).__name__}: {exc}")
        if result is None:
            result = ProbeResult.failure(f"timeout after {timeout:g}s")
        duration = time.perf_counter() - start
        if not result.success and result.message:
            log("error", result.message)
        log(
            "info" if result.success else "error",
            "Probe succeeded" if result.success else "Probe failed",
            duration_seconds=duration,
        )
        try:
            specific = served.metrics(result)
        except Exception as exc:
            self.host.record_error(served.plugin, "blackbox_metrics", exc)
            specific = []
        return Outcome(result, [*shared_metrics(result, duration), *specific], log)
