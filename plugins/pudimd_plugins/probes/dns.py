"""The ``dns`` probe: ask a DNS server one question and check the reply.

Target: the name to query (``example.com``).  With ``query_type: PTR`` an IP address is
accepted and reversed (``192.0.2.1`` asks for ``1.2.0.192.in-addr.arpa``).

With ``query_name`` set, the target is the server to ask (``host``, ``host:port`` or
``[ipv6]:port``) and ``query_name`` the name, as in Prometheus' blackbox_exporter; then
``server`` must not be set.

Every check sends one query over UDP, TCP or DNS-over-TLS (a new socket or connection each
time) and judges the reply: its rcode must be one of ``valid_rcodes``, the resource records
of each section must pass that section's regex checks, and with ``require_ad`` the reply
must carry the DNSSEC AD (authenticated data) flag.  UDP replies with the TC (truncated)
flag are judged as they are (no retry over TCP).

Settings (the block under ``dns:`` in a target)::

    query_type: A             # A, AAAA, CNAME, MX, TXT, SRV, NS, SOA, PTR, ANY... (any type)
    query_class: IN           # IN, CH, HS...
    query_name: null          # the name to ask; set, it makes the target the server to ask
    server: null              # host[:port] to ask; null: the first nameserver of
                              #   /etc/resolv.conf (127.0.0.1 when there is none)
    transport_protocol: udp   # udp | tcp (DNS-over-TLS always uses TCP)
    dns_over_tls: false       # DNS-over-TLS (RFC 7858); the default port becomes 853
    tls:                      # for dns_over_tls
      verify: true            #   verify the server certificate and host name
      ca_file: null           #   PEM CA bundle to verify against (instead of the system's)
      cert_file: null         #   PEM client certificate (mutual TLS)
      key_file: null          #   PEM key of cert_file (if not inside cert_file)
      server_name: null       #   SNI and certificate name, instead of the server's host
    valid_rcodes: [NOERROR]   # rcodes that count as success (NXDOMAIN, SERVFAIL, REFUSED...)
    validate_answer_rrs:      # regex checks of the answer section; each a list of regexes
      fail_if_matches_regexp: []      # fail if any RR matches any of these
      fail_if_all_match_regexp: []    # fail if every RR matches (each of these)
      fail_if_not_matches_regexp: []  # fail if any RR does not match (each of these)
      fail_if_none_matches_regexp: [] # fail if no RR matches (each of these)
    validate_authority_rrs: {}        # the same checks on the authority section
    validate_additional_rrs: {}       # the same checks on the additional section
    recursion_desired: true   # set the RD flag
    dnssec_ok: false          # send EDNS with the DO bit (ask for DNSSEC records)
    require_ad: false         # fail unless the reply has the AD flag (the query sets AD)
    ip_version: any           # any | ipv4 | ipv6: address family of the server to try first
    ip_fallback: true         # with ipv4/ipv6, also try the other family's addresses
    source_ip_address: null   # local address to send from

The regexes are searched (not anchored) in each resource record written as blackbox_exporter
shows it: ``name<TAB>ttl<TAB>class<TAB>type<TAB>data``, e.g.
``www.example.com.<TAB>300<TAB>IN<TAB>A<TAB>192.0.2.1``.  With ``fail_if_not_matches_regexp``
or ``fail_if_none_matches_regexp`` set, an empty section fails.  The EDNS OPT record is not
part of the additional section.

Result: ``status`` is the reply's rcode name (``NOERROR``, ``NXDOMAIN``...); ``message``
names the failure (``rcode NXDOMAIN is not one of NOERROR``, ``answer RR matches
/regex/: ...``, ``no AD flag in the reply``, ``connection refused``, ``timeout after 2s
during query``, the TLS verification error...).

Values: ``DNS_RCODE`` (rcode name), ``IP`` (the first A or AAAA record of the answer, if any),
``BODY`` (the data of each answer record, one per line: ``192.0.2.1``, ``10 mx.example.com.``),
``CONNECTED`` (true when the server replied), ``SERVER_IP`` (the address asked).

Phases (seconds): ``resolve`` (the server's address, when it is a name), ``connect``
(opening the socket; the TCP connection and TLS handshake for tcp and DoT), ``query``
(sending the query until the reply is read).

Metrics: ``answer_rrs``, ``authority_rrs``, ``additional_rrs`` (record counts), ``ad`` (1 if
the reply has the AD flag), ``ip_protocol`` (4 or 6), ``query_succeeded`` (1 when a reply
arrived), ``serial`` (the SOA serial of the answer; only for SOA queries).

Blackbox_exporter: serves the ``dns`` prober of ``/probe`` with its metric names.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings, Regexes, StrictModel
from pudimd_plugins.probes._net import (
    Failure,
    PhaseClock,
    TlsClientSettings,
    connect_first,
    error_text,
    ip_literal,
    ip_protocol,
    resolve,
)

if TYPE_CHECKING:
    import dns.message
    import dns.rrset

    from pudimd.blackbox import Metric

__all__ = ["DnsProbe", "DnsRRValidator", "DnsSettings", "DnsTlsSettings", "pudimd_probe_types"]

RESOLV_CONF = Path("/etc/resolv.conf")
_SECTIONS = ("answer", "authority", "additional")


class DnsRRValidator(StrictModel):
    """Regex checks of one section's resource records (blackbox_exporter's semantics)."""

    fail_if_matches_regexp: Regexes = Field(
        default_factory=list, description="Fail if any record matches any of these."
    )
    fail_if_all_match_regexp: Regexes = Field(
        default_factory=list, description="Fail if every record matches each of these."
    )
    fail_if_not_matches_regexp: Regexes = Field(
        default_factory=list, description="Fail if any record does not match each of these."
    )
    fail_if_none_matches_regexp: Regexes = Field(
        default_factory=list, description="Fail if no record matches each of these."
    )

    def problem(self, section: str, lines: list[str]) -> str:
        """Why ``lines`` (the section's records) fail these checks, or ``""``."""
        needs_some = self.fail_if_not_matches_regexp or self.fail_if_none_matches_regexp
        if not lines and needs_some:
            return f"no {section} RRs to match"
        for pattern in self.fail_if_matches_regexp:
            for line in lines:
                if re.search(pattern, line):
                    return f"{section} RR matches /{pattern}/: {line}"
        for pattern in self.fail_if_not_matches_regexp:
            for line in lines:
                if not re.search(pattern, line):
                    return f"{section} RR does not match /{pattern}/: {line}"
        for pattern in self.fail_if_all_match_regexp:
            if lines and all(re.search(pattern, line) for line in lines):
                return f"every {section} RR matches /{pattern}/"
        for pattern in self.fail_if_none_matches_regexp:
            if not any(re.search(pattern, line) for line in lines):
                return f"no {section} RR matches /{pattern}/"
        return ""


class DnsTlsSettings(TlsClientSettings):
    """TLS client settings of DNS-over-TLS."""

    server_name: str | None = Field(
        default=None, description="SNI and certificate name, instead of the server's host."
    )


class DnsSettings(PluginSettings):
    """Settings of the ``dns`` probe (see the module docstring)."""

    query_type: str = Field(default="A", description="Record type to ask for.")
    query_class: str = Field(default="IN", description="Class to ask in.")
    query_name: str | None = Field(
        default=None, description="Name to ask; set, the target is the server to ask."
    )
    server: str | None = Field(
        default=None, description="host[:port] to ask (default: /etc/resolv.conf's first)."
    )
    transport_protocol: Literal["udp", "tcp"] = Field(
        default="udp", description="udp or tcp (DNS-over-TLS always uses TCP)."
    )
    dns_over_tls: bool = Field(default=False, description="DNS-over-TLS (TCP, port 853).")
    tls: DnsTlsSettings = Field(
        default_factory=DnsTlsSettings, description="TLS client settings of DNS-over-TLS."
    )
    valid_rcodes: list[str] = Field(
        default_factory=lambda: ["NOERROR"],
        min_length=1,
        description="Rcodes that count as success (default NOERROR).",
    )
    validate_answer_rrs: DnsRRValidator = Field(
        default_factory=DnsRRValidator, description="Regex checks of the answer section."
    )
    validate_authority_rrs: DnsRRValidator = Field(
        default_factory=DnsRRValidator, description="Regex checks of the authority section."
    )
    validate_additional_rrs: DnsRRValidator = Field(
        default_factory=DnsRRValidator, description="Regex checks of the additional section."
    )
    recursion_desired: bool = Field(default=True, description="Set the RD flag.")
    dnssec_ok: bool = Field(default=False, description="Send EDNS with the DO bit.")
    require_ad: bool = Field(default=False, description="Fail without the AD flag.")
    ip_version: Literal["any", "ipv4", "ipv6"] = Field(
        default="any", description="Address family of the server to try first."
    )
    ip_fallback: bool = Field(
        default=True, description="With ipv4/ipv6, also try the other family's addresses."
    )
    source_ip_address: str | None = Field(default=None, description="Local address to use.")

    @field_validator("query_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        import dns.rdatatype

        try:
            dns.rdatatype.from_text(value)
        except dns.rdatatype.UnknownRdatatype:
            raise ValueError(f"unknown DNS record type {value!r}") from None
        return value.upper()

    @field_validator("query_class")
    @classmethod
    def _known_class(cls, value: str) -> str:
        import dns.rdataclass

        try:
            dns.rdataclass.from_text(value)
        except dns.rdataclass.UnknownRdataclass:
            raise ValueError(f"unknown DNS class {value!r}") from None
        return value.upper()

    @field_validator("valid_rcodes")
    @classmethod
    def _known_rcodes(cls, values: list[str]) -> list[str]:
        import dns.rcode

        for value in values:
            try:
                dns.rcode.from_text(value)
            except dns.rcode.UnknownRcode:
                raise ValueError(f"unknown rcode {value!r}") from None
        return [value.upper() for value in values]

    @field_validator("server")
    @classmethod
    def _server_form(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                split_server(value, 53)
            except Failure as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("source_ip_address")
    @classmethod
    def _source_is_ip(cls, value: str | None) -> str | None:
        if value is not None and not ip_literal(value):
            raise ValueError(f"source_ip_address {value!r} is not an IP address")
        return value

    @model_validator(mode="after")
    def _one_server(self) -> DnsSettings:
        if self.query_name is not None and self.server is not None:
            raise ValueError("with query_name set the target is the server: drop server")
        return self


def split_server(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``ipv6`` or ``[ipv6]:port`` -> (host, port)."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise Failure(f"invalid server {text!r}: expected host[:port] or [ipv6]:port")
        host, port_text = inside, rest[1:]
        if rest:
            port = _port(text, port_text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(text, port_text)
    if not host:
        raise Failure(f"invalid server {text!r}: no host")
    return host, port


def _port(text: str, port_text: str) -> int:
    if port_text.isdigit() and 0 < int(port_text) < 65536:
        return int(port_text)
    raise Failure(f"invalid server {text!r}: bad port {port_text!r}")


def system_nameserver(path: Path = RESOLV_CONF) -> str:
    """The first ``nameserver`` of ``path`` (``127.0.0.1`` when there is none, as libc)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            return fields[1].partition("%")[0]  # no scope ids in "host:port" form
    return "127.0.0.1"


def rr_lines(section: list[dns.rrset.RRset]) -> list[str]:
    """The records of a message section, one line each, as blackbox_exporter shows them."""
    import dns.rdataclass
    import dns.rdatatype

    lines: list[str] = []
    for rrset in section:
        head = "\t".join(
            (
                rrset.name.to_text(),
                str(rrset.ttl),
                dns.rdataclass.to_text(rrset.rdclass),
                dns.rdatatype.to_text(rrset.rdtype),
            )
        )
        lines.extend(f"{head}\t{rdata.to_text()}" for rdata in rrset)
    return lines


class DnsProbe:
    """Ask a DNS server one question; see the module docstring."""

    type = "dns"
    Settings = DnsSettings
    blackbox_prober: ClassVar[str] = "dns"

    def __init__(self, settings: DnsSettings) -> None:
        self.settings = settings
        self._ssl: ssl.SSLContext | None = None
        if settings.dns_over_tls:
            self._ssl = settings.tls.ssl_context(alpn=["dot"])
        self._nameserver: str | None = None

    async def aclose(self) -> None:
        """Nothing to release: every check opens and closes its own socket."""

    async def check(self, target: str, timeout: float) -> ProbeResult:
        # imported before the clock starts, so the first check's phases are not the import's
        import dns.asyncquery
        import dns.exception
        import dns.message
        import dns.reversename

        start = time.perf_counter()
        clock = PhaseClock("resolve", "connect", "query")
        metrics: dict[str, float] = {
            "answer_rrs": 0.0,
            "authority_rrs": 0.0,
            "additional_rrs": 0.0,
            "ad": 0.0,
            "query_succeeded": 0.0,
        }
        values: dict[str, Any] = {"CONNECTED": False}
        response: dns.message.Message | None = None
        message = ""
        try:
            async with asyncio.timeout(timeout):
                response = await self._ask(target, clock, metrics, values)
        except TimeoutError:
            message = f"timeout after {timeout:g}s during {clock.phase}"
        except Failure as exc:
            message = exc.message
        except OSError as exc:
            message = error_text(exc)
        except dns.exception.DNSException as exc:
            message = f"bad reply: {exc}"
        clock.enter("")
        status: str | None = None
        if response is not None:
            status = self._read(response, metrics, values)
            message = self._judge(response, metrics)
        return ProbeResult(
            success=not message,
            duration=time.perf_counter() - start,
            message=message,
            status=status,
            phases=clock.phases,
            metrics=metrics,
            values=values,
        )

    def _question(self, target: str) -> dns.message.Message:
        import dns.exception
        import dns.flags
        import dns.message
        import dns.name
        import dns.reversename

        settings = self.settings
        name = (settings.query_name if settings.query_name is not None else target).strip()
        if not name:
            raise Failure("no name to query")
        try:
            if settings.query_type == "PTR" and ip_literal(name):
                qname = dns.reversename.from_address(name)
            else:
                qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            raise Failure(f"invalid query name {name!r}: {exc}") from None
        flags = 0
        if settings.recursion_desired:
            flags |= dns.flags.RD
        if settings.require_ad:
            flags |= dns.flags.AD  # RFC 6840 5.7: ask for AD without needing DO
        return dns.message.make_query(
            qname,
            settings.query_type,
            settings.query_class,
            use_edns=0 if settings.dnssec_ok else None,
            want_dnssec=settings.dnssec_ok,
            flags=flags,
        )

    def _server(self, target: str) -> tuple[str, int]:
        settings = self.settings
        port = 853 if settings.dns_over_tls else 53
        if settings.query_name is not None:
            return split_server(target, port)
        if settings.server is not None:
            return split_server(settings.server, port)
        if self._nameserver is None:
            self._nameserver = system_nameserver()
        return self._nameserver, port

    async def _ask(
        self,
        target: str,
        clock: PhaseClock,
        metrics: dict[str, float],
        values: dict[str, Any],
    ) -> dns.message.Message:
        import dns.asyncbackend
        import dns.asyncquery

        settings = self.settings
        query = self._question(target)
        host, port = self._server(target)
        loop = asyncio.get_running_loop()
        addresses = await resolve(loop, host, port, settings.ip_version, settings.ip_fallback)
        backend: Any = dns.asyncbackend.get_backend("asyncio")  # make_socket is untyped
        stream = settings.dns_over_tls or settings.transport_protocol == "tcp"
        source = None
        if settings.source_ip_address is not None:
            source = (settings.source_ip_address, 0)

        async def connect(family: int, ip: str) -> Any:
            try:
                if stream:
                    return await backend.make_socket(
                        family,
                        socket.SOCK_STREAM,
                        0,
                        source,
                        (ip, port),
                        None,
                        self._ssl,
                        (settings.tls.server_name or host) if self._ssl else None,
                    )
                return await backend.make_socket(family, socket.SOCK_DGRAM, 0, source, (ip, port))
            except ssl.SSLError as exc:
                raise Failure(error_text(exc)) from None

        clock.enter("connect")
        sock, family, ip = await connect_first(addresses if stream else addresses[:1], connect)
        metrics["ip_protocol"] = ip_protocol(family)
        values["SERVER_IP"] = ip
        clock.enter("query")
        async with sock:
            if stream:
                return await dns.asyncquery.tcp(query, ip, None, port, sock=sock)
            return await dns.asyncquery.udp(query, ip, None, port, sock=sock)

    def _read(
        self, response: dns.message.Message, metrics: dict[str, float], values: dict[str, Any]
    ) -> str:
        """Record the reply's facts in ``metrics`` and ``values``; return its rcode name."""
        import dns.flags
        import dns.rcode
        import dns.rdatatype

        rcode = dns.rcode.to_text(response.rcode())
        metrics["query_succeeded"] = 1.0
        metrics["answer_rrs"] = float(sum(len(rrset) for rrset in response.answer))
        metrics["authority_rrs"] = float(sum(len(rrset) for rrset in response.authority))
        metrics["additional_rrs"] = float(sum(len(rrset) for rrset in response.additional))
        metrics["ad"] = 1.0 if response.flags & dns.flags.AD else 0.0
        body: list[str] = []
        for rrset in response.answer:
            for rdata in rrset:
                body.append(rdata.to_text())
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    values.setdefault("IP", rdata.to_text())
        if self.settings.query_type == "SOA":
            metrics["serial"] = 0.0
            for rrset in response.answer:
                if rrset.rdtype == dns.rdatatype.SOA:
                    metrics["serial"] = float(rrset[-1].serial)
        values.update(CONNECTED=True, DNS_RCODE=rcode, BODY="\n".join(body))
        return rcode

    def _judge(self, response: dns.message.Message, metrics: dict[str, float]) -> str:
        """Why the reply fails the settings' checks, or ``""``."""
        import dns.rcode

        settings = self.settings
        rcode = dns.rcode.to_text(response.rcode())
        if rcode not in settings.valid_rcodes:
            return f"rcode {rcode} is not one of {', '.join(settings.valid_rcodes)}"
        for section in _SECTIONS:
            validator: DnsRRValidator = getattr(settings, f"validate_{section}_rrs")
            problem = validator.problem(section, rr_lines(getattr(response, section)))
            if problem:
                return problem
        if settings.require_ad and not metrics["ad"]:
            return "no AD flag in the reply (not DNSSEC-authenticated)"
        return ""

    # blackbox_exporter compatibility (pudimd.contracts.BlackboxProber)

    @classmethod
    def from_blackbox(cls, prober: Mapping[str, Any]) -> DnsSettings:
        """Settings equivalent to a blackbox_exporter ``dns`` prober block.

        ``query_name`` is required (the target is the server to ask); blackbox's defaults
        apply: query type ANY, IPv6 first with fallback to IPv4."""
        block = dict(prober)
        unknown = set(block) - _BLACKBOX_FIELDS
        if unknown:
            raise ValueError(f"dns: unsupported blackbox field {sorted(unknown)[0]!r}")
        if not block.get("query_name"):
            raise ValueError("dns: query_name must be set")
        transport = block.get("transport_protocol") or "udp"
        dot = bool(block.get("dns_over_tls", False))
        if dot and transport != "tcp":
            raise ValueError("dns: dns_over_tls needs transport_protocol: tcp")
        preferred = block.get("preferred_ip_protocol") or "ip6"
        versions = {"ip4": "ipv4", "ip6": "ipv6"}
        if preferred not in versions:
            raise ValueError(f"dns: preferred_ip_protocol {preferred!r}: expected ip4 or ip6")
        data: dict[str, Any] = {
            "query_name": block["query_name"],
            "query_type": block.get("query_type") or "ANY",
            "query_class": block.get("query_class") or "IN",
            "transport_protocol": transport,
            "dns_over_tls": dot,
            "recursion_desired": block.get("recursion_desired", True),
            "ip_version": versions[preferred],
            "ip_fallback": block.get("ip_protocol_fallback", True),
        }
        if block.get("valid_rcodes"):
            data["valid_rcodes"] = block["valid_rcodes"]
        if block.get("source_ip_address"):
            data["source_ip_address"] = block["source_ip_address"]
        for section in _SECTIONS:
            key = f"validate_{section}_rrs"
            if block.get(key):
                data[key] = block[key]
        tls_config = dict(block.get("tls_config") or {})
        unknown = set(tls_config) - _BLACKBOX_TLS_FIELDS
        if unknown:
            raise ValueError(f"dns: unsupported tls_config field {sorted(unknown)[0]!r}")
        tls: dict[str, Any] = {"verify": not tls_config.get("insecure_skip_verify", False)}
        for name in ("ca_file", "cert_file", "key_file", "server_name"):
            if tls_config.get(name):
                tls[name] = tls_config[name]
        data["tls"] = tls
        return DnsSettings.model_validate(data)

    @staticmethod
    def blackbox_metrics(result: ProbeResult) -> list[Metric]:
        """blackbox_exporter's ``probe_dns_*`` samples for ``result``."""
        from pudimd.blackbox import Metric

        phases = result.phases
        metrics = result.metrics
        samples = [
            Metric(
                "probe_dns_duration_seconds",
                "Duration of DNS request by phase",
                phases.get(phase, 0.0),
                {"phase": label},
            )
            for phase, label in _BLACKBOX_PHASES
        ]
        for section in _SECTIONS:
            samples.append(
                Metric(
                    f"probe_dns_{section}_rrs",
                    f"Returns number of entries in the {section} resource record list",
                    metrics.get(f"{section}_rrs", 0.0),
                )
            )
        samples.append(
            Metric(
                "probe_dns_query_succeeded",
                "Displays whether or not the query was executed successfully",
                metrics.get("query_succeeded", 0.0),
            )
        )
        if "serial" in metrics:
            samples.append(
                Metric(
                    "probe_dns_serial", "Returns the serial number of the zone", metrics["serial"]
                )
            )
        return samples


_BLACKBOX_PHASES = (("resolve", "resolve"), ("connect", "connect"), ("query", "request"))
_BLACKBOX_FIELDS = frozenset(
    {
        "query_name",
        "query_type",
        "query_class",
        "valid_rcodes",
        "validate_answer_rrs",
        "validate_authority_rrs",
        "validate_additional_rrs",
        "transport_protocol",
        "preferred_ip_protocol",
        "ip_protocol_fallback",
        "source_ip_address",
        "dns_over_tls",
        "tls_config",
        "recursion_desired",
    }
)
_BLACKBOX_TLS_FIELDS = frozenset(
    {"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"}
)


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``dns`` probe."""
    return [DnsProbe]
