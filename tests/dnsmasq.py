"""A real dnsmasq for one test: a DNS server on 127.0.0.1 (UDP and TCP) with the records
the test asks for, stopped afterwards.

``run_dnsmasq(records)`` starts ``/usr/sbin/dnsmasq`` in the foreground on a free port,
with no upstream servers, no ``/etc/hosts`` and no config file, so it answers only from the
command-line ``records`` (dnsmasq options such as ``--host-record=...``) and yields the port
once it answers on TCP.  It skips the test (fails under ``CI=true``) when dnsmasq is missing.

``EXAMPLE_ZONE`` is a ready-made record set, authoritative for ``example.test`` and for the
reverse zones of ``192.0.2.0/24`` and ``2001:db8::/32``: answers have the AA flag and (but
for NS questions) the zone's NS record in the authority section; names not listed are
NXDOMAIN with the SOA in the authority section; names outside these zones are REFUSED;
no answer has additional records::

    www.example.test          A 192.0.2.10, AAAA 2001:db8::10
    mail.example.test         A 192.0.2.25
    alias.example.test        CNAME www.example.test
    example.test              MX 10 mail.example.test
    example.test              TXT "v=spf1 -all" "hello world"
    _sip._tcp.example.test    SRV 1 2 5060 sip.example.test
    example.test              NS ns.example.test
    example.test              SOA ns.example.test hostmaster.example.test 2024010101 ...
    10.2.0.192.in-addr.arpa   PTR www.example.test
    nxdomain.example.test     (anything not listed): NXDOMAIN

Example::

    with run_dnsmasq(EXAMPLE_ZONE) as port:
        ...  # ask 127.0.0.1:port for www.example.test
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from tests.helpers import free_port, require_binary, run_server

__all__ = ["EXAMPLE_SERIAL", "EXAMPLE_ZONE", "HOST", "run_dnsmasq"]

HOST = "127.0.0.1"
"""The address dnsmasq listens on."""

EXAMPLE_SERIAL = 2024010101
"""The SOA serial of ``EXAMPLE_ZONE``."""

EXAMPLE_ZONE: tuple[str, ...] = (
    "--local=/example.test/",
    "--host-record=www.example.test,192.0.2.10,2001:db8::10",
    "--host-record=mail.example.test,192.0.2.25",
    "--cname=alias.example.test,www.example.test",
    "--mx-host=example.test,mail.example.test,10",
    "--txt-record=example.test,v=spf1 -all,hello world",
    "--srv-host=_sip._tcp.example.test,sip.example.test,5060,1,2",
    "--ptr-record=10.2.0.192.in-addr.arpa,www.example.test",
    f"--auth-server=ns.example.test,{HOST}",
    "--auth-zone=example.test,192.0.2.0/24,2001:db8::/32",
    f"--auth-soa={EXAMPLE_SERIAL},hostmaster.example.test",
)
"""dnsmasq options for the records listed in this module's docstring."""


@contextmanager
def run_dnsmasq(records: Sequence[str] = EXAMPLE_ZONE) -> Iterator[int]:
    """Run dnsmasq on ``HOST`` with the extra options ``records`` until the ``with`` ends;
    yield its port (UDP and TCP).  Fail the test if it exits or does not answer in 10 s."""
    binary = require_binary("dnsmasq", "/usr/sbin")
    port = free_port()
    # as root, dnsmasq would drop to "nobody"/"dip"; stay who we are (no privilege needed)
    user = ["--user=root", "--group=root"] if os.geteuid() == 0 else []
    argv = [
        binary,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--pid-file=",
        "--log-facility=/dev/null",  # startup errors still go to stderr
        f"--port={port}",
        f"--listen-address={HOST}",
        "--bind-interfaces",
        *user,
        *records,
    ]
    with run_server("dnsmasq", argv, port):
        yield port
