"""Blackbox exporter adapters of the ``http`` and ``tcp`` probes (``/probe`` modules).

``*_settings`` turn a blackbox module's prober block into the probe's ``Settings``, with
blackbox's defaults (IPv6 preferred with fallback to IPv4); a field that cannot be honoured
raises ValueError naming it.  ``*_metrics`` are the prober-specific metrics blackbox 0.23
exports, with its names, labels and help texts.

Not exported (no data for them in a ProbeResult): ``probe_ssl_last_chain_info`` (the leaf
certificate's subject, issuer, fingerprint).  ``probe_ssl_last_chain_expiry_timestamp_seconds``
is the earliest expiry of the chain, which is blackbox's value for a verified chain (it
reports the zero time, -62135596800, with ``insecure_skip_verify``).

Private to ``pudimd_plugins.probes``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from pudimd.blackbox import Metric

if TYPE_CHECKING:
    from pudimd.results import ProbeResult
    from pudimd_plugins.probes.http import HttpSettings
    from pudimd_plugins.probes.tcp import TcpSettings

__all__ = ["http_metrics", "http_settings", "http_target", "tcp_metrics", "tcp_settings"]

_IP_VERSION = {"ip4": "ipv4", "ip6": "ipv6", "": "ipv6"}
_TLS_ACCEPTED = {"insecure_skip_verify", "ca_file", "cert_file", "key_file", "server_name"}
_TLS_NAMES = {1.0: "TLS 1.0", 1.1: "TLS 1.1", 1.2: "TLS 1.2", 1.3: "TLS 1.3"}


def _unsupported(where: str, name: str, why: str = "not supported by pudimd") -> ValueError:
    return ValueError(f"{where}.{name}: {why}")


def _regex(pattern: Any, where: str) -> str:
    """A Go (RE2) regex as a Python one: RE2 allows a repeated ``^`` (``^+OK``) and
    spells end-of-text ``\\z``."""
    text = re.sub(r"^\^[+*?]", "^", str(pattern)).replace(r"\z", r"\Z")
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"{where}: invalid regex {pattern!r}: {exc}") from None
    return text


def _ip(block: Mapping[str, Any], where: str, out: dict[str, Any]) -> None:
    preferred = str(block.get("preferred_ip_protocol") or "")
    if preferred not in _IP_VERSION:
        raise ValueError(f"{where}.preferred_ip_protocol: expected ip4 or ip6, got {preferred!r}")
    out["ip_version"] = _IP_VERSION[preferred]
    out["ip_fallback"] = bool(block.get("ip_protocol_fallback", True))


def _tls(block: Mapping[str, Any], where: str, out: dict[str, Any]) -> None:
    tls = block.get("tls_config") or {}
    for key, value in tls.items():
        if (
            key in ("min_version", "max_version")
            and value in ("", "TLS12", "TLS13")
            and (key == "max_version" or value != "TLS13")
        ):
            continue  # TLS 1.2 is the floor and 1.3 the ceiling of pudimd's client too
        if key not in _TLS_ACCEPTED and value not in (None, "", False):
            raise _unsupported(f"{where}.tls_config", key)
    out["verify"] = not tls.get("insecure_skip_verify", False)
    for key in ("ca_file", "cert_file", "key_file", "server_name"):
        if tls.get(key):
            out[key] = tls[key]


def _validated(model: type[Any], data: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"{where}: {loc}: {first['msg']}".replace(": : ", ": ")) from None


# -------------------------------------------------------------------------------- http


def http_settings(block: Mapping[str, Any]) -> HttpSettings:
    """The ``http`` probe's Settings for a blackbox ``http:`` block."""
    from pudimd_plugins.probes.http import HttpSettings

    where = "http"
    out: dict[str, Any] = {}
    _ip(block, where, out)
    _tls(block, where, out)
    for key, value in block.items():
        if key in ("preferred_ip_protocol", "ip_protocol_fallback", "tls_config"):
            continue
        if key in ("valid_status_codes", "method", "fail_if_ssl", "fail_if_not_ssl"):
            if value not in (None, []):
                out[key] = value
        elif key == "headers":
            out["headers"] = {str(k): str(v) for k, v in (value or {}).items()}
        elif key == "body":
            out["body"] = value
        elif key == "body_file":
            try:
                out["body"] = Path(value).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"{where}.body_file: cannot read: {exc.strerror}") from None
        elif key == "valid_http_versions":
            # pudimd's client speaks HTTP/1.x only; a list allowing HTTP/1.1 is honoured
            if value and "HTTP/1.1" not in value:
                raise _unsupported(where, key, "must allow HTTP/1.1 (pudimd speaks HTTP/1.x)")
        elif key == "compression":
            if value in ("gzip", "deflate"):
                out.setdefault("headers", {})
                out["headers"].setdefault("Accept-Encoding", value)
            elif value:
                raise _unsupported(where, key, f"{value!r} is not supported (gzip, deflate)")
        elif key == "follow_redirects":
            out["follow_redirects"] = bool(value) and out.get("follow_redirects", True)
        elif key == "no_follow_redirects":
            if value:
                out["follow_redirects"] = False
        elif key in ("fail_if_body_matches_regexp", "fail_if_body_not_matches_regexp"):
            name = key.removesuffix("p")  # pudimd spells it ..._regex
            out[name] = [_regex(p, f"{where}.{key}") for p in value or []]
        elif key == "basic_auth":
            auth = value or {}
            for field in ("username", "password", "password_file"):
                if auth.get(field):
                    out[field] = auth[field]
        elif key == "authorization":
            auth = value or {}
            if str(auth.get("type", "Bearer")).lower() != "bearer":
                raise _unsupported(where, "authorization.type", "only Bearer is supported")
            if auth.get("credentials"):
                out["bearer_token"] = auth["credentials"]
            if auth.get("credentials_file"):
                out["bearer_token_file"] = auth["credentials_file"]
        elif key in ("bearer_token", "bearer_token_file"):
            if value:
                out[key] = value
        elif key == "proxy_url":
            if value:
                out["proxy"] = value
        elif key == "enable_http2":
            pass  # pudimd's client offers HTTP/1.1 only (ALPN); HTTP/2 is never negotiated
        elif value not in (None, "", False, [], {}):
            # fail_if_header_(not_)matches, oauth2, no_proxy, proxy_from_environment,
            # proxy_connect_header, skip_resolve_phase_with_proxy
            raise _unsupported(where, key)
    settings: HttpSettings = _validated(HttpSettings, out, where)
    return settings


def http_target(target: str) -> str:
    """blackbox's rule: a target without a scheme is ``http://`` + target."""
    if target.startswith(("http://", "https://")):
        return target
    return f"http://{target}"


def _tls_metrics(metrics: Mapping[str, float]) -> list[Metric]:
    out: list[Metric] = []
    expiry = metrics.get("cert_expiry_timestamp")
    if expiry is not None:
        out.append(
            Metric(
                "probe_ssl_earliest_cert_expiry",
                "Returns last SSL chain expiry in unixtime",
                expiry,
            )
        )
        out.append(
            Metric(
                "probe_ssl_last_chain_expiry_timestamp_seconds",
                "Returns last SSL chain expiry in timestamp",
                expiry,
            )
        )
    version = metrics.get("tls_version")
    if version is not None:
        out.append(
            Metric(
                "probe_tls_version_info",
                "Returns the TLS version used or NaN when unknown",
                1.0,
                {"version": _TLS_NAMES.get(version, f"TLS {version:g}")},
            )
        )
    return out


_PHASE_HELP = "Duration of http request by phase, summed over all redirects"
_PHASES = (
    ("resolve", "dns"),
    ("connect", "connect"),
    ("tls", "tls"),
    ("processing", "first_byte"),
    ("transfer", "transfer"),
)


def http_metrics(result: ProbeResult) -> list[Metric]:
    """blackbox's ``probe_http_*``, ``probe_ssl_*`` and ``probe_tls_*`` for ``result``."""
    m = result.metrics
    answered = isinstance(result.status, int) and result.status > 0
    phases = result.phases
    out: list[Metric] = []
    connected = answered or phases.get("connect", 0.0) > 0
    for label, phase in _PHASES if connected else _PHASES[:1]:
        out.append(
            Metric("probe_http_duration_seconds", _PHASE_HELP, phases.get(phase, 0.0),
                   {"phase": label})
        )  # fmt: skip
    # Go's -1: an answer without Content-Length; 0: no answer
    content_length = m.get("content_length", -1.0) if answered else 0.0
    out += [
        Metric("probe_http_status_code", "Response HTTP status code",
               float(result.status) if answered else 0.0),  # type: ignore[arg-type]
        Metric("probe_http_content_length", "Length of http content response", content_length),
        Metric("probe_http_uncompressed_body_length", "Length of uncompressed response body",
               m.get("body_bytes", 0.0) if answered else 0.0),
        Metric("probe_http_redirects", "The number of redirects", m.get("redirects", 0.0)),
        Metric("probe_http_ssl", "Indicates if SSL was used for the final redirect",
               m.get("tls", 0.0) if answered else 0.0),
        Metric("probe_http_version", "Returns the version of HTTP of the probe response",
               m.get("http_version", 0.0) if answered else 0.0),
        Metric("probe_failed_due_to_regex", "Indicates if probe failed due to regex",
               m.get("failed_due_to_regex", 0.0)),
    ]  # fmt: skip
    last_modified = m.get("last_modified_timestamp")
    if answered and last_modified is not None:
        out.append(
            Metric(
                "probe_http_last_modified_timestamp_seconds",
                "Returns the Last-Modified HTTP response header in unixtime",
                last_modified,
            )
        )
    if answered and m.get("tls"):
        out += _tls_metrics(m)
    return out


# --------------------------------------------------------------------------------- tcp


def tcp_settings(block: Mapping[str, Any]) -> TcpSettings:
    """The ``tcp`` probe's Settings for a blackbox ``tcp:`` block.

    ``query_response`` maps step for step (``expect``, ``send``, ``starttls``; blackbox 0.23
    has no ``labels``), matched line by line as blackbox does (``match_lines``); a send ends
    with a newline, as blackbox's does."""
    from pudimd_plugins.probes.tcp import TcpSettings

    where = "tcp"
    out: dict[str, Any] = {}
    _ip(block, where, out)
    _tls(block, where, out)
    for key, value in block.items():
        if key in ("preferred_ip_protocol", "ip_protocol_fallback", "tls_config"):
            continue
        if key == "tls":
            out["tls"] = bool(value)
        elif key == "query_response":
            out["query_response"] = _query_response(value or [])
            out["match_lines"] = True
        elif value not in (None, "", False, [], {}):  # source_ip_address
            raise _unsupported(where, key)
    settings: TcpSettings = _validated(TcpSettings, out, where)
    return settings


def _query_response(steps: list[Any]) -> list[dict[str, Any]]:
    """blackbox's query_response steps as the tcp probe's (empty steps dropped)."""
    where = "tcp.query_response"
    if not isinstance(steps, list):
        raise ValueError(f"{where}: expected a list of steps")
    out: list[dict[str, Any]] = []
    for index, step in enumerate(steps):
        here = f"{where}[{index}]"
        if not isinstance(step, Mapping):
            raise ValueError(f"{here}: expected a mapping with expect, send or starttls")
        for key in step:
            if key not in ("expect", "send", "starttls"):
                raise ValueError(f"{here}: unknown field {key!r} (expect, send, starttls)")
        mapped: dict[str, Any] = {}
        if step.get("expect"):
            mapped["expect"] = _regex(step["expect"], f"{here}.expect")
        if step.get("send"):  # blackbox writes the text and a newline; pudimd unescapes
            mapped["send"] = str(step["send"]).replace("\\", "\\\\") + "\\n"
        if step.get("starttls"):
            mapped["starttls"] = True
        if mapped:
            out.append(mapped)
    return out


def tcp_metrics(result: ProbeResult) -> list[Metric]:
    """blackbox's tcp prober metrics for ``result``."""
    m = result.metrics
    out = [
        Metric(
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to regex",
            m.get("failed_due_to_regex", 0.0),
        )
    ]
    if m.get("tls"):
        out += _tls_metrics(m)
    return out
