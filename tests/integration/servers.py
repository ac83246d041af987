"""Servers for the probe tests: the machine's services, a listener that accepts connections
and never says a word (for timeouts), a real sshd of the test's own, and private database
servers (Redis, PostgreSQL, MariaDB) to build primaries and replicas with."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, missing, require_binary, run_server


def require_service(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Skip (or fail under CI) when nothing listens on ``host:port``."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        missing(f"{name} on {host}:{port}")


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A port on 127.0.0.1 whose server accepts connections, reads, and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


@contextmanager
def run_sshd(tmp: Path) -> Iterator[int]:
    """Debian's real sshd on 127.0.0.1:<free port>, with a host key made for it under
    ``tmp``, until the ``with`` ends; yields the port."""
    binary = require_binary("sshd", "/usr/sbin")
    keygen = require_binary("ssh-keygen", "/usr/bin")
    key = tmp / "host_ed25519"
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, capture_output=True
    )
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        # the privilege separation directory systemd's sshd.service would create
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {key}\n"
        f"PidFile {tmp / 'sshd.pid'}\n"
        "UsePAM no\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "AuthorizedKeysFile none\n"
    )
    check = subprocess.run([binary, "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        missing(f"a usable sshd ({check.stderr.strip()})")
    with run_server("sshd", [binary, "-D", "-e", "-f", str(config)], port):
        yield port


def wait_for(what: str, ready: Callable[[], bool], within: float = 15.0) -> None:
    """Return once ``ready()`` is true (asked every 50 ms); fail the test, naming ``what``,
    when it is still false after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {within:g}s")
        time.sleep(0.05)


@contextmanager
def run_redis(tmp: Path, *options: str) -> Iterator[int]:
    """A private ``redis-server`` on 127.0.0.1:<free port>, without persistence, its files
    in a new directory under ``tmp``, with the extra command-line ``options`` (e.g.
    ``--replicaof 127.0.0.1 PORT``), until the ``with`` ends; yields the port."""
    binary = require_binary("redis-server", "/usr/bin")
    port = free_port()
    data = tmp / f"redis-{port}"
    data.mkdir()
    argv = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data),
        "--daemonize", "no",
        # a replica's first sync at once (the default waits 5 s for more replicas)
        "--repl-diskless-sync-delay", "0",
        *options,
    ]  # fmt: skip
    with run_server("redis-server", argv, port):
        yield port


def redis_info(port: int) -> dict[str, Any]:
    """``INFO replication`` of the Redis server on 127.0.0.1:``port``, as redis-py parses
    it (numbers as int, ``slave0`` as a dict...)."""
    import redis

    with redis.Redis(port=port, socket_timeout=5, decode_responses=True) as client:
        info: dict[str, Any] = client.info("replication")
    return info


@contextmanager
def postgres_tmp() -> Iterator[Path]:
    """A new temporary directory for :func:`run_postgres`, removed when the ``with`` ends:
    as root, owned by the ``postgres`` user (pytest's own are private to root)."""
    with tempfile.TemporaryDirectory(prefix="pudimd-pg-") as name:
        if os.geteuid() == 0:
            try:
                shutil.chown(name, "postgres", "postgres")
            except LookupError:
                missing("a postgres user to run PostgreSQL as (root cannot)")
        yield Path(name)


def _postgres_bin(name: str) -> str:
    """Path of PostgreSQL's ``name`` (initdb, postgres...): Debian keeps them in
    /usr/lib/postgresql/<version>/bin, the newest version first."""
    dirs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    return require_binary(name, *map(str, dirs))


@contextmanager
def run_postgres(
    tmp: Path, primary: int | None = None, options: Sequence[str] = ()
) -> Iterator[int]:
    """A private PostgreSQL server on 127.0.0.1:<free port> (trust auth, user postgres,
    ``wal_level=replica``), its data and socket in a new directory under ``tmp``, until the
    ``with`` ends; yields the port once it accepts queries.  With ``primary`` (a port),
    it is a streaming standby of that server, made by ``pg_basebackup -R``.  ``options``
    are more settings (``name=value``).  As root, it
    runs as the ``postgres`` user, who must own ``tmp`` (see :func:`postgres_tmp`)."""
    user = "postgres" if os.geteuid() == 0 else None
    port = free_port()
    home = tmp / f"pg-{port}"
    home.mkdir(mode=0o700)
    if user is not None:
        shutil.chown(home, user, user)
    data = home / "data"

    def setup(*argv: str) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, user=user, cwd=home)
        if done.returncode != 0:
            pytest.fail(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    if primary is None:
        setup(_postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
              "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
    else:
        setup(_postgres_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary),
              "-U", "postgres", "-D", str(data), "-R", "-X", "stream", "-c", "fast",
              "--no-sync")  # fmt: skip
    argv = [_postgres_bin("postgres"), "-D", str(data)]
    for setting in (
        "listen_addresses=127.0.0.1",
        f"port={port}",
        f"unix_socket_directories={home}",
        "wal_level=replica",
        "max_wal_senders=5",
        "shared_buffers=16MB",
        "max_connections=20",
        "fsync=off",
        "full_page_writes=off",
        "logging_collector=off",
        *options,
    ):
        argv += ["-c", setting]
    ready = _postgres_bin("pg_isready")
    with (home / "server.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, user=user, cwd=home)
        try:
            probe = [ready, "-q", "-h", "127.0.0.1", "-p", str(port)]
            wait_for(
                f"PostgreSQL on {port} did not accept queries",
                lambda: proc.poll() is not None or subprocess.run(probe).returncode == 0,
                within=30,
            )
            if proc.poll() is not None:
                text = (home / "server.log").read_text(errors="replace").strip()
                pytest.fail(f"PostgreSQL exited with {proc.returncode}: {text[-2000:]}")
            yield port
        finally:
            proc.send_signal(signal.SIGINT)  # fast shutdown: clients and standbys cut off
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stop_postgres(tmp: Path, port: int) -> None:
    """Stop (fast shutdown) the server :func:`run_postgres` started under ``tmp`` on
    ``port``, before its ``with`` ends."""
    done = subprocess.run(
        [_postgres_bin("pg_ctl"), "stop", "-D", str(tmp / f"pg-{port}" / "data"), "-m", "fast"],
        capture_output=True,
        text=True,
        user="postgres" if os.geteuid() == 0 else None,
        cwd=tmp,
    )
    if done.returncode != 0:
        pytest.fail(f"pg_ctl stop failed: {done.stderr.strip()}")


@contextmanager
def run_mariadb(tmp: Path, server_id: int, *options: str) -> Iterator[int]:
    """A private MariaDB server on 127.0.0.1:<free port> (root with an empty password), with
    the binary log on and ``--server-id=server_id``, its files in a new directory under
    ``tmp``, and the extra ``options`` (``--name=value``), until the ``with`` ends; yields
    the port."""
    server = require_binary("mariadbd", "/usr/sbin")
    install = require_binary("mariadb-install-db", "/usr/bin")
    port = free_port()
    home = tmp / f"mariadb-{port}"
    data = home / "data"
    home.mkdir()
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", "--skip-test-db",
         "--auth-root-authentication-method=normal", *as_root],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"mariadb-install-db failed: {done.stderr.strip() or done.stdout.strip()}")
    argv = [
        server, "--no-defaults", *as_root,
        f"--datadir={data}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={home / 'mysqld.sock'}",
        f"--pid-file={home / 'mysqld.pid'}",
        f"--server-id={server_id}",
        f"--log-bin={home / 'binlog'}",
        "--skip-name-resolve",
        "--innodb-buffer-pool-size=16M",
        "--innodb-flush-log-at-trx-commit=0",
        *options,
    ]  # fmt: skip
    with run_server("mariadbd", argv, port, within=30):
        yield port


def mariadb_sql(port: int, *statements: str) -> dict[str, Any] | None:
    """Run ``statements`` as root on the private MariaDB server at ``port``; the last one's
    first row (as a dict), if any."""
    import pymysql  # type: ignore[import-untyped,unused-ignore]
    import pymysql.cursors  # type: ignore[import-untyped,unused-ignore]

    conn = pymysql.connect(
        host="127.0.0.1",
        port=port,
        user="root",
        password="",
        autocommit=True,
        connect_timeout=5,
        cursorclass=pymysql.cursors.DictCursor,
    )
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
            row: dict[str, Any] | None = cur.fetchone()
            return row
    finally:
        conn.close()


def replicate_mariadb(replica: int, primary: int, delay: int = 0) -> None:
    """Make the private MariaDB server ``replica`` a replica of ``primary`` (from its first
    binary log, ``delay`` seconds behind it) and start replicating."""
    mariadb_sql(
        replica,
        f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary},"
        " MASTER_USER='root', MASTER_PASSWORD='', MASTER_CONNECT_RETRY=1,"
        f" MASTER_DELAY={delay}",
        "START SLAVE",
    )
