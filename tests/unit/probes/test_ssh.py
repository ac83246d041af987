"""The ``ssh`` probe against small asyncio banner servers on loopback (the real sshd is in
``tests/integration/test_sshd.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pudimd_plugins.probes._net import Failure, host_port
from pudimd_plugins.probes.ssh import SshProbe, SshSettings, pudimd_probe_types
from pydantic import ValidationError

import pudimd
from tests.helpers import free_port, run_check

pytestmark = pytest.mark.anyio


class Banner:
    """A server that writes ``lines`` to each client and records what it sends back."""

    def __init__(self, *lines: bytes, close: bool = False) -> None:
        self.lines = lines
        self.close = close
        self.received: list[bytes] = []
        self.port = 0

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Banner]:
        writers: list[asyncio.StreamWriter] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            for line in self.lines:
                writer.write(line)
            await writer.drain()
            if not self.close:
                self.received.append(await reader.read())  # until the client closes
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            for writer in writers:
                writer.close()
            server.close()
            await server.wait_closed()


async def check(target: str, within: float = 5.0, **settings: Any) -> Any:
    return await run_check(SshProbe, target, within, **settings)


OPENSSH = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"


def test_plugin_registers_the_ssh_type() -> None:
    assert pudimd_probe_types() == [SshProbe]


async def test_identification_is_parsed_and_ours_sent_back() -> None:
    async with Banner(OPENSSH).serving() as server:
        result = await check(f"127.0.0.1:{server.port}")
        for _ in range(100):  # the server records once it sees our close
            if server.received:
                break
            await asyncio.sleep(0.01)
    assert result.success, result.message
    assert result.status == "2.0"
    assert result.values["BANNER"] == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
    assert result.values["SSH_VERSION"] == "2.0"
    assert result.values["SSH_SOFTWARE"] == "OpenSSH_9.2p1"
    assert result.values["SSH_COMMENTS"] == "Debian-2+deb12u3"
    assert result.values["CONNECTED"] is True
    assert result.values["IP"] == "127.0.0.1"
    assert result.phases["banner"] > 0
    assert server.received == [f"SSH-2.0-pudimd_{pudimd.__version__}\r\n".encode()]


async def test_lines_before_the_identification_are_skipped() -> None:
    banner = Banner(b"Welcome\r\n", b"to the box\r\n", b"SSH-2.0-dropbear_2022.83\r\n")
    async with banner.serving() as server:
        result = await check(f"127.0.0.1:{server.port}", identification="")
    assert result.success, result.message
    assert result.values["SSH_SOFTWARE"] == "dropbear_2022.83"
    assert result.values["SSH_COMMENTS"] == ""


async def test_expect_regex_match_and_mismatch() -> None:
    async with Banner(OPENSSH).serving() as server:
        good = await check(f"127.0.0.1:{server.port}", expect=r"OpenSSH_9\.")
        bad = await check(f"127.0.0.1:{server.port}", expect=r"OpenSSH_8\.")
    assert good.success, good.message
    assert not bad.success
    assert bad.message == (
        "identification 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3' does not match /OpenSSH_8\\./"
    )
    assert bad.values["SSH_SOFTWARE"] == "OpenSSH_9.2p1"


async def test_old_protocol_version_is_refused() -> None:
    async with Banner(b"SSH-1.5-ancient\r\n").serving() as server:
        result = await check(f"127.0.0.1:{server.port}")
        allowed = await check(f"127.0.0.1:{server.port}", protocol_versions=["1.5"])
    assert not result.success
    assert result.message.startswith("protocol version 1.5 not accepted")
    assert allowed.success, allowed.message


async def test_other_protocol_fails_as_not_ssh() -> None:
    async with Banner(b"220 mail.test ESMTP\r\n").serving() as server:
        result = await check(f"127.0.0.1:{server.port}", within=0.3)
    assert not result.success
    assert result.message == "not an SSH server (got '220 mail.test ESMTP', then nothing)"


async def test_server_closing_early_fails() -> None:
    async with Banner(b"SSH-2.0-trunc", close=True).serving() as server:
        result = await check(f"127.0.0.1:{server.port}")
    assert not result.success
    assert result.message == "not an SSH server (got 'SSH-2.0-trunc')"


async def test_silent_server_times_out_in_banner() -> None:
    async with Banner().serving() as server:
        result = await check(f"127.0.0.1:{server.port}", within=0.3)
    assert not result.success
    assert result.message == "timeout after 0.3s during banner"


async def test_refused_port_fails_with_reason() -> None:
    result = await check(f"127.0.0.1:{free_port()}")
    assert not result.success
    assert result.message == "connection refused"
    assert result.values["CONNECTED"] is False


async def test_malformed_target_fails() -> None:
    result = await check("127.0.0.1:notaport")
    assert not result.success
    assert "invalid target" in result.message


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("example.com", ("example.com", 22)),
        ("example.com:2222", ("example.com", 2222)),
        ("10.0.0.1", ("10.0.0.1", 22)),
        ("[::1]", ("::1", 22)),
        ("[::1]:2222", ("::1", 2222)),
        ("::1", ("::1", 22)),
    ],
)
def test_host_port_fills_in_the_default_port(target: str, expected: tuple[str, int]) -> None:
    assert host_port(target, 22) == expected


@pytest.mark.parametrize("target", ["", "host:0", "host:70000", "[::1", "[::1]x", "a b:22"])
def test_host_port_refuses_malformed_targets(target: str) -> None:
    with pytest.raises(Failure, match="invalid target"):
        host_port(target, 22)


def test_settings_validate_regex_and_identification() -> None:
    with pytest.raises(ValidationError, match="invalid regex"):
        SshSettings(expect="(")
    with pytest.raises(ValidationError, match="must start with 'SSH-'"):
        SshSettings(identification="hello")
