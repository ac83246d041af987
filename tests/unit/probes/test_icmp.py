"""The ``icmp`` probe against the loopback interface (the kernel answers the pings).

Raw sockets need root or CAP_NET_RAW, which CI has; the unprivileged datagram path runs in
a network namespace of its own whose ``ping_group_range`` the test may widen (see
``tests/integration/test_icmp_unprivileged.py``)."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from pudimd_plugins.probes.icmp import (
    IcmpProbe,
    IcmpSettings,
    pudimd_probe_types,
    unprivileged_allowed,
)
from pydantic import ValidationError

from tests.helpers import missing, require_ipv6_loopback, run_check

pytestmark = pytest.mark.anyio


def require_raw_sockets() -> None:
    import socket

    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    except PermissionError:
        missing("permission to open raw ICMP sockets (root or CAP_NET_RAW)")


async def check(target: str, within: float = 5.0, **settings: Any) -> Any:
    return await run_check(IcmpProbe, target, within, **settings)


def test_plugin_registers_the_icmp_type() -> None:
    assert pudimd_probe_types() == [IcmpProbe]
    assert IcmpProbe.type == "icmp"
    assert IcmpProbe.Settings is IcmpSettings


def test_settings_reject_out_of_range_values() -> None:
    with pytest.raises(ValidationError):
        IcmpSettings(count=0)
    with pytest.raises(ValidationError):
        IcmpSettings(max_loss_percent=101)
    with pytest.raises(ValidationError):
        IcmpSettings(privileged="sometimes")


async def test_ping_ipv4_loopback_succeeds_with_stats() -> None:
    require_raw_sockets()
    result = await check("127.0.0.1", count=3, interval="20ms", privileged=True)
    assert result.success, result.message
    assert result.metrics["packets_sent"] == 3
    assert result.metrics["packets_received"] == 3
    assert result.metrics["loss_percent"] == 0
    assert 0 < result.metrics["rtt_min"] <= result.metrics["rtt_avg"] <= result.metrics["rtt_max"]
    assert result.metrics["rtt_max"] < 1
    assert result.metrics["ip_protocol"] == 4
    assert result.metrics["privileged"] == 1
    assert result.values == {
        "IP": "127.0.0.1",
        "CONNECTED": True,
        "LOSS": 0.0,
        "RTT": result.metrics["rtt_avg"],
    }
    # two intervals between three packets (asyncio may run a timer up to its clock
    # resolution early: 0.03997 s was seen)
    assert result.phases["rtt"] > 0.04 - 0.002


async def test_ping_ipv6_loopback_succeeds() -> None:
    require_ipv6_loopback()
    require_raw_sockets()
    result = await check("::1", privileged=True)
    assert result.success, result.message
    assert result.metrics["ip_protocol"] == 6
    assert result.values["IP"] == "::1"


async def test_host_name_is_resolved_in_the_preferred_family() -> None:
    require_raw_sockets()
    result = await check("localhost", ip_version="ipv4", privileged=True)
    assert result.success, result.message
    assert result.values["IP"] == "127.0.0.1"
    assert result.phases["resolve"] > 0


async def test_payload_ttl_and_dont_fragment_are_accepted() -> None:
    require_raw_sockets()
    result = await check(
        "127.0.0.1", payload_size=1400, ttl=1, dont_fragment=True, privileged=True
    )
    assert result.success, result.message


async def test_unresolvable_name_fails_with_reason() -> None:
    result = await check("no-such-host.invalid")
    assert not result.success
    assert result.message.startswith("resolving 'no-such-host.invalid':")
    assert result.values["CONNECTED"] is False


async def test_unanswered_address_fails_within_the_timeout() -> None:
    require_raw_sockets()
    started = time.perf_counter()
    # TEST-NET-3: nobody answers; depending on the route, a gateway may say unreachable
    result = await check("203.0.113.1", within=0.5, count=2, interval="50ms", privileged=True)
    elapsed = time.perf_counter() - started
    assert not result.success
    assert elapsed < 0.6
    assert result.metrics["packets_received"] == 0
    assert result.metrics["loss_percent"] == 100
    assert result.values["CONNECTED"] is False
    assert result.message in {
        "no reply to 2 packets (100% loss)",
    } or "unreachable" in result.message


async def test_packets_not_sent_before_the_timeout_count_as_lost() -> None:
    require_raw_sockets()
    result = await check("127.0.0.1", within=0.5, count=4, interval="300ms", privileged=True)
    # packets 1 and 2 go out at 0 and 300 ms; 3 and 4 would be after the deadline
    assert result.metrics["packets_received"] == 2
    assert result.metrics["loss_percent"] == 50
    assert result.success, result.message  # some replies: not a failure by default


async def test_max_loss_percent_fails_a_lossy_check() -> None:
    require_raw_sockets()
    result = await check(
        "127.0.0.1", within=0.5, count=4, interval="300ms", max_loss_percent=25, privileged=True
    )
    assert not result.success
    assert result.message == "50% packet loss (limit 25%)"
    assert result.values["CONNECTED"] is True


async def test_unprivileged_mode_follows_ping_group_range() -> None:
    result = await check("127.0.0.1", privileged=False)
    assert result.metrics["privileged"] == 0
    if unprivileged_allowed():
        assert result.success, result.message
    else:
        assert not result.success
        assert "net.ipv4.ping_group_range" in result.message
        assert f"group {os.getegid()}" in result.message


async def test_auto_mode_picks_the_socket_the_kernel_allows() -> None:
    result = await check("127.0.0.1")
    assert result.metrics["privileged"] == (0 if unprivileged_allowed() else 1)
    if not unprivileged_allowed() and os.geteuid() != 0:
        assert not result.success
        assert "raw ICMP sockets need root or CAP_NET_RAW" in result.message
    else:
        assert result.success, result.message


def test_blackbox_module_maps_to_settings() -> None:
    settings = IcmpProbe.from_blackbox(
        {
            "preferred_ip_protocol": "ip4",
            "ip_protocol_fallback": False,
            "source_ip_address": "127.0.0.1",
            "payload_size": 100,
            "dont_fragment": True,
            "ttl": 10,
        }
    )
    assert settings.ip_version == "ipv4"
    assert settings.ip_fallback is False
    assert str(settings.source_ip) == "127.0.0.1"
    assert settings.payload_size == 100
    assert settings.dont_fragment is True
    assert settings.ttl == 10
    assert settings.count == 1
    # blackbox prefers IPv6 unless told otherwise
    assert IcmpProbe.from_blackbox({}).ip_version == "ipv6"


def test_blackbox_module_with_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match=r"icmp\.hop_limit"):
        IcmpProbe.from_blackbox({"hop_limit": 3})
    with pytest.raises(ValueError, match="preferred_ip_protocol"):
        IcmpProbe.from_blackbox({"preferred_ip_protocol": "ip5"})


async def test_blackbox_metrics_have_the_three_phases() -> None:
    require_raw_sockets()
    result = await check("127.0.0.1", privileged=True)
    metrics = IcmpProbe.blackbox_metrics(result)
    assert {m.labels["phase"]: m.value for m in metrics} == {
        "resolve": result.phases["resolve"],
        "setup": result.phases["setup"],
        "rtt": result.phases["rtt"],
    }
    assert {m.name for m in metrics} == {"probe_icmp_duration_seconds"}
    assert metrics[0].help == "Duration of icmp request by phase"
