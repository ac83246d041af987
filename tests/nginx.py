"""A real nginx for one test: started from /usr/sbin with a config written under the test's
temporary directory, stopped afterwards.

``run_nginx(tmp, servers)`` takes the ``server { ... }`` blocks (nginx syntax, with
``{port}`` / ``{tmp}`` placeholders already filled in by the caller) and yields once nginx
accepts connections on ``wait_port``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import require_binary, run_server

__all__ = ["run_nginx"]

_CONFIG = """
{user}
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{servers}
}}
"""


@contextmanager
def run_nginx(tmp: Path, servers: str, wait_port: int) -> Iterator[None]:
    """Run nginx with ``servers`` (the ``server`` blocks of its ``http`` block) until the
    ``with`` ends; fail the test if it exits or does not listen on ``wait_port`` in 10 s."""
    binary = require_binary("nginx", "/usr/sbin")
    conf = tmp / "nginx.conf"
    # as root, nginx workers become "nobody", who cannot read pytest's private tmp_path
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(_CONFIG.format(user=user, tmp=tmp, servers=servers))
    with run_server("nginx", [binary, "-p", str(tmp), "-c", str(conf)], wait_port):
        yield
