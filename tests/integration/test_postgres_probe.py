"""The ``postgres`` probe against the PostgreSQL server on this machine (127.0.0.1:5432,
trust auth, user postgres, database test), and against a private primary and its streaming
standbys started for these tests."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import anyio
import asyncpg
import pytest
from pudimd_plugins.probes.postgres import PostgresProbe, PostgresSettings, pudimd_probe_types

from pudimd.results import ProbeResult
from tests.helpers import free_port, run_check
from tests.integration.servers import (
    postgres_tmp,
    require_service,
    run_postgres,
    silent_server,
    stop_postgres,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

URL = "postgres://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _server() -> None:
    require_service("PostgreSQL", 5432)


async def check(target: str, within: float = 5.0, **settings: Any) -> ProbeResult:
    return await run_check(PostgresProbe, target, within, **settings)


def test_plugin_registers_the_postgres_type() -> None:
    assert pudimd_probe_types() == [PostgresProbe]


async def test_query_answer_matching_expect_succeeds_and_reports_primary() -> None:
    result = await check(URL, query="SELECT 40 + 2, 'x', NULL", expect=r"^42\tx\tNULL$")
    assert result.success, result.message
    assert result.values["CONNECTED"] is True
    assert result.values["BODY"] == "42\tx\tNULL"
    assert result.values["ROLE"] == "primary"
    assert result.values["VERSION"][:2].isdigit()
    assert result.metrics["rows"] == 1
    assert result.metrics["is_replica"] == 0
    assert "replication_lag_seconds" not in result.metrics
    assert set(result.phases) == {"connect", "query"}
    assert result.phases["connect"] > 0 and result.phases["query"] > 0


async def test_host_port_target_with_settings_works() -> None:
    result = await check("127.0.0.1", username="postgres", database="test")
    assert result.success, result.message
    assert result.values["BODY"] == "1"


async def test_wrong_answer_fails_showing_it() -> None:
    result = await check(URL, query="SELECT 'degraded'", expect="^ok$")
    assert not result.success
    assert result.message == "answer 'degraded' does not match /^ok$/"
    assert result.values["BODY"] == "degraded"


async def test_too_few_rows_fail() -> None:
    result = await check(URL, query="SELECT 1 WHERE false", min_rows=1)
    assert not result.success
    assert result.message == "query returned 0 rows, expected at least 1"
    assert result.metrics["rows"] == 0


async def test_failing_query_names_the_error_and_sqlstate() -> None:
    result = await check(URL, query="SELECT * FROM no_such_table_here")
    assert not result.success
    assert result.message.startswith("query failed: relation ")
    assert "(SQLSTATE 42P01)" in result.message


async def test_unknown_role_fails_authentication() -> None:
    result = await check("postgres://no_such_role_pudimd@127.0.0.1/test")
    assert not result.success
    assert result.message == 'authentication failed: role "no_such_role_pudimd" does not exist'
    assert result.values["CONNECTED"] is False


async def test_missing_database_fails_saying_so() -> None:
    result = await check("postgres://postgres@127.0.0.1/no_such_db_pudimd")
    assert not result.success
    assert result.message == 'database "no_such_db_pudimd" does not exist'


async def test_refused_port_fails_with_reason() -> None:
    result = await check(f"postgres://postgres@127.0.0.1:{free_port()}/test")
    assert not result.success
    assert result.message == "connection refused"


async def test_silent_server_times_out_during_connect() -> None:
    async with silent_server() as port:
        result = await check(f"127.0.0.1:{port}", within=0.5)
    assert not result.success
    assert result.message == "timeout after 0.5s during connect"
    assert result.phases["connect"] >= 0.4


async def test_tls_against_a_server_without_tls_fails_clearly() -> None:
    result = await check(URL, tls=True)
    assert not result.success
    assert result.message.startswith("TLS: ")
    assert "rejected SSL upgrade" in result.message


async def test_expected_replica_role_fails_on_a_primary() -> None:
    result = await check(URL, role="replica")
    assert not result.success
    assert result.message == "server is a primary, expected a replica"
    assert result.values["ROLE"] == "primary"


async def test_replication_questions_can_be_turned_off() -> None:
    result = await check(URL, replication=False)
    assert result.success, result.message
    assert "ROLE" not in result.values and "is_replica" not in result.metrics


def test_password_file_fills_the_password(tmp_path: Any) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    settings = PostgresSettings(password_file=str(path))
    assert settings.password is not None
    assert settings.password.get_secret_value() == "s3cret"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[int, int]]:
    """A private primary and its streaming standby: (primary port, standby port)."""
    with (
        postgres_tmp() as tmp,
        run_postgres(tmp) as primary,
        run_postgres(tmp, primary=primary) as standby,
    ):
        yield primary, standby


async def sql(port: int, query: str, *args: Any) -> Any:
    """The first column of the first row of ``query`` on the private server at ``port``."""
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", timeout=5)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def write(primary: int) -> str:
    """Commit a new row on ``primary``; return its token."""
    token = secrets.token_hex(8)
    await sql(primary, "CREATE TABLE IF NOT EXISTS marks (token text)")
    await sql(primary, "INSERT INTO marks VALUES ($1)", token)
    return token


async def wait_until(what: str, ready: Any, within: float = 15.0) -> None:
    """Wait until ``await ready()`` is true; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not await ready():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {within:g}s")
        await anyio.sleep(0.05)


async def replayed(standby: int, token: str) -> bool:
    """Whether ``standby`` replayed the row ``token`` (and all the WAL it received)."""
    try:
        seen = await sql(standby, "SELECT count(*) FROM marks WHERE token = $1", token)
    except asyncpg.UndefinedTableError:
        return False
    caught_up = "SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
    return bool(seen) and bool(await sql(standby, caught_up))


async def test_private_primary_reports_primary_role(cluster: tuple[int, int]) -> None:
    primary, _ = cluster
    result = await check(f"postgres://postgres@127.0.0.1:{primary}", role="primary")
    assert result.success, result.message
    assert result.values["ROLE"] == "primary"
    assert result.metrics["is_replica"] == 0
    assert "replication_lag_seconds" not in result.metrics
    assert "WAL_RECEIVER_STATUS" not in result.values


async def test_standby_reports_replica_role_after_a_write(cluster: tuple[int, int]) -> None:
    primary, standby = cluster
    token = await write(primary)
    await wait_until("the standby did not replay the write", lambda: replayed(standby, token))
    url = f"postgres://postgres@127.0.0.1:{standby}/postgres"
    result = await check(
        url, query="SELECT token FROM marks", expect=token, role="replica", max_lag="1m"
    )
    assert result.success, result.message
    assert not result.degraded
    assert result.values["ROLE"] == "replica"
    assert result.values["WAL_RECEIVER_STATUS"] == "streaming"
    assert result.metrics["is_replica"] == 1
    assert result.metrics["wal_receiver_up"] == 1
    assert result.metrics["replication_lag_seconds"] == 0  # all it received is replayed


async def test_idle_standby_that_replayed_everything_is_not_lagging(
    cluster: tuple[int, int],
) -> None:
    primary, standby = cluster
    token = await write(primary)
    await wait_until("the standby did not replay the write", lambda: replayed(standby, token))
    await anyio.sleep(0.6)  # the last transaction replayed is now older than max_lag
    result = await check(f"127.0.0.1:{standby}", username="postgres", max_lag="500ms")
    assert result.success, result.message
    assert not result.degraded, result.message
    assert result.metrics["replication_lag_seconds"] == 0


async def test_expected_primary_role_fails_on_a_standby(cluster: tuple[int, int]) -> None:
    _, standby = cluster
    result = await check(f"postgres://postgres@127.0.0.1:{standby}", role="primary")
    assert not result.success
    assert result.message == "server is a replica, expected a primary"
    assert result.values["ROLE"] == "replica"


async def test_standby_behind_its_primary_over_max_lag_is_degraded(
    cluster: tuple[int, int],
) -> None:
    primary, _ = cluster
    with (
        postgres_tmp() as tmp,
        run_postgres(tmp, primary=primary, options=["recovery_min_apply_delay=2s"]) as delayed,
    ):
        first = await write(primary)
        await wait_until("the standby did not replay the write", lambda: replayed(delayed, first))
        await write(primary)
        end = await sql(primary, "SELECT pg_current_wal_lsn()")
        await wait_until(
            "the standby did not receive the second write",
            lambda: sql(delayed, "SELECT pg_last_wal_receive_lsn() >= $1", end),
        )
        # received, not replayed for 2s: the lag is the age of the first write
        result = await check(f"127.0.0.1:{delayed}", username="postgres", max_lag="100ms")
    assert result.success, result.message
    assert result.degraded
    lag = result.metrics["replication_lag_seconds"]
    assert lag > 0.1
    assert result.message == f"replication lag {lag:.1f}s over 100ms"
    assert result.values["WAL_RECEIVER_STATUS"] == "streaming"


async def test_standby_whose_primary_is_gone_is_degraded() -> None:
    with (
        postgres_tmp() as tmp,
        run_postgres(tmp) as primary,
        run_postgres(tmp, primary=primary) as standby,
    ):
        token = await write(primary)
        await wait_until("the standby did not replay the write", lambda: replayed(standby, token))
        stop_postgres(tmp, primary)
        await wait_until(
            "the standby did not notice its primary is gone",
            lambda: sql(
                standby,
                "SELECT NOT EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')",
            ),
        )
        result = await check(
            f"127.0.0.1:{standby}", username="postgres", role="replica", max_lag="1h"
        )
    assert result.success, result.message
    assert result.degraded
    assert result.message.startswith("replica is not streaming from a primary (WAL receiver: ")
    assert result.metrics["wal_receiver_up"] == 0
    assert result.values["WAL_RECEIVER_STATUS"] != "streaming"
    assert result.metrics["replication_lag_seconds"] > 0  # the age of the last write
