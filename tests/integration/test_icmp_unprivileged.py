"""The ``icmp`` probe's unprivileged datagram sockets, in a network namespace of its own
(``unshare -n``) whose ``net.ipv4.ping_group_range`` the test widens to every group: the
machine's own setting is left alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import missing, require_binary

pytestmark = [pytest.mark.integration]

_PROBE = """
import asyncio, json
from pudimd_plugins.probes.icmp import IcmpProbe, IcmpSettings
async def main():
    out = {}
    for mode, ip in (("auto", "127.0.0.1"), (False, "127.0.0.1"), (False, "::1")):
        probe = IcmpProbe(IcmpSettings(count=2, interval="10ms", privileged=mode))
        result = await probe.check(ip, 3)
        out[f"{mode} {ip}"] = [result.success, result.message, result.metrics["privileged"]]
    print(json.dumps(out))
asyncio.run(main())
"""


def test_unprivileged_sockets_are_used_where_ping_group_range_allows() -> None:
    unshare = require_binary("unshare", "/usr/bin")
    ip = require_binary("ip", "/usr/sbin", "/sbin")
    script = (
        f"{ip} link set lo up && "
        "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range && "
        f'exec "{sys.executable}" -c "$0"'
    )
    proc = subprocess.run(
        [unshare, "--net", "sh", "-c", script, _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        missing(f"network namespaces (unshare --net: {proc.stderr.strip()})")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["auto 127.0.0.1"] == [True, "", 0.0]  # auto picks the datagram socket
    assert out["False 127.0.0.1"] == [True, "", 0.0]
    assert out["False ::1"] == [True, "", 0.0]  # the same sysctl governs ICMPv6 sockets
