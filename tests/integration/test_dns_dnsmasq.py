"""The ``dns`` probe against a real dnsmasq (``tests/dnsmasq.py``) over UDP and TCP: every
record type, rcodes, the regex validators and the AD flag check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pudimd_plugins.probes.dns import DnsProbe, DnsSettings

from pudimd.results import ProbeResult
from tests.dnsmasq import EXAMPLE_SERIAL, HOST, run_dnsmasq

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TRANSPORTS = ["udp", "tcp"]


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[str]:
    """``host:port`` of a dnsmasq serving ``tests.dnsmasq.EXAMPLE_ZONE``."""
    with run_dnsmasq() as port:
        yield f"{HOST}:{port}"


async def ask(server: str, name: str, **settings: Any) -> ProbeResult:
    probe = DnsProbe(DnsSettings.model_validate({"server": server, **settings}))
    try:
        return await probe.check(name, 5.0)
    finally:
        await probe.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("query_type", "name", "body", "ip"),
    [
        ("A", "www.example.test", "192.0.2.10", "192.0.2.10"),
        ("AAAA", "www.example.test", "2001:db8::10", "2001:db8::10"),
        ("CNAME", "alias.example.test", "www.example.test.", None),
        ("MX", "example.test", "10 mail.example.test.", None),
        ("TXT", "example.test", '"v=spf1 -all" "hello world"', None),
        ("SRV", "_sip._tcp.example.test", "1 2 5060 sip.example.test.", None),
        ("NS", "example.test", "ns.example.test.", None),
        ("PTR", "10.2.0.192.in-addr.arpa", "www.example.test.", None),
        ("PTR", "192.0.2.10", "www.example.test.", None),  # an IP is reversed
    ],
)
async def test_record_types(
    dnsmasq: str, transport: str, query_type: str, name: str, body: str, ip: str | None
) -> None:
    result = await ask(dnsmasq, name, query_type=query_type, transport_protocol=transport)
    assert result.success, result.message
    assert result.status == result.values["DNS_RCODE"] == "NOERROR"
    assert result.values["BODY"] == body
    assert result.values.get("IP") == ip
    assert result.values["CONNECTED"] is True
    assert result.metrics["answer_rrs"] == 1
    # dnsmasq adds the zone's NS to the authority section, unless it is the answer
    assert result.metrics["authority_rrs"] == (0 if query_type == "NS" else 1)
    assert result.metrics["ad"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_soa_gives_serial(dnsmasq: str, transport: str) -> None:
    result = await ask(dnsmasq, "example.test", query_type="SOA", transport_protocol=transport)
    assert result.success, result.message
    assert result.values["BODY"].startswith(
        f"ns.example.test. hostmaster.example.test. {EXAMPLE_SERIAL} "
    )
    assert result.metrics["serial"] == EXAMPLE_SERIAL
    samples = {m.name: m.value for m in DnsProbe.blackbox_metrics(result)}
    assert samples["probe_dns_serial"] == EXAMPLE_SERIAL


async def test_cname_answer_follows_to_the_address(dnsmasq: str) -> None:
    result = await ask(dnsmasq, "alias.example.test", query_type="A")
    assert result.success, result.message
    assert result.values["BODY"] == "www.example.test.\n192.0.2.10"
    assert result.values["IP"] == "192.0.2.10"
    assert result.metrics["answer_rrs"] == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_nxdomain_fails_with_its_rcode(dnsmasq: str, transport: str) -> None:
    result = await ask(dnsmasq, "nxdomain.example.test", transport_protocol=transport)
    assert not result.success
    assert result.status == result.values["DNS_RCODE"] == "NXDOMAIN"
    assert result.message == "rcode NXDOMAIN is not one of NOERROR"
    assert result.metrics["answer_rrs"] == 0
    assert result.metrics["authority_rrs"] == 1  # the SOA
    assert result.values["CONNECTED"] is True


async def test_valid_rcodes_accept_nxdomain(dnsmasq: str) -> None:
    result = await ask(dnsmasq, "nxdomain.example.test", valid_rcodes=["NXDOMAIN"])
    assert result.success, result.message
    assert result.status == "NXDOMAIN"
    wrong = await ask(dnsmasq, "www.example.test", valid_rcodes=["NXDOMAIN"])
    assert not wrong.success
    assert wrong.message == "rcode NOERROR is not one of NXDOMAIN"


async def test_name_outside_the_zones_is_refused(dnsmasq: str) -> None:
    result = await ask(dnsmasq, "www.example.org")
    assert not result.success
    assert result.status == "REFUSED"
    assert (await ask(dnsmasq, "www.example.org", valid_rcodes=["REFUSED"])).success


async def test_query_name_asks_the_target_server(dnsmasq: str) -> None:
    probe = DnsProbe(DnsSettings(query_name="www.example.test", transport_protocol="tcp"))
    result = await probe.check(dnsmasq, 5.0)
    assert result.success, result.message
    assert result.values["IP"] == "192.0.2.10"


# regex validators: each passes on the right reply and fails on the wrong one


async def test_fail_if_matches_regexp(dnsmasq: str) -> None:
    ok = await ask(
        dnsmasq, "www.example.test", validate_answer_rrs={"fail_if_matches_regexp": ["192.0.2.99"]}
    )
    assert ok.success, ok.message
    bad = await ask(
        dnsmasq,
        "www.example.test",
        validate_answer_rrs={"fail_if_matches_regexp": [r"192\.0\.2\.10$"]},
    )
    assert not bad.success
    assert bad.message.startswith(r"answer RR matches /192\.0\.2\.10$/: www.example.test.")


async def test_fail_if_not_matches_regexp(dnsmasq: str) -> None:
    # blackbox's RR text: name TAB ttl TAB class TAB type TAB data
    rr = r"^www\.example\.test\.\t\d+\tIN\tA\t192\.0\.2\.10$"
    ok = await ask(
        dnsmasq, "www.example.test", validate_answer_rrs={"fail_if_not_matches_regexp": [rr]}
    )
    assert ok.success, ok.message
    bad = await ask(
        dnsmasq, "alias.example.test", validate_answer_rrs={"fail_if_not_matches_regexp": [rr]}
    )
    assert not bad.success
    assert bad.message.startswith("answer RR does not match")
    empty = await ask(
        dnsmasq,
        "nxdomain.example.test",
        valid_rcodes=["NXDOMAIN"],
        validate_answer_rrs={"fail_if_not_matches_regexp": [rr]},
    )
    assert not empty.success
    assert empty.message == "no answer RRs to match"


async def test_fail_if_all_match_regexp(dnsmasq: str) -> None:
    ok = await ask(
        dnsmasq, "alias.example.test", validate_answer_rrs={"fail_if_all_match_regexp": ["CNAME"]}
    )
    assert ok.success, ok.message  # the A record does not match
    bad = await ask(
        dnsmasq,
        "alias.example.test",
        query_type="CNAME",
        validate_answer_rrs={"fail_if_all_match_regexp": ["CNAME"]},
    )
    assert not bad.success
    assert bad.message == "every answer RR matches /CNAME/"


async def test_fail_if_none_matches_regexp(dnsmasq: str) -> None:
    ok = await ask(
        dnsmasq,
        "alias.example.test",
        validate_answer_rrs={"fail_if_none_matches_regexp": ["192.0.2.10"]},
    )
    assert ok.success, ok.message
    bad = await ask(
        dnsmasq,
        "alias.example.test",
        validate_answer_rrs={"fail_if_none_matches_regexp": ["192.0.2.99"]},
    )
    assert not bad.success
    assert bad.message == "no answer RR matches /192.0.2.99/"


async def test_authority_rrs_are_validated(dnsmasq: str) -> None:
    ok = await ask(
        dnsmasq,
        "www.example.test",
        validate_authority_rrs={"fail_if_none_matches_regexp": [r"\tNS\tns\.example\.test\.$"]},
    )
    assert ok.success, ok.message
    bad = await ask(
        dnsmasq,
        "nxdomain.example.test",
        valid_rcodes=["NXDOMAIN"],
        validate_authority_rrs={"fail_if_matches_regexp": ["SOA"]},
    )
    assert not bad.success
    assert bad.message.startswith("authority RR matches /SOA/")


async def test_additional_rrs_are_validated(dnsmasq: str) -> None:
    # dnsmasq sends no additional records: requiring one fails, forbidding one passes
    ok = await ask(
        dnsmasq,
        "example.test",
        query_type="MX",
        validate_additional_rrs={"fail_if_matches_regexp": [".*"]},
    )
    assert ok.success, ok.message
    assert ok.metrics["additional_rrs"] == 0
    bad = await ask(
        dnsmasq,
        "example.test",
        query_type="MX",
        validate_additional_rrs={"fail_if_none_matches_regexp": ["mail"]},
    )
    assert not bad.success
    assert bad.message == "no additional RRs to match"


async def test_require_ad_fails_against_dnsmasq(dnsmasq: str) -> None:
    result = await ask(dnsmasq, "www.example.test", require_ad=True, dnssec_ok=True)
    assert not result.success
    assert result.message == "no AD flag in the reply (not DNSSEC-authenticated)"
    assert result.metrics["ad"] == 0
    assert (await ask(dnsmasq, "www.example.test", dnssec_ok=True)).success


async def test_blackbox_module_against_dnsmasq(dnsmasq: str) -> None:
    settings = DnsProbe.from_blackbox(
        {
            "query_name": "www.example.test",
            "query_type": "A",
            "preferred_ip_protocol": "ip4",
            "validate_answer_rrs": {
                "fail_if_not_matches_regexp": ["www.example.test.\t.*\tIN\tA\t192.0.2.10"]
            },
        }
    )
    result = await DnsProbe(settings).check(dnsmasq, 5.0)
    assert result.success, result.message
    samples = {(m.name, m.labels.get("phase")): m.value for m in DnsProbe.blackbox_metrics(result)}
    assert samples[("probe_dns_answer_rrs", None)] == 1
    assert samples[("probe_dns_authority_rrs", None)] == 1
    assert samples[("probe_dns_additional_rrs", None)] == 0
    assert samples[("probe_dns_query_succeeded", None)] == 1
    assert samples[("probe_dns_duration_seconds", "request")] > 0
