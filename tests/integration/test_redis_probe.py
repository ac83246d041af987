"""The ``redis`` probe against the Redis server on this machine (127.0.0.1:6379), and against
a private primary and replica pair started for these tests."""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pudimd_plugins.probes.redis import (
    RedisProbe,
    parse_info,
    pudimd_probe_types,
    render,
)

from pudimd.results import ProbeResult
from tests.helpers import free_port, run_check
from tests.integration.servers import (
    redis_info,
    require_service,
    run_redis,
    silent_server,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture(autouse=True)
def _server() -> None:
    require_service("Redis", 6379)


async def check(target: str, within: float = 5.0, **settings: Any) -> ProbeResult:
    return await run_check(RedisProbe, target, within, **settings)


def test_plugin_registers_the_redis_type() -> None:
    assert pudimd_probe_types() == [RedisProbe]


def test_answers_render_as_text() -> None:
    assert render([b"a", 1, None]) == "a\n1\n(nil)"
    assert parse_info("# Replication\r\nrole:slave\r\nmaster_link_status:down\r\n") == {
        "role": "slave",
        "master_link_status": "down",
    }


async def test_ping_answers_pong_and_reports_primary() -> None:
    result = await check("redis://127.0.0.1:6379/0", expect="^PONG$")
    assert result.success, result.message
    assert result.values["CONNECTED"] is True
    assert result.values["BODY"] == "PONG"
    assert result.values["ROLE"] == "primary"
    assert result.values["VERSION"][:1].isdigit()
    assert result.metrics["is_replica"] == 0
    assert result.metrics["connected_replicas"] == 0
    assert set(result.phases) == {"connect", "query"}


async def test_command_with_arguments_answers_in_body() -> None:
    result = await check("127.0.0.1", command=["ECHO", "hello pudimd"], db=1)
    assert result.success, result.message
    assert result.values["BODY"] == "hello pudimd"


async def test_wrong_answer_fails_showing_it() -> None:
    result = await check("127.0.0.1", command=["ECHO", "degraded"], expect="^ok$")
    assert not result.success
    assert result.message == "answer 'degraded' does not match /^ok$/"


async def test_error_reply_fails_the_command() -> None:
    result = await check("127.0.0.1", command=["NO_SUCH_COMMAND_PUDIMD"])
    assert not result.success
    assert result.message.startswith("command failed: unknown command")


async def test_unknown_user_fails_authentication() -> None:
    result = await check("redis://no_such_user_pudimd:wrong@127.0.0.1")
    assert not result.success
    assert result.message.startswith("authentication failed: ")
    assert "invalid username-password pair" in result.message
    assert result.values["CONNECTED"] is False


async def test_database_out_of_range_fails_saying_so() -> None:
    result = await check("redis://127.0.0.1/100000")
    assert not result.success
    assert "DB index is out of range" in result.message


async def test_refused_port_fails_with_reason() -> None:
    result = await check(f"127.0.0.1:{free_port()}")
    assert not result.success
    assert result.message == "connection refused"


async def test_silent_server_times_out() -> None:
    async with silent_server() as port:
        result = await check(f"127.0.0.1:{port}", within=0.5)
    assert not result.success
    assert result.message.startswith("timeout after 0.5s during ")
    assert result.message.removeprefix("timeout after 0.5s during ") in {"connect", "query"}


async def test_tls_against_a_server_without_tls_fails() -> None:
    result = await check("rediss://127.0.0.1:6379", within=1)
    assert not result.success
    assert result.values["CONNECTED"] is False


async def test_expected_replica_role_fails_on_a_primary() -> None:
    result = await check("127.0.0.1", role="replica")
    assert not result.success
    assert result.message == "server is a primary, expected a replica"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A private primary and its replica, the link up: (primary port, replica port).  The
    primary pings its replica once a minute only, so the replica's lag (seconds since it
    last heard from its primary) grows while nothing is written."""
    tmp = tmp_path_factory.mktemp("redis")
    with (
        run_redis(tmp, "--repl-ping-replica-period", "60") as primary,
        run_redis(tmp, "--replicaof", "127.0.0.1", str(primary)) as replica,
    ):
        wait_for(
            "the replica's link to its primary did not come up",
            lambda: redis_info(replica).get("master_link_status") == "up",
        )
        yield primary, replica


def primary_heard_back(primary: int) -> bool:
    """Whether the primary's only replica acknowledged everything the primary wrote."""
    info = redis_info(primary)
    return bool(info.get("slave0", {}).get("offset") == info["master_repl_offset"])


async def test_replica_reports_its_role_link_and_lag(pair: tuple[int, int]) -> None:
    _, replica = pair
    result = await check(f"redis://127.0.0.1:{replica}", role="replica", max_lag="1m")
    assert result.success, result.message
    assert not result.degraded
    assert result.values["ROLE"] == "replica"
    assert result.values["MASTER_LINK_STATUS"] == "up"
    assert result.metrics["is_replica"] == 1
    assert result.metrics["master_link_up"] == 1
    assert 0 <= result.metrics["replication_lag_seconds"] < 60
    assert result.metrics["replication_lag_bytes"] == 0
    assert "connected_replicas" not in result.metrics


async def test_primary_counts_its_replica_and_its_distance(pair: tuple[int, int]) -> None:
    primary, _ = pair
    wait_for("the replica did not acknowledge", lambda: primary_heard_back(primary))
    result = await check(f"127.0.0.1:{primary}", role="primary")
    assert result.success, result.message
    assert result.values["ROLE"] == "primary"
    assert result.metrics["is_replica"] == 0
    assert result.metrics["connected_replicas"] == 1
    assert result.metrics["replication_lag_bytes"] == 0
    assert "MASTER_LINK_STATUS" not in result.values


async def test_expected_primary_role_fails_on_a_replica(pair: tuple[int, int]) -> None:
    _, replica = pair
    result = await check(f"127.0.0.1:{replica}", role="primary")
    assert not result.success
    assert result.message == "server is a replica, expected a primary"
    assert result.values["ROLE"] == "replica"


async def test_write_on_the_primary_is_read_on_the_replica(pair: tuple[int, int]) -> None:
    primary, replica = pair
    key, value = f"pudimd:{secrets.token_hex(4)}", secrets.token_hex(8)
    written = await check(f"127.0.0.1:{primary}", command=["SET", key, value, "EX", "60"])
    assert written.success, written.message
    wait_for("the replica did not acknowledge the write", lambda: primary_heard_back(primary))
    result = await check(f"127.0.0.1:{replica}", command=["GET", key], expect=f"^{value}$")
    assert result.success, result.message
    assert result.values["BODY"] == value


async def test_lag_over_max_lag_degrades_a_replica(pair: tuple[int, int]) -> None:
    _, replica = pair
    wait_for(
        "the replica's lag did not reach 1s",
        lambda: int(redis_info(replica)["master_last_io_seconds_ago"]) >= 1,
        within=5,
    )
    result = await check(f"127.0.0.1:{replica}", max_lag="500ms")
    assert result.success, result.message
    assert result.degraded
    lag = result.metrics["replication_lag_seconds"]
    assert lag >= 1
    assert result.message == f"replication lag {lag:.1f}s over 500ms"


async def test_replica_whose_primary_is_gone_is_degraded(tmp_path: Path) -> None:
    import redis

    with (
        run_redis(tmp_path) as primary,
        run_redis(tmp_path, "--replicaof", "127.0.0.1", str(primary)) as replica,
    ):
        wait_for(
            "the replica's link to its primary did not come up",
            lambda: redis_info(replica).get("master_link_status") == "up",
        )
        # the primary crashes (SHUTDOWN would wait for the replica to catch up)
        with redis.Redis(port=primary, socket_timeout=5) as client:
            os.kill(int(client.info("server")["process_id"]), signal.SIGKILL)
        wait_for(
            "the replica did not notice its primary is gone",
            lambda: redis_info(replica).get("master_link_status") == "down",
        )
        result = await check(f"127.0.0.1:{replica}", role="replica", max_lag="1m")
    assert result.success, result.message
    assert result.degraded
    assert result.message == "replica's link to its primary is down"
    assert result.values["MASTER_LINK_STATUS"] == "down"
    assert result.metrics["master_link_up"] == 0
    assert "replication_lag_seconds" not in result.metrics
