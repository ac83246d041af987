"""The ``mqtt`` probe against the Mosquitto broker on this machine (127.0.0.1:1883,
anonymous), and a private Mosquitto with a password file for authentication."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pudimd_plugins.probes.mqtt import MqttProbe, MqttSettings, pudimd_probe_types

from pudimd.results import ProbeResult
from tests.helpers import free_port, require_binary, run_check, run_server
from tests.integration.servers import require_service, silent_server

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

URL = "mqtt://127.0.0.1:1883"


async def check(target: str, within: float = 5.0, **settings: Any) -> ProbeResult:
    return await run_check(MqttProbe, target, within, **settings)


@pytest.fixture
def local_broker() -> None:
    require_service("Mosquitto", 1883)


@contextmanager
def _mosquitto(tmp: Path, config: str) -> Iterator[int]:
    """A Mosquitto of our own on a free port of 127.0.0.1, with ``config`` (lines for its
    listener); yields the port."""
    mosquitto = require_binary("mosquitto", "/usr/sbin")
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n{config}persistence false\nlog_dest none\n"
        # started as root, mosquitto drops to user mosquitto, who cannot read tmp_path
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    with run_server("mosquitto", [mosquitto, "-c", str(conf)], port, within=5):
        yield port


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[int]:
    """A Mosquitto of our own on a free port: user 'probe', password 'right', no anonymous."""
    passwd = require_binary("mosquitto_passwd", "/usr/sbin")
    pwfile = tmp_path / "passwd"
    subprocess.run([passwd, "-b", "-c", str(pwfile), "probe", "right"], check=True)
    pwfile.chmod(0o600)
    with _mosquitto(tmp_path, f"allow_anonymous false\npassword_file {pwfile}\n") as port:
        yield port


def test_plugin_registers_the_mqtt_type() -> None:
    assert pudimd_probe_types() == [MqttProbe]


def test_topic_wildcards_are_refused() -> None:
    with pytest.raises(ValueError, match="wildcards"):
        MqttSettings(topic="a/#")


@pytest.mark.usefixtures("local_broker")
@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_publish_subscribe_round_trip_at_each_qos(qos: int) -> None:
    result = await check(URL, qos=qos, payload="hello", expect=r"^hello [0-9a-f]{16}$")
    assert result.success, result.message
    assert result.values["CONNECTED"] is True
    assert result.values["BODY"].startswith("hello ")
    assert 0 < result.metrics["round_trip_seconds"] < 5
    assert result.metrics["tls"] == 0
    assert set(result.phases) == {"connect", "tls", "auth", "query"}


@pytest.mark.usefixtures("local_broker")
async def test_wrong_answer_fails_showing_it() -> None:
    result = await check("127.0.0.1", payload="degraded", expect="^ok")
    assert not result.success
    assert result.message.startswith("answer 'degraded ")
    assert result.message.endswith("does not match /^ok/")


@pytest.mark.usefixtures("local_broker")
async def test_message_that_never_comes_back_times_out_saying_so() -> None:
    # mosquitto drops what clients publish under $SYS without telling them
    result = await check("127.0.0.1", topic="$SYS/pudimd", qos=0, within=0.5)
    assert not result.success
    assert result.message == (
        "timeout after 0.5s during query, waiting for the message to come back"
    )


async def test_right_password_logs_in(private_broker: int) -> None:
    result = await check(f"mqtt://probe:right@127.0.0.1:{private_broker}")
    assert result.success, result.message


async def test_wrong_password_fails_authentication(private_broker: int) -> None:
    result = await check(f"127.0.0.1:{private_broker}", username="probe", password="wrong")
    assert not result.success
    assert result.message.startswith("authentication failed: ")
    assert result.values["CONNECTED"] is False


async def test_anonymous_login_is_refused_where_not_allowed(private_broker: int) -> None:
    result = await check(f"127.0.0.1:{private_broker}")
    assert not result.success
    assert result.message == "authentication failed: not authorized"


async def test_refused_port_fails_with_reason() -> None:
    result = await check(f"127.0.0.1:{free_port()}")
    assert not result.success
    assert result.message == "connection refused"


async def test_silent_server_times_out_during_auth() -> None:
    async with silent_server() as port:
        result = await check(f"127.0.0.1:{port}", within=0.5)
    assert not result.success
    assert result.message == "timeout after 0.5s during auth"
    assert result.phases["auth"] >= 0.4


@pytest.mark.usefixtures("local_broker")
async def test_tls_against_a_plain_port_fails_clearly() -> None:
    result = await check("mqtts://127.0.0.1:1883")
    assert not result.success
    assert result.message.startswith("TLS: ")


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Mosquitto of our own speaking TLS (trustme certificate for 127.0.0.1 and
    'broker.test'): (port, CA file)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "broker.test")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    config = f"allow_anonymous true\ncertfile {cert_file}\nkeyfile {key_file}\n"
    with _mosquitto(tmp_path, config) as port:
        yield port, ca_file


async def test_tls_round_trip_with_the_right_ca(tls_broker: tuple[int, Path]) -> None:
    port, ca_file = tls_broker
    result = await check(f"mqtts://127.0.0.1:{port}", ca_file=ca_file, server_name="broker.test")
    assert result.success, result.message
    assert result.metrics["tls"] == 1
    assert result.phases["tls"] > 0


async def test_tls_with_an_unknown_ca_fails_verification(tls_broker: tuple[int, Path]) -> None:
    port, _ = tls_broker
    result = await check(f"127.0.0.1:{port}", tls=True)
    assert not result.success
    assert result.message.startswith("TLS: ")
    assert "certificate" in result.message
