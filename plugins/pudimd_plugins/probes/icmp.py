"""The ``icmp`` probe: send ICMP echo requests (ping) and count the replies.

Target: a host name or an IP address (IPv4 or IPv6).  A name is resolved once per check and
the first address (in ``ip_version`` order) is pinged.

The packets go through icmplib.  ``privileged: auto`` uses the kernel's unprivileged ICMP
datagram sockets when ``net.ipv4.ping_group_range`` covers one of our groups (Linux; this
sysctl governs IPv6 too), and raw sockets otherwise (root or ``CAP_NET_RAW``).  Packets are
sent every ``interval``; replies are awaited until every packet is answered or the check's
timeout is near (a packet still unanswered then is lost).  One packet by default, like the
Blackbox exporter.

Settings (the block under ``icmp:`` in a target)::

    count: 1                 # echo requests per check (1-100)
    interval: 1s             # time between two requests
    payload_size: 56         # bytes of payload per request
    ttl: 64                  # IPv4 TTL / IPv6 hop limit of the requests
    dont_fragment: false     # set the Don't Fragment bit (IPv4) / no local fragmentation (IPv6)
    source_ip: null          # local address to send from
    ip_version: any          # any | ipv4 | ipv6: address family to try first
    ip_fallback: true        # with ipv4/ipv6, use the other family when the name has none
    max_loss_percent: null   # fail when more packets are lost; null: fail only when all are
    privileged: auto         # auto | true (raw socket) | false (datagram socket)

Result: success when at least one reply came back and the loss is within
``max_loss_percent``.  ``message`` says why not (``no reply to 3 packets (100% loss)``,
``40% packet loss (limit 20%)``, ``destination unreachable: ...``, ``resolving 'x': ...``,
``cannot open an ICMP socket: ...``).

Phases (seconds): ``resolve``, ``setup`` (opening the socket), ``rtt`` (from the first
request until the last reply, or until giving up).

Metrics: ``rtt_min``, ``rtt_avg``, ``rtt_max``, ``rtt_mdev`` (seconds, over the replies),
``loss_percent``, ``packets_sent``, ``packets_received``, ``ip_protocol`` (4 or 6),
``privileged`` (1 for a raw socket, 0 for a datagram one).

Values (for conditions): ``IP`` (the address pinged), ``CONNECTED`` (any reply came back),
``LOSS`` (percent lost, float), ``RTT`` (average round trip in seconds, float; absent without
replies).

Blackbox exporter: serves the ``icmp`` prober (``preferred_ip_protocol``,
``ip_protocol_fallback``, ``source_ip_address``, ``payload_size``, ``dont_fragment``,
``ttl``) with its metrics ``probe_icmp_duration_seconds{phase}``.  icmplib does not expose the
reply's hop limit, so ``probe_icmp_reply_hop_limit`` is not exported (blackbox leaves it out
too when it cannot read it).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, IPvAnyAddress

from pudimd.durations import PositiveDuration
from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings
from pudimd_plugins.probes._net import Failure, PhaseClock, ip_protocol, resolve

if TYPE_CHECKING:
    from pudimd.blackbox import Metric

__all__ = ["IcmpProbe", "IcmpSettings", "pudimd_probe_types", "unprivileged_allowed"]

_PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"
_IP_MTU_DISCOVER, _IP_PMTUDISC_DO = 10, 2  # Linux <linux/in.h>
_IPV6_MTU_DISCOVER, _IPV6_PMTUDISC_DO = 23, 2  # Linux <linux/in6.h>


class IcmpSettings(PluginSettings):
    """Settings of the ``icmp`` probe (see the module docstring)."""

    count: int = Field(default=1, ge=1, le=100, description="Echo requests per check.")
    interval: PositiveDuration = Field(
        default=timedelta(seconds=1), description="Time between two requests."
    )
    payload_size: int = Field(
        default=56, ge=0, le=65000, description="Bytes of payload per request."
    )
    ttl: int = Field(
        default=64, ge=1, le=255, description="IPv4 TTL / IPv6 hop limit of the requests."
    )
    dont_fragment: bool = Field(
        default=False, description="Set the Don't Fragment bit (no local fragmentation)."
    )
    source_ip: IPvAnyAddress | None = Field(
        default=None, description="Local address to send from."
    )
    ip_version: Literal["any", "ipv4", "ipv6"] = Field(
        default="any", description="Address family to try first."
    )
    ip_fallback: bool = Field(
        default=True, description="With ipv4/ipv6, use the other family when needed."
    )
    max_loss_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Fail when more packets are lost (null: only when all are lost).",
    )
    privileged: Literal["auto"] | bool = Field(
        default="auto",
        description="auto: datagram socket where ping_group_range allows, else raw; "
        "true: raw socket; false: datagram socket.",
    )


def unprivileged_allowed() -> bool:
    """Whether this process may open unprivileged ICMP datagram sockets: Linux lets the
    groups in ``net.ipv4.ping_group_range`` do so; macOS lets everyone."""
    if sys.platform == "darwin":
        return True
    try:
        with open(_PING_GROUP_RANGE, encoding="ascii") as file:
            low, high = (int(part) for part in file.read().split())
    except (OSError, ValueError):
        return False
    groups = {os.getgid(), os.getegid(), *os.getgroups()}
    return any(low <= gid <= high for gid in groups)


def _permission_hint(privileged: bool) -> str:
    if privileged:
        return "raw ICMP sockets need root or CAP_NET_RAW"
    try:
        with open(_PING_GROUP_RANGE, encoding="ascii") as file:
            shown = " ".join(file.read().split())
    except OSError:
        shown = "unknown"
    return (
        f"net.ipv4.ping_group_range ({shown}) does not include group {os.getegid()}, "
        "so unprivileged ICMP sockets are refused"
    )


class IcmpProbe:
    """Ping a host; see the module docstring."""

    type = "icmp"
    Settings = IcmpSettings
    blackbox_prober = "icmp"

    def __init__(self, settings: IcmpSettings) -> None:
        self.settings = settings

    async def aclose(self) -> None:
        """Nothing to release: every check opens and closes its own socket."""

    def _use_raw_socket(self) -> bool:
        mode = self.settings.privileged
        if isinstance(mode, bool):
            return mode
        return not unprivileged_allowed()

    async def check(self, target: str, timeout: float) -> ProbeResult:
        start = time.perf_counter()
        clock = PhaseClock("resolve", "setup", "rtt")
        metrics: dict[str, float] = {}
        values: dict[str, Any] = {"CONNECTED": False}
        # stop waiting for replies a little before the core's own deadline, so the
        # statistics of the packets that did come back are still reported
        budget = max(timeout - min(0.1, timeout / 10), 0.0)
        message = ""
        try:
            async with asyncio.timeout(budget):
                ip, family = await self._resolve(target)
            values["IP"] = ip
            metrics["ip_protocol"] = ip_protocol(family)
            message = await self._ping(ip, family, budget - (time.perf_counter() - start),
                                       clock, metrics, values)
        except TimeoutError:
            message = f"timeout after {timeout:g}s during {clock.phase}"
        except Failure as exc:
            message = exc.message
        clock.enter("")
        return ProbeResult(
            success=not message,
            duration=time.perf_counter() - start,
            message=message,
            phases=clock.phases,
            metrics=metrics,
            values=values,
        )

    async def _resolve(self, target: str) -> tuple[str, int]:
        host = target.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            raise Failure("invalid target '': expected a host name or an IP address")
        loop = asyncio.get_running_loop()
        addresses = await resolve(
            loop, host, 0, self.settings.ip_version, self.settings.ip_fallback
        )
        family, ip = addresses[0]
        return ip, family

    def _open(self, family: int, raw: bool) -> Any:
        """An icmplib ``AsyncSocket`` (icmplib has no type hints)."""
        from icmplib import (  # type: ignore[import-untyped]
            AsyncSocket,
            ICMPSocketError,
            ICMPv4Socket,
            ICMPv6Socket,
            SocketAddressError,
            SocketPermissionError,
        )

        kind = ICMPv6Socket if family == socket.AF_INET6 else ICMPv4Socket
        source = str(self.settings.source_ip) if self.settings.source_ip else None
        try:
            icmp_socket = kind(source, raw)
        except SocketPermissionError:
            raise Failure(f"cannot open an ICMP socket: {_permission_hint(raw)}") from None
        except SocketAddressError:
            raise Failure(f"cannot send from {source}: address not available here") from None
        except ICMPSocketError as exc:
            raise Failure(f"cannot open an ICMP socket: {exc}") from None
        if self.settings.dont_fragment:
            if family == socket.AF_INET6:
                level, option, value = socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _IPV6_PMTUDISC_DO
            else:
                level, option, value = socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DO
            try:
                icmp_socket.sock.setsockopt(level, option, value)
            except OSError as exc:
                icmp_socket.close()
                raise Failure(f"cannot set Don't Fragment: {exc.strerror}") from None
        return AsyncSocket(icmp_socket)

    async def _ping(
        self,
        ip: str,
        family: int,
        budget: float,
        clock: PhaseClock,
        metrics: dict[str, float],
        values: dict[str, Any],
    ) -> str:
        """Send the requests and collect the replies; the failure message, or ''."""
        from icmplib import ICMPError, ICMPLibError, ICMPRequest

        settings = self.settings
        count = settings.count
        clock.enter("setup")
        raw = self._use_raw_socket()
        metrics["privileged"] = 1.0 if raw else 0.0
        sock = self._open(family, raw)
        ident = random.randint(1, 0xFFFF)
        requests: dict[int, Any] = {}
        rtts: dict[int, float] = {}
        errors: dict[int, str] = {}  # by sequence; -1: a socket error
        all_sent = asyncio.Event()

        async def send() -> None:
            for sequence in range(count):
                if sequence:
                    await asyncio.sleep(settings.interval.total_seconds())
                request = ICMPRequest(
                    destination=ip,
                    id=ident,
                    sequence=sequence,
                    payload_size=settings.payload_size,
                    ttl=settings.ttl,
                )
                try:
                    sock.send(request)
                except ICMPLibError as exc:
                    errors[-1] = f"sending: {exc}"
                    break
                requests[sequence] = request
            all_sent.set()
            if len(rtts) + len(errors) >= len(requests):  # nothing left to wait for
                receiver.cancel()

        async def receive() -> None:
            while len(rtts) + len(errors) < len(requests) or not all_sent.is_set():
                try:
                    reply = await sock.receive(None, max(budget, 0.001))
                except ICMPLibError as exc:
                    errors[-1] = f"receiving: {exc}"
                    return
                request = requests.get(reply.sequence)
                if request is None or reply.id != request.id or reply.sequence in rtts or (
                    reply.sequence in errors
                ):
                    continue  # someone else's packet (raw sockets see every ICMP message)
                try:
                    reply.raise_for_status()
                except ICMPError as exc:
                    text = str(exc).rstrip(".")
                    errors[reply.sequence] = text[:1].lower() + text[1:]
                    continue
                rtts[reply.sequence] = max(reply.time - request.time, 0.0)

        clock.enter("rtt")
        try:
            async with asyncio.timeout(budget - (time.perf_counter() - clock.since)):
                async with asyncio.TaskGroup() as group:
                    receiver = group.create_task(receive())
                    group.create_task(send())
        except TimeoutError:
            pass
        finally:
            sock.close()
        clock.enter("")

        sent, received = len(requests), len(rtts)
        loss = 100.0 * (count - received) / count
        metrics.update(
            packets_sent=float(sent), packets_received=float(received), loss_percent=loss
        )
        values["LOSS"] = loss
        values["CONNECTED"] = received > 0
        if rtts:
            times = list(rtts.values())
            avg = statistics.fmean(times)
            metrics.update(
                rtt_min=min(times),
                rtt_avg=avg,
                rtt_max=max(times),
                rtt_mdev=statistics.pstdev(times),
            )
            values["RTT"] = avg
        if not received:
            if errors:
                return list(errors.values())[-1]
            return f"no reply to {count} packet{'s' if count > 1 else ''} (100% loss)"
        limit = settings.max_loss_percent
        if limit is not None and loss > limit:
            return f"{loss:g}% packet loss (limit {limit:g}%)"
        return ""

    @classmethod
    def from_blackbox(cls, prober: Mapping[str, Any]) -> IcmpSettings:
        """The settings equivalent to a blackbox ``icmp:`` block (see the docstring)."""
        known = {
            "preferred_ip_protocol",
            "ip_protocol_fallback",
            "source_ip_address",
            "payload_size",
            "dont_fragment",
            "ttl",
        }
        for key in prober:
            if key not in known:
                raise ValueError(f"icmp.{key}: not supported by pudimd's icmp probe")
        protocol = str(prober.get("preferred_ip_protocol") or "ip6").lower()
        versions = {"ip4": "ipv4", "ipv4": "ipv4", "ip6": "ipv6", "ipv6": "ipv6"}
        if protocol not in versions:
            raise ValueError(
                f"icmp.preferred_ip_protocol: expected ip4 or ip6, got {protocol!r}"
            )
        settings: dict[str, Any] = {
            "ip_version": versions[protocol],
            "ip_fallback": bool(prober.get("ip_protocol_fallback", True)),
            "dont_fragment": bool(prober.get("dont_fragment", False)),
        }
        if prober.get("source_ip_address"):
            settings["source_ip"] = prober["source_ip_address"]
        if prober.get("payload_size"):
            settings["payload_size"] = prober["payload_size"]
        if prober.get("ttl"):
            settings["ttl"] = prober["ttl"]
        try:
            return IcmpSettings.model_validate(settings)
        except ValueError as exc:
            raise ValueError(f"icmp: {exc}") from None

    @staticmethod
    def blackbox_metrics(result: ProbeResult) -> list[Metric]:
        """``probe_icmp_duration_seconds{phase}`` as blackbox_exporter exports it."""
        from pudimd.blackbox import Metric

        help_text = "Duration of icmp request by phase"
        return [
            Metric("probe_icmp_duration_seconds", help_text, result.phases.get(phase, 0.0),
                   {"phase": phase})
            for phase in ("resolve", "setup", "rtt")
        ]


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``icmp`` probe."""
    return [IcmpProbe]
