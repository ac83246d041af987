"""Blackbox-exporter compatibility: ``/probe?target=&module=`` answered like Prometheus'
blackbox_exporter, from pudimd's own probe plugins.

A probe type takes part by having the members of
:class:`pudimd.contracts.BlackboxProber`: the prober kind it serves (``http``, ``tcp``,
``dns``, ``icmp``, ``grpc``), a translation of a blackbox module's prober block into its own
``Settings``, and the prober-specific metrics of a result as :class:`Metric` samples.
The core adds what every prober shares (``probe_success``, ``probe_duration_seconds``,
``probe_dns_lookup_time_seconds``, ``probe_ip_protocol``, ``probe_ip_addr_hash``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Metric"]


@dataclass(slots=True)
class Metric:
    """One sample of a blackbox metric: ``name{labels} value``.

    Samples with the same ``name`` are rendered as one family; ``help`` and ``type`` of the
    first sample of a family are used for its ``# HELP`` and ``# TYPE`` lines.
    """

    name: str
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    type: str = "gauge"
