"""Blackbox exporter modules: parsing a ``blackbox.yml``, the stock modules, the timeout rule.

A module is ``{prober, timeout, http: {...}, tcp: {...}, dns: {...}, icmp: {...},
grpc: {...}}``.  Parsing checks the structure only (known prober, known keys, a valid
timeout); turning a prober block into a probe's ``Settings`` is the probe plugin's job
(:meth:`pudimd.contracts.BlackboxProber.from_blackbox`) and happens when a module is first
used, so a file whose modules need a prober pudimd lacks still loads (the module answers
400 on ``/probe``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_SCRAPE_TIMEOUT",
    "PROBERS",
    "STOCK_MODULES",
    "TIMEOUT_OFFSET",
    "Module",
    "load_modules",
    "parse_modules",
    "probe_timeout",
]

TIMEOUT_OFFSET = 0.5
"""Seconds kept back from the scrape timeout (blackbox's ``--timeout-offset``)."""
DEFAULT_SCRAPE_TIMEOUT = 120.0
"""Scrape timeout assumed without an ``X-Prometheus-Scrape-Timeout-Seconds`` header."""

# The prober kinds and the keys blackbox 0.23 accepts in each prober block (it rejects
# unknown keys, and so does this parser: a typo is an error, not a silently ignored field).
_HTTP_CLIENT = {
    "basic_auth", "authorization", "bearer_token", "bearer_token_file", "oauth2",
    "proxy_url", "no_proxy", "proxy_from_environment", "proxy_connect_header",
    "tls_config", "follow_redirects", "enable_http2",
}  # fmt: skip
PROBERS: dict[str, frozenset[str]] = {
    "http": frozenset({
        "valid_status_codes", "valid_http_versions", "method", "headers", "body",
        "body_file", "compression", "no_follow_redirects", "fail_if_ssl", "fail_if_not_ssl",
        "fail_if_body_matches_regexp", "fail_if_body_not_matches_regexp",
        "fail_if_header_matches", "fail_if_header_not_matches", "preferred_ip_protocol",
        "ip_protocol_fallback", "skip_resolve_phase_with_proxy", "http_client_config",
        *_HTTP_CLIENT,
    }),
    "tcp": frozenset({
        "preferred_ip_protocol", "ip_protocol_fallback", "source_ip_address",
        "query_response", "tls", "tls_config",
    }),
    "dns": frozenset({
        "preferred_ip_protocol", "ip_protocol_fallback", "dns_over_tls", "tls_config",
        "source_ip_address", "transport_protocol", "query_class", "query_name",
        "query_type", "recursion_desired", "valid_rcodes", "validate_answer_rrs",
        "validate_authority_rrs", "validate_additional_rrs",
    }),
    "icmp": frozenset({
        "preferred_ip_protocol", "ip_protocol_fallback", "source_ip_address",
        "payload_size", "dont_fragment", "ttl",
    }),
    "grpc": frozenset({
        "service", "tls", "tls_config", "preferred_ip_protocol", "ip_protocol_fallback",
    }),
}  # fmt: skip

STOCK_MODULES: dict[str, dict[str, Any]] = {
    "http_2xx": {"prober": "http"},
    "http_post_2xx": {"prober": "http", "http": {"method": "POST"}},
    "tcp_connect": {"prober": "tcp"},
    "pop3s_banner": {
        "prober": "tcp",
        "tcp": {
            "query_response": [{"expect": "^+OK"}],
            "tls": True,
            "tls_config": {"insecure_skip_verify": False},
        },
    },
    "grpc": {"prober": "grpc", "grpc": {"tls": True, "preferred_ip_protocol": "ip4"}},
    "grpc_plain": {"prober": "grpc", "grpc": {"tls": False, "service": "service1"}},
    "ssh_banner": {
        "prober": "tcp",
        "tcp": {
            "query_response": [
                {"expect": "^SSH-2.0-"},
                {"send": "SSH-2.0-blackbox-ssh-check"},
            ]
        },
    },
    "irc_banner": {
        "prober": "tcp",
        "tcp": {
            "query_response": [
                {"send": "NICK prober"},
                {"send": "USER prober prober prober :prober"},
                {"expect": "PING :([^ ]+)", "send": "PONG ${1}"},
                {"expect": "^:[^ ]+ 001"},
            ]
        },
    },
    "icmp": {"prober": "icmp"},
    "icmp_ttl5": {"prober": "icmp", "timeout": "5s", "icmp": {"ttl": 5}},
    # Not in blackbox's shipped file; its example.yml's dns_udp_example under a short name.
    "dns": {"prober": "dns", "dns": {"query_name": "www.prometheus.io", "query_type": "A"}},
}
"""The modules of blackbox_exporter's shipped ``blackbox.yml`` (plus ``dns``), always
defined; a modules file adds to them and overrides them by name."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
         "y": 31536000.0}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Module:
    """One blackbox module: its prober kind, timeout (0: none) and prober block."""

    name: str
    prober: str
    timeout: float = 0.0
    block: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


def _duration(value: Any, where: str) -> float:
    """A Prometheus duration (``5s``, ``1m30s``, ``500ms``) in seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{where}: invalid duration {value!r} (e.g. 5s, 1m30s, 500ms)")
    return total


def parse_modules(data: Any, where: str = "modules") -> dict[str, Module]:
    """The modules of a parsed blackbox.yml (``{modules: {...}}``) or of a bare
    ``{name: module}`` mapping; raises ValueError saying what and where."""
    if isinstance(data, Mapping) and "modules" in data:
        extra = sorted(set(data) - {"modules"})
        if extra:
            raise ValueError(f"unknown top-level field {extra[0]!r} (expected 'modules')")
        data = data["modules"]
        where = "modules"
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping of module names to modules")
    modules: dict[str, Module] = {}
    for name, raw in data.items():
        here = f"{where}.{name}"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{here}: expected a mapping with 'prober'")
        prober = raw.get("prober")
        if prober not in PROBERS:
            known = ", ".join(PROBERS)
            raise ValueError(f"{here}.prober: unknown prober {prober!r} (known: {known})")
        for key, value in raw.items():
            if key in ("prober", "timeout"):
                continue
            if key not in PROBERS:
                raise ValueError(f"{here}: unknown field {key!r}")
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ValueError(f"{here}.{key}: expected a mapping")
            for inner in value:
                if inner not in PROBERS[key]:
                    raise ValueError(f"{here}.{key}: unknown field {inner!r}")
        timeout = _duration(raw["timeout"], f"{here}.timeout") if "timeout" in raw else 0.0
        block = raw.get(prober) or {}
        modules[str(name)] = Module(str(name), prober, timeout, dict(block), dict(raw))
    return modules


def load_modules(file: Path | None, inline: Mapping[str, Any] | None = None) -> dict[str, Module]:
    """The stock modules, overridden by those of ``file`` (a blackbox.yml) and then by
    ``inline``.  Raises ValueError naming the file and the module at fault."""
    import yaml_rs

    modules = parse_modules(STOCK_MODULES)
    if file is not None:
        try:
            data = yaml_rs.loads(file.read_text(encoding="utf-8"), parse_datetime=False)
        except OSError as exc:
            raise ValueError(f"{file}: cannot read: {exc.strerror}") from None
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{file}: invalid YAML: {reason}") from None
        try:
            if isinstance(data, Mapping) and "modules" not in data and data:
                raise ValueError(
                    f"unknown top-level field {next(iter(data))!r} (expected 'modules')"
                )
            modules.update(parse_modules(data))
        except ValueError as exc:
            raise ValueError(f"{file}: {exc}") from None
    if inline:
        modules.update(parse_modules(inline, "probe_modules"))
    return modules


def probe_timeout(header: str | None, module_timeout: float) -> float:
    """Seconds a probe may take, by blackbox's rule: the scrape timeout (header, else
    120 s) less :data:`TIMEOUT_OFFSET`, lowered to the module's timeout when that is set
    and smaller.  Raises ValueError for a header that is not a number."""
    scrape = float(header) if header else 0.0  # ValueError for garbage, as blackbox's 500
    if scrape == 0:
        scrape = DEFAULT_SCRAPE_TIMEOUT
    budget = scrape - TIMEOUT_OFFSET
    if (0 < module_timeout < budget) or budget < 0:
        return module_timeout
    return budget
