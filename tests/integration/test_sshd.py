"""The ``ssh`` probe against the real OpenSSH server, run by the test on a free port with a
host key generated for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pudimd_plugins.probes.ssh import SshProbe, SshSettings

from tests.integration.servers import run_sshd

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real sshd on 127.0.0.1:<free port>; yields the port."""
    with run_sshd(tmp_path_factory.mktemp("sshd")) as port:
        yield port


async def test_real_sshd_identification_is_read(sshd: int) -> None:
    probe = SshProbe(SshSettings(expect=r"^SSH-2\.0-OpenSSH_"))
    try:
        result = await probe.check(f"127.0.0.1:{sshd}", 5.0)
    finally:
        await probe.aclose()
    assert result.success, result.message
    assert result.status == "2.0"
    assert result.values["SSH_SOFTWARE"].startswith("OpenSSH_")
    assert result.values["BANNER"].startswith("SSH-2.0-OpenSSH_")


async def test_real_sshd_survives_repeated_checks(sshd: int) -> None:
    probe = SshProbe(SshSettings())
    try:
        results = [await probe.check(f"localhost:{sshd}", 5.0) for _ in range(5)]
    finally:
        await probe.aclose()
    assert all(r.success for r in results), [r.message for r in results]


async def test_wrong_expectation_against_real_sshd_fails(sshd: int) -> None:
    probe = SshProbe(SshSettings(expect="dropbear"))
    try:
        result = await probe.check(f"127.0.0.1:{sshd}", 5.0)
    finally:
        await probe.aclose()
    assert not result.success
    assert "does not match /dropbear/" in result.message
