"""Helpers shared by the notifier tests: a sample :class:`Notification`, an HTTP server
on loopback that records what it receives, and signed action links turned on."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pudimd.alerting import links
from pudimd.alerting.alert import fingerprint
from pudimd.alerting.links import ActionLinks, LinkAction
from pudimd.alerting.notification import AlertInfo, Notification

__all__ = [
    "SAMPLE_TIME",
    "LinkChecker",
    "Received",
    "Recorder",
    "action_links_on",
    "recording_server",
    "sample_alert",
    "sample_notification",
]

SAMPLE_TIME = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
"""When the sample alerts started (the first one; the next ones a minute apart)."""


def sample_alert(index: int = 0, *, status: str = "firing", **labels: str) -> AlertInfo:
    """Alert number ``index`` of a ``HighLatency`` group in ``prod``: labels ``alertname``,
    ``env``, ``instance`` (``web-<index>``, so each alert is distinct) plus ``labels``."""
    all_labels = {
        "alertname": "HighLatency",
        "env": "prod",
        "instance": f"web-{index}",
        **labels,
    }
    starts = SAMPLE_TIME + timedelta(minutes=index)
    return AlertInfo(
        status="resolved" if status == "resolved" else "firing",
        labels=all_labels,
        annotations={
            "summary": f"Latency is high on web-{index}",
            "description": "p99 above 500ms for 5 minutes",
        },
        starts_at=starts,
        ends_at=starts + timedelta(minutes=30) if status == "resolved" else None,
        generator_url=f"http://prometheus.example/graph?g0.expr=latency&i={index}",
        fingerprint=fingerprint(all_labels),
    )


def sample_notification(firing: int = 1, resolved: int = 0, **overrides: Any) -> Notification:
    """A notification for receiver ``team-x``, integration ``test/0``, with ``firing``
    firing alerts then ``resolved`` resolved ones (grouped by ``alertname``; common labels
    ``alertname`` and ``env``).  ``overrides`` replace any :class:`Notification` field
    (e.g. ``alerts=...``, ``status=...``, ``external_url=...``)."""
    alerts = [sample_alert(i) for i in range(firing)]
    alerts += [sample_alert(firing + i, status="resolved") for i in range(resolved)]
    notification = Notification(
        receiver="team-x",
        integration="test/0",
        group_key='{}:{alertname="HighLatency"}',
        idempotency_key=f"team-x/test/0/{firing}-{resolved}",
        status="firing" if firing else "resolved",
        group_labels={"alertname": "HighLatency"},
        common_labels={"alertname": "HighLatency", "env": "prod"},
        common_annotations={"description": "p99 above 500ms for 5 minutes"},
        external_url="http://pudimd.example:9093",
        alerts=tuple(alerts),
        created_at=SAMPLE_TIME + timedelta(hours=1),
    )
    if overrides:
        notification = dataclasses.replace(notification, **overrides)
    return notification


@dataclass
class Received:
    """One request a :func:`recording_server` received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """A :func:`recording_server`: its base ``url``, the requests it got, and the answer it
    gives (``status``, ``headers``, ``body``; ``delay`` seconds before answering)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"
    delay: float = 0.0

    @property
    def last(self) -> Received:
        assert self.requests, "the server received no request"
        return self.requests[-1]


@asynccontextmanager
async def recording_server(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Recorder]:
    """An aiohttp server on 127.0.0.1 (HTTPS with ``ssl_context``) that records every
    request and answers as its :class:`Recorder` says."""
    from aiohttp import web

    recorder = Recorder()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        recorder.requests.append(
            Received(request.method, request.path_qs, dict(request.headers), body)
        )
        if recorder.delay:
            await asyncio.sleep(recorder.delay)
        return web.Response(status=recorder.status, headers=recorder.headers, text=recorder.body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        scheme = "https" if ssl_context is not None else "http"
        recorder.url = f"{scheme}://127.0.0.1:{port}"
        yield recorder
    finally:
        await runner.cleanup()


LINK_KEY = b"notifier tests' action link key!"
_LINK = re.compile(r"https?://[^\s<>()|\"']+/api/v1/actions/[A-Za-z0-9_.-]+")


class LinkChecker:
    """Checks the action links found in what a notifier sent."""

    def __init__(self) -> None:
        self.signer = ActionLinks(LINK_KEY, "")

    def verify(self, url: str) -> LinkAction:
        """What the link ``url`` allows (raises LinkError when it is not valid now)."""
        return self.signer.verify(url.rsplit("/", 1)[1], time.time())

    def found(self, text: str) -> list[LinkAction]:
        """Every valid action link in ``text``, in order."""
        return [self.verify(url) for url in _LINK.findall(text)]


@contextmanager
def action_links_on() -> Iterator[LinkChecker]:
    """Action links on, as the running daemon's API provides them: notifications with an
    external URL carry links signed with a test key."""

    def provider(base_url: str) -> ActionLinks:
        return ActionLinks(LINK_KEY, base_url)

    links.set_provider(provider)
    try:
        yield LinkChecker()
    finally:
        links.clear_provider(provider)
