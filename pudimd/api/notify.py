"""``POST /api/v1/notify/test``: a test notification to a receiver through the real path
(``pudimd notify test RECEIVER``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from pudimd.api.problems import problem_response

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

__all__ = ["notify_routes"]


def notify_routes(daemon: Daemon) -> list[web.RouteDef]:
    async def test(request: web.Request) -> web.Response:
        receiver = request.query.get("receiver", "")
        if daemon.alerting is None:
            return problem_response(503, "alerting is not running")
        try:
            outcomes = await daemon.alerting.send_test(receiver)
        except KeyError:
            known = ", ".join(daemon.alerting.receivers()) or "none"
            return problem_response(404, f"unknown receiver {receiver!r} (receivers: {known})")
        return web.json_response({"receiver": receiver, "integrations": outcomes})

    return [web.post("/api/v1/notify/test", test)]
