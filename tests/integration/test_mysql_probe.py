"""The ``mysql`` probe against the MariaDB server on this machine (127.0.0.1:3306, root with
an empty password, database test); a user made for the test checks passwords.  The
replica side runs against a private primary and replicas started for these tests."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomysql  # type: ignore[import-untyped,unused-ignore]
import pytest
from pudimd_plugins.probes.mysql import MysqlProbe, pudimd_probe_types

from pudimd.results import ProbeResult
from tests.helpers import free_port, run_check
from tests.integration.servers import (
    mariadb_sql,
    replicate_mariadb,
    require_service,
    run_mariadb,
    silent_server,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

URL = "mysql://root@127.0.0.1:3306/test"


@pytest.fixture(autouse=True)
def _server() -> None:
    require_service("MariaDB", 3306)


@pytest.fixture
async def app_user() -> AsyncIterator[tuple[str, str]]:
    """A user without privileges, with a password: (name, password)."""
    name, password = f"pudimd_{secrets.token_hex(4)}", secrets.token_hex(8)
    conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
        yield name, password
        async with conn.cursor() as cur:
            await cur.execute(f"DROP USER '{name}'@'%'")
    finally:
        conn.close()


async def check(target: str, within: float = 5.0, **settings: Any) -> ProbeResult:
    return await run_check(MysqlProbe, target, within, **settings)


def test_plugin_registers_the_mysql_type() -> None:
    assert pudimd_probe_types() == [MysqlProbe]


async def test_query_answer_matching_expect_succeeds_and_reports_primary() -> None:
    result = await check(URL, query="SELECT 40 + 2, 'x', NULL", expect=r"^42\tx\tNULL$")
    assert result.success, result.message
    assert result.values["CONNECTED"] is True
    assert result.values["BODY"] == "42\tx\tNULL"
    assert result.values["ROLE"] == "primary"
    assert result.values["VERSION"][:2].rstrip(".").isdigit()
    assert result.metrics["rows"] == 1
    assert result.metrics["is_replica"] == 0
    assert result.metrics["read_only"] == 0
    assert set(result.phases) == {"connect", "query"}


async def test_right_password_of_a_user_logs_in(app_user: tuple[str, str]) -> None:
    name, password = app_user
    result = await check("127.0.0.1", username=name, password=password)
    assert result.success, result.message
    # a user without REPLICATION CLIENT/SLAVE MONITOR cannot see the role: left out
    assert "ROLE" not in result.values


async def test_role_check_fails_when_the_user_cannot_see_the_role(
    app_user: tuple[str, str],
) -> None:
    name, password = app_user
    result = await check(f"mysql://{name}:{password}@127.0.0.1", role="primary")
    assert not result.success
    assert result.message == "cannot tell the replication role: no privilege to see it"


async def test_wrong_password_fails_authentication(app_user: tuple[str, str]) -> None:
    name, _ = app_user
    result = await check("127.0.0.1", username=name, password="wrong")
    assert not result.success
    assert result.message.startswith(f"authentication failed: Access denied for user '{name}'")
    assert result.values["CONNECTED"] is False


async def test_wrong_answer_fails_showing_it() -> None:
    result = await check(URL, query="SELECT 'degraded'", expect="^ok$")
    assert not result.success
    assert result.message == "answer 'degraded' does not match /^ok$/"


async def test_failing_query_names_the_error_code() -> None:
    result = await check(URL, query="SELECT * FROM no_such_table_here")
    assert not result.success
    assert result.message.startswith("query failed: Table 'test.no_such_table_here'")
    assert result.message.endswith("(error 1146)")


async def test_missing_database_fails_saying_so() -> None:
    result = await check("mysql://root@127.0.0.1/no_such_db_pudimd")
    assert not result.success
    assert result.message == "Unknown database 'no_such_db_pudimd'"


async def test_refused_port_fails_with_reason() -> None:
    result = await check(f"127.0.0.1:{free_port()}")
    assert not result.success
    assert result.message == "connection refused"


async def test_silent_server_times_out_during_connect() -> None:
    async with silent_server() as port:
        result = await check(f"127.0.0.1:{port}", within=0.5)
    assert not result.success
    assert result.message == "timeout after 0.5s during connect"


async def test_tls_against_a_server_without_tls_refuses_to_log_in_in_clear() -> None:
    result = await check(URL, tls=True)
    assert not result.success
    assert result.message == "TLS: the server does not offer TLS"


async def test_expected_replica_role_fails_on_a_primary() -> None:
    result = await check(URL, role="replica")
    assert not result.success
    assert result.message == "server is a primary, expected a replica"


def replica_status(port: int) -> dict[str, Any]:
    return mariadb_sql(port, "SHOW SLAVE STATUS") or {}


def running(port: int) -> bool:
    status = replica_status(port)
    return status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes"


def caught_up(replica: int, primary: int) -> bool:
    """Whether ``replica`` applied everything ``primary`` wrote (same GTID position)."""
    done = mariadb_sql(primary, "SELECT @@global.gtid_binlog_pos AS pos") or {}
    applied = mariadb_sql(replica, "SELECT @@global.gtid_slave_pos AS pos") or {}
    return bool(done.get("pos") == applied.get("pos"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A private primary and its read-only replica, replicating: (primary, replica) ports."""
    tmp = tmp_path_factory.mktemp("mariadb")
    with run_mariadb(tmp, 1) as primary, run_mariadb(tmp, 2, "--read-only=ON") as replica:
        replicate_mariadb(replica, primary)
        wait_for("the replica did not start replicating", lambda: running(replica))
        yield primary, replica


def write(primary: int) -> str:
    """Commit a new row on ``primary``; return its token."""
    token = secrets.token_hex(8)
    mariadb_sql(
        primary,
        "CREATE DATABASE IF NOT EXISTS pudimd",
        "CREATE TABLE IF NOT EXISTS pudimd.marks (token varchar(32))",
        f"INSERT INTO pudimd.marks VALUES ('{token}')",
    )
    return token


async def test_replica_reports_its_role_and_lag(pair: tuple[int, int]) -> None:
    primary, replica = pair
    token = write(primary)
    wait_for("the replica did not apply the write", lambda: caught_up(replica, primary))
    result = await check(
        f"mysql://root@127.0.0.1:{replica}/pudimd",
        query=f"SELECT token FROM marks WHERE token = '{token}'",
        expect=f"^{token}$",
        role="replica",
        max_lag="1m",
    )
    assert result.success, result.message
    assert not result.degraded
    assert result.values["ROLE"] == "replica"
    assert result.metrics["is_replica"] == 1
    assert result.metrics["read_only"] == 1
    assert result.metrics["replication_lag_seconds"] == 0


async def test_private_primary_reports_primary_role(pair: tuple[int, int]) -> None:
    primary, _ = pair
    result = await check(f"127.0.0.1:{primary}", role="primary")
    assert result.success, result.message
    assert result.values["ROLE"] == "primary"
    assert result.metrics["is_replica"] == 0
    assert result.metrics["read_only"] == 0
    assert "replication_lag_seconds" not in result.metrics


async def test_expected_primary_role_fails_on_a_replica(pair: tuple[int, int]) -> None:
    _, replica = pair
    result = await check(f"127.0.0.1:{replica}", role="primary")
    assert not result.success
    assert result.message == "server is a replica, expected a primary"
    assert result.values["ROLE"] == "replica"


async def test_delayed_replica_over_max_lag_is_degraded(
    pair: tuple[int, int], tmp_path: Path
) -> None:
    primary, _ = pair
    with run_mariadb(tmp_path, 3) as delayed:
        replicate_mariadb(delayed, primary, delay=3)
        wait_for("the replica did not start replicating", lambda: running(delayed))
        write(primary)
        wait_for(
            "the delayed replica did not fall behind",
            lambda: (replica_status(delayed).get("Seconds_Behind_Master") or 0) >= 1,
        )
        result = await check(f"127.0.0.1:{delayed}", role="replica", max_lag="500ms")
    assert result.success, result.message
    assert result.degraded
    lag = result.metrics["replication_lag_seconds"]
    assert lag >= 1
    assert result.message == f"replication lag {lag:.1f}s over 500ms"


async def test_replica_that_cannot_reach_its_primary_is_degraded(tmp_path: Path) -> None:
    with run_mariadb(tmp_path, 4) as replica:
        replicate_mariadb(replica, free_port())
        wait_for(
            "the replica did not try to connect",
            lambda: replica_status(replica).get("Slave_IO_Running") == "Connecting",
        )
        result = await check(f"127.0.0.1:{replica}", role="replica", max_lag="1m")
    assert result.success, result.message
    assert result.degraded
    assert result.message == "replication is not running (IO thread: Connecting, SQL thread: Yes)"
    assert result.values["ROLE"] == "replica"
    assert "replication_lag_seconds" not in result.metrics
