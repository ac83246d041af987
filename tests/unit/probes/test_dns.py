"""The ``dns`` probe against in-process DNS servers on loopback (dnspython answering over UDP,
TCP and TLS; certificates by trustme), and its blackbox_exporter translation.

The probe against a real DNS server (dnsmasq) is in ``tests/integration/test_dns.py``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.flags
import dns.message
import dns.rrset
import pytest
import trustme
from pudimd_plugins.probes.dns import (
    DnsProbe,
    DnsSettings,
    pudimd_probe_types,
    split_server,
    system_nameserver,
)
from pydantic import ValidationError

from pudimd.contracts import BlackboxProber
from pudimd.results import ProbeResult
from tests.helpers import free_port, require_ipv6_loopback, run_check

pytestmark = pytest.mark.anyio


@dataclass
class Stub:
    """A DNS server answering every question with ``A 192.0.2.1`` (plus an additional
    ``ns.stub.test. A 192.0.2.53``), with the AD flag when ``ad``; it keeps the queries."""

    ad: bool = False
    queries: list[dns.message.Message] = field(default_factory=list)
    udp_port: int = 0
    tcp_port: int = 0

    def reply(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        self.queries.append(query)
        response = dns.message.make_response(query)
        name = query.question[0].name
        response.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"))
        response.additional.append(
            dns.rrset.from_text("ns.stub.test.", 300, "IN", "A", "192.0.2.53")
        )
        if self.ad:
            response.flags |= dns.flags.AD
        return response.to_wire()


class _UdpAnswer(asyncio.DatagramProtocol):
    def __init__(self, stub: Stub) -> None:
        self.stub = stub
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.stub.reply(data), addr)


@asynccontextmanager
async def stub_dns(
    *, ad: bool = False, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[Stub]:
    """Serve a :class:`Stub` on ``host`` over UDP and over TCP (TLS with ``tls``)."""
    stub = Stub(ad=ad)
    loop = asyncio.get_running_loop()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                answer = stub.reply(await reader.readexactly(size))
                writer.write(len(answer).to_bytes(2, "big") + answer)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    transport, _ = await loop.create_datagram_endpoint(
        lambda: _UdpAnswer(stub), local_addr=(host, 0)
    )
    server = await asyncio.start_server(stream, host, 0, ssl=tls)
    stub.udp_port = transport.get_extra_info("sockname")[1]
    stub.tcp_port = server.sockets[0].getsockname()[1]
    try:
        yield stub
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


@contextmanager
def silent_udp() -> Iterator[int]:
    """A UDP port that reads queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


async def check(target: str, within: float = 5.0, **settings: Any) -> ProbeResult:
    return await run_check(DnsProbe, target, within, **settings)


# the probe against the stub server


async def test_udp_answer_gives_rcode_ip_body_and_counts() -> None:
    async with stub_dns() as stub:
        result = await check("host.stub.test", server=f"127.0.0.1:{stub.udp_port}")
    assert result.success, result.message
    assert result.status == "NOERROR"
    assert result.values["DNS_RCODE"] == "NOERROR"
    assert result.values["IP"] == "192.0.2.1"
    assert result.values["BODY"] == "192.0.2.1"
    assert result.values["CONNECTED"] is True
    assert result.values["SERVER_IP"] == "127.0.0.1"
    assert result.metrics["answer_rrs"] == 1
    assert result.metrics["additional_rrs"] == 1
    assert result.metrics["ip_protocol"] == 4
    assert set(result.phases) == {"resolve", "connect", "query"}
    assert str(stub.queries[0].question[0].name) == "host.stub.test."


async def test_query_name_makes_the_target_the_server() -> None:
    async with stub_dns() as stub:
        result = await check(
            f"127.0.0.1:{stub.tcp_port}", query_name="asked.stub.test", transport_protocol="tcp"
        )
    assert result.success, result.message
    assert str(stub.queries[0].question[0].name) == "asked.stub.test."


async def test_recursion_desired_false_clears_rd_flag() -> None:
    async with stub_dns() as stub:
        server = f"127.0.0.1:{stub.udp_port}"
        await check("a.stub.test", server=server)
        await check("a.stub.test", server=server, recursion_desired=False)
    assert stub.queries[0].flags & dns.flags.RD
    assert not stub.queries[1].flags & dns.flags.RD


async def test_dnssec_ok_sends_edns_do_bit() -> None:
    async with stub_dns() as stub:
        server = f"127.0.0.1:{stub.udp_port}"
        await check("a.stub.test", server=server)
        await check("a.stub.test", server=server, dnssec_ok=True)
    assert stub.queries[0].edns < 0
    assert stub.queries[1].edns == 0
    assert stub.queries[1].ednsflags & dns.flags.DO


async def test_require_ad_passes_when_the_reply_has_ad() -> None:
    async with stub_dns(ad=True) as stub:
        result = await check("a.stub.test", server=f"127.0.0.1:{stub.udp_port}", require_ad=True)
    assert result.success, result.message
    assert result.metrics["ad"] == 1
    assert stub.queries[0].flags & dns.flags.AD  # the query asks for AD


async def test_require_ad_fails_without_ad() -> None:
    async with stub_dns(ad=False) as stub:
        result = await check("a.stub.test", server=f"127.0.0.1:{stub.udp_port}", require_ad=True)
    assert not result.success
    assert "AD flag" in result.message
    assert result.status == "NOERROR"
    assert result.metrics["ad"] == 0


async def test_additional_rrs_are_validated() -> None:
    async with stub_dns() as stub:
        server = f"127.0.0.1:{stub.udp_port}"
        ok = await check(
            "a.stub.test",
            server=server,
            validate_additional_rrs={
                "fail_if_none_matches_regexp": [r"^ns\.stub\.test\.\t300\tIN\tA\t"]
            },
        )
        bad = await check(
            "a.stub.test",
            server=server,
            validate_additional_rrs={"fail_if_matches_regexp": ["192.0.2.53"]},
        )
    assert ok.success, ok.message
    assert not bad.success
    assert bad.message.startswith("additional RR matches /192.0.2.53/")


async def test_silent_server_times_out_during_query() -> None:
    with silent_udp() as port:
        result = await check("a.stub.test", within=0.3, server=f"127.0.0.1:{port}")
    assert not result.success
    assert result.message == "timeout after 0.3s during query"
    assert result.values["CONNECTED"] is False
    assert result.metrics["query_succeeded"] == 0


async def test_refused_tcp_port_fails_with_reason() -> None:
    result = await check("a.stub.test", server=f"127.0.0.1:{free_port()}", transport_protocol="tcp")
    assert not result.success
    assert result.message == "connection refused"
    assert result.status is None


async def test_closed_udp_port_is_refused() -> None:
    result = await check("a.stub.test", server=f"127.0.0.1:{free_port()}")
    assert not result.success
    assert result.message == "connection refused"


async def test_ipv6_server() -> None:
    require_ipv6_loopback()
    async with stub_dns(host="::1") as stub:
        udp = await check("a.stub.test", server=f"[::1]:{stub.udp_port}")
        tcp = await check("a.stub.test", server=f"[::1]:{stub.tcp_port}", transport_protocol="tcp")
    assert udp.success, udp.message
    assert tcp.success, tcp.message
    assert udp.metrics["ip_protocol"] == tcp.metrics["ip_protocol"] == 6


async def test_server_name_is_resolved_in_resolve_phase() -> None:
    async with stub_dns() as stub:
        result = await check(
            "a.stub.test",
            server=f"localhost:{stub.tcp_port}",
            transport_protocol="tcp",
            ip_version="ipv4",
        )
    assert result.success, result.message
    assert result.values["SERVER_IP"] == "127.0.0.1"


# DNS-over-TLS


async def test_dns_over_tls_with_trusted_certificate(ca: trustme.CA, ca_file: Path) -> None:
    async with stub_dns(tls=server_context(ca, "dot.stub.test")) as stub:
        result = await check(
            f"127.0.0.1:{stub.tcp_port}",
            query_name="a.stub.test",
            dns_over_tls=True,
            tls={"ca_file": str(ca_file), "server_name": "dot.stub.test"},
        )
    assert result.success, result.message
    assert result.values["IP"] == "192.0.2.1"


async def test_dns_over_tls_with_untrusted_certificate_fails(ca: trustme.CA) -> None:
    async with stub_dns(tls=server_context(ca, "127.0.0.1")) as stub:
        result = await check("a.stub.test", server=f"127.0.0.1:{stub.tcp_port}", dns_over_tls=True)
        unverified = await check(
            "a.stub.test",
            server=f"127.0.0.1:{stub.tcp_port}",
            dns_over_tls=True,
            tls={"verify": False},
        )
    assert not result.success
    assert result.message.startswith("TLS: ")
    assert "certificate" in result.message
    assert result.values["CONNECTED"] is False
    assert unverified.success, unverified.message


async def test_dns_over_tls_with_wrong_name_fails(ca: trustme.CA, ca_file: Path) -> None:
    async with stub_dns(tls=server_context(ca, "other.stub.test")) as stub:
        result = await check(
            "a.stub.test",
            server=f"127.0.0.1:{stub.tcp_port}",
            dns_over_tls=True,
            tls={"ca_file": str(ca_file)},
        )
    assert not result.success
    assert "TLS: " in result.message


# settings


def test_settings_normalise_and_reject() -> None:
    settings = DnsSettings.model_validate({"query_type": "mx", "valid_rcodes": ["nxdomain"]})
    assert settings.query_type == "MX"
    assert settings.valid_rcodes == ["NXDOMAIN"]
    bad: list[dict[str, Any]] = [
        {"query_type": "NOPE"},
        {"query_class": "XX"},
        {"valid_rcodes": ["FINE"]},
        {"validate_answer_rrs": {"fail_if_matches_regexp": ["("]}},
        {"validate_answer_rrs": {"fail_if_typo": ["x"]}},
        {"server": "host:99999"},
        {"source_ip_address": "example.com"},
        {"query_name": "a.test", "server": "127.0.0.1"},
        {"transport_protocol": "sctp"},
    ]
    for data in bad:
        with pytest.raises(ValidationError):
            DnsSettings.model_validate(data)


def test_split_server_forms() -> None:
    assert split_server("127.0.0.1", 53) == ("127.0.0.1", 53)
    assert split_server("127.0.0.1:5353", 53) == ("127.0.0.1", 5353)
    assert split_server("dns.example", 853) == ("dns.example", 853)
    assert split_server("::1", 53) == ("::1", 53)
    assert split_server("[::1]:5353", 53) == ("::1", 5353)
    assert split_server("[::1]", 53) == ("::1", 53)


def test_system_nameserver_reads_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n")
    assert system_nameserver(conf) == "192.0.2.53"
    conf.write_text("search example\n")
    assert system_nameserver(conf) == "127.0.0.1"
    assert system_nameserver(tmp_path / "missing") == "127.0.0.1"


def test_plugin_registers_the_probe() -> None:
    assert pudimd_probe_types() == [DnsProbe]
    assert DnsProbe.type == "dns"
    assert isinstance(DnsProbe, BlackboxProber)
    assert DnsProbe.blackbox_prober == "dns"


# blackbox_exporter


def test_from_blackbox_maps_a_full_block(ca_file: Path) -> None:
    settings = DnsProbe.from_blackbox(
        {
            "query_name": "example.com",
            "query_type": "MX",
            "query_class": "CH",
            "valid_rcodes": ["NOERROR", "NXDOMAIN"],
            "validate_answer_rrs": {"fail_if_matches_regexp": ["bad"]},
            "validate_authority_rrs": {"fail_if_all_match_regexp": [".*"]},
            "validate_additional_rrs": {"fail_if_none_matches_regexp": ["ns"]},
            "transport_protocol": "tcp",
            "preferred_ip_protocol": "ip4",
            "ip_protocol_fallback": False,
            "source_ip_address": "127.0.0.1",
            "dns_over_tls": True,
            "tls_config": {
                "ca_file": str(ca_file),
                "server_name": "dns.example",
                "insecure_skip_verify": True,
            },
            "recursion_desired": False,
        }
    )
    assert isinstance(settings, DnsSettings)
    assert settings.query_name == "example.com"
    assert (settings.query_type, settings.query_class) == ("MX", "CH")
    assert settings.valid_rcodes == ["NOERROR", "NXDOMAIN"]
    assert settings.validate_answer_rrs.fail_if_matches_regexp == ["bad"]
    assert settings.validate_authority_rrs.fail_if_all_match_regexp == [".*"]
    assert settings.validate_additional_rrs.fail_if_none_matches_regexp == ["ns"]
    assert settings.transport_protocol == "tcp"
    assert settings.dns_over_tls
    assert (settings.ip_version, settings.ip_fallback) == ("ipv4", False)
    assert settings.source_ip_address == "127.0.0.1"
    assert settings.tls.ca_file == ca_file
    assert settings.tls.server_name == "dns.example"
    assert settings.tls.verify is False
    assert settings.recursion_desired is False


def test_from_blackbox_uses_blackbox_defaults() -> None:
    settings = DnsProbe.from_blackbox({"query_name": "example.com"})
    assert settings.query_type == "ANY"
    assert settings.query_class == "IN"
    assert settings.valid_rcodes == ["NOERROR"]
    assert settings.transport_protocol == "udp"
    assert (settings.ip_version, settings.ip_fallback) == ("ipv6", True)
    assert settings.recursion_desired is True
    assert settings.tls.verify is True


@pytest.mark.parametrize(
    ("block", "field_name"),
    [
        ({}, "query_name"),
        ({"query_name": "a.test", "dns_over_tls": True}, "transport_protocol"),
        ({"query_name": "a.test", "query_type": "BOGUS"}, "query_type"),
        ({"query_name": "a.test", "preferred_ip_protocol": "ip5"}, "preferred_ip_protocol"),
        ({"query_name": "a.test", "frobnicate": True}, "frobnicate"),
        ({"query_name": "a.test", "tls_config": {"min_version": "TLS13"}}, "min_version"),
    ],
)
def test_from_blackbox_rejects_what_it_cannot_honour(
    block: dict[str, Any], field_name: str
) -> None:
    with pytest.raises(ValueError, match=field_name):
        DnsProbe.from_blackbox(block)


async def test_blackbox_metrics_of_a_reply() -> None:
    async with stub_dns() as stub:
        settings = DnsProbe.from_blackbox({"query_name": "a.stub.test", "query_type": "A"})
        probe = DnsProbe(settings)
        result = await probe.check(f"127.0.0.1:{stub.udp_port}", 5)
    assert result.success, result.message
    samples = DnsProbe.blackbox_metrics(result)
    by_name = {(m.name, tuple(m.labels.items())): m for m in samples}
    assert by_name[("probe_dns_answer_rrs", ())].value == 1
    assert by_name[("probe_dns_authority_rrs", ())].value == 0
    assert by_name[("probe_dns_additional_rrs", ())].value == 1
    assert by_name[("probe_dns_query_succeeded", ())].value == 1
    assert by_name[("probe_dns_answer_rrs", ())].help == (
        "Returns number of entries in the answer resource record list"
    )
    durations = [m for m in samples if m.name == "probe_dns_duration_seconds"]
    assert [m.labels["phase"] for m in durations] == ["resolve", "connect", "request"]
    assert durations[2].value == result.phases["query"] > 0
    assert all(m.help == "Duration of DNS request by phase" for m in durations)
    assert all(m.type == "gauge" for m in samples)
    assert "probe_dns_serial" not in {m.name for m in samples}


def test_blackbox_metrics_of_a_failure_and_of_soa() -> None:
    failed = ProbeResult.failure("connection refused", phases={"resolve": 0.0, "connect": 0.001})
    names = {m.name: m.value for m in DnsProbe.blackbox_metrics(failed)}
    assert names["probe_dns_query_succeeded"] == 0
    assert names["probe_dns_answer_rrs"] == 0
    assert "probe_dns_serial" not in names
    soa = ProbeResult(success=True, metrics={"query_succeeded": 1, "serial": 2024010101})
    serial = [m for m in DnsProbe.blackbox_metrics(soa) if m.name == "probe_dns_serial"]
    assert [(m.value, m.help) for m in serial] == [
        (2024010101, "Returns the serial number of the zone")
    ]
