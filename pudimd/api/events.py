"""The live event stream (:mod:`pudimd.events`) over HTTP.

=============================  ===================================================================
``GET /api/v1/events``         Server-Sent Events (``text/event-stream``): one ``data:`` line of
                               JSON per event with its ``id:``; ``Last-Event-ID`` (header, or
                               the ``last_event_id`` parameter) replays what the ring buffer
                               still holds; a ``: keep-alive`` comment every 15 s
``GET /api/v1/events/ws``      WebSocket: one JSON text message per event; the client may send
                               ``{"subscribe": {"types": [...], "target": [...]}}`` to change
                               its filter (answered with a ``subscribed`` message)
=============================  ===================================================================

Both take ``types`` (comma-separated: ``result``, ``alert``, ``reload``) and ``target``
(comma-separated names, or the parameter repeated).  When the client reads too slowly its
queue drops the oldest events and it gets ``{"type": "dropped", "count": N}`` (no id).
The streams end when the daemon stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import orjson
import structlog
from aiohttp import WSMsgType, web

from pudimd.api.problems import Problem, answers_problems
from pudimd.events import Event, Filter, Subscription, parse_filter

if TYPE_CHECKING:
    from collections.abc import Mapping

    from multidict import MultiMapping

    from pudimd.daemon import Daemon

__all__ = ["KEEPALIVE", "WRITE_TIMEOUT", "events_routes", "install"]

log = structlog.get_logger("pudimd.api")

KEEPALIVE = 15.0
"""Seconds between keep-alive comments (SSE) of an idle stream."""
WRITE_TIMEOUT = 30.0
"""Seconds a write to a client may block before the stream is ended."""
_MAX_MESSAGE = 64 * 1024
_CLOSED = (ConnectionError, RuntimeError)  # the peer went away (aiohttp raises both)


def _names(query: MultiMapping[str], name: str) -> list[str] | None:
    values = query.getall(name, [])
    if not values:
        return None
    return [part for value in values for part in value.split(",")]


def _filter(query: MultiMapping[str]) -> Filter:
    try:
        return parse_filter(_names(query, "types"), _names(query, "target"))
    except ValueError as exc:
        raise Problem(400, str(exc), errors=[{"field": "types", "message": str(exc)}]) from None


def _last_event_id(headers: Mapping[str, str], query: Mapping[str, str]) -> int | None:
    text = headers.get("Last-Event-ID") or query.get("last_event_id")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise Problem(400, f"Last-Event-ID must be an event id, got {text!r}") from None


def _dropped(count: int) -> bytes:
    return orjson.dumps({"type": "dropped", "count": count})


def _sse(events: list[Event], dropped: int) -> bytes:
    parts: list[bytes] = []
    if dropped:
        parts.append(b"data: " + _dropped(dropped) + b"\n\n")
    for event in events:
        parts.append(b"id: %d\ndata: %s\n\n" % (event.id, event.data))
    return b"".join(parts)


class _EventsAPI:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _subscribe(self, filter: Filter, last: int | None) -> Subscription:
        try:
            return self.daemon.events.subscribe(filter, last)
        except RuntimeError:
            raise Problem(503, "pudimd is stopping") from None

    async def sse(self, request: web.Request) -> web.StreamResponse:
        filter = _filter(request.query)
        sub = self._subscribe(filter, _last_event_id(request.headers, request.query))
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
                }
            )
            await response.prepare(request)
            await response.write(b"retry: 2000\n: subscribed\n\n")
            with sub.scope:
                while True:
                    events, dropped = await sub.next(KEEPALIVE)
                    chunk = _sse(events, dropped) if events or dropped else b": keep-alive\n\n"
                    with anyio.fail_after(WRITE_TIMEOUT):
                        await response.write(chunk)
        except (*_CLOSED, TimeoutError):
            pass
        finally:
            sub.close()
        return response

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        filter = _filter(request.query)
        last = _last_event_id(request.headers, request.query)
        ws = web.WebSocketResponse(heartbeat=KEEPALIVE, max_msg_size=_MAX_MESSAGE, compress=False)
        sub = self._subscribe(filter, last)
        try:
            await ws.prepare(request)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read, ws, sub, tg.cancel_scope)
                with sub.scope:
                    await self._write(ws, sub)
                tg.cancel_scope.cancel()
        finally:
            sub.close()
            if ws.prepared:
                with anyio.move_on_after(1.0, shield=True):
                    await ws.close(code=1001)  # going away: the stream ended
        return ws

    async def _write(self, ws: web.WebSocketResponse, sub: Subscription) -> None:
        """Send what the subscription gets until the client goes or cannot keep up."""
        try:
            with anyio.fail_after(WRITE_TIMEOUT):
                await ws.send_frame(_subscribed(sub.filter), WSMsgType.TEXT)
            while True:
                events, dropped = await sub.next(KEEPALIVE)
                with anyio.fail_after(WRITE_TIMEOUT):
                    if dropped:
                        await ws.send_frame(_dropped(dropped), WSMsgType.TEXT)
                    for event in events:
                        await ws.send_frame(event.data, WSMsgType.TEXT)
        except (*_CLOSED, TimeoutError):
            pass

    async def _read(
        self, ws: web.WebSocketResponse, sub: Subscription, scope: anyio.CancelScope
    ) -> None:
        """The client's messages: ``{"subscribe": {...}}`` changes the filter."""
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                reply = _resubscribe(sub, message.data)
                with anyio.fail_after(WRITE_TIMEOUT):
                    await ws.send_frame(reply, WSMsgType.TEXT)
        except (*_CLOSED, TimeoutError):
            pass
        finally:
            scope.cancel()  # the client closed: end the stream


def _subscribed(filter: Filter) -> bytes:
    return orjson.dumps({"type": "subscribed", **filter.as_json()})


def _error(message: str) -> bytes:
    return orjson.dumps({"type": "error", "message": message})


def _resubscribe(sub: Subscription, text: str) -> bytes:
    try:
        body: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _error("a message must be JSON")
    wanted = body.get("subscribe") if isinstance(body, dict) else None
    if not isinstance(wanted, dict):
        return _error('expected {"subscribe": {"types": [...], "target": [...]}}')
    lists: dict[str, list[str] | None] = {}
    for name in ("types", "target"):
        value = wanted.get(name)
        if isinstance(value, str):
            value = value.split(",")
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return _error(f"{name} must be a string or a list of strings")
        lists[name] = value
    try:
        sub.filter = parse_filter(lists["types"], lists["target"])
    except ValueError as exc:
        return _error(str(exc))
    return _subscribed(sub.filter)


def events_routes(daemon: Daemon) -> list[web.RouteDef]:
    api = _EventsAPI(daemon)
    return [
        web.get("/api/v1/events", answers_problems(api.sse)),
        web.get("/api/v1/events/ws", answers_problems(api.websocket)),
    ]


def install(app: web.Application, daemon: Daemon) -> None:
    """Add the event routes to ``app``, and end every stream when it shuts down (before
    aiohttp waits for the open requests, so the streams do not hold up a stop)."""
    app.router.add_routes(events_routes(daemon))

    async def close_streams(_app: web.Application) -> None:
        daemon.events.close()

    app.on_shutdown.append(close_streams)
