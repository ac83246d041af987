"""A webhook collector for ``bench_alerting.py``: receives Alertmanager webhook payloads,
checks each against the version-4 format, and remembers what arrived and when.

Run as its own process (``python bench/_collector.py PORT``) so that receiving does not
share a CPU or the GIL with the driver.  Timestamps are ``time.monotonic()`` (CLOCK_MONOTONIC,
the same clock in every process of the machine), taken when the request's headers are in.

    POST /hook      a webhook payload; 200 when valid, 400 (with the reason) when not
    GET  /stats     {"payloads", "invalid": [reasons], "firing": {alertname: [ids...]},
                     "first_seen": {alertname: monotonic}, "resolved": n}
    GET  /wait?name=N&timeout=S   long poll: the first receipt time of alertname N (404
                    when it did not arrive within S seconds)
    POST /reset     forget everything (between the systems under test)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web

STATUSES = {"firing", "resolved"}
ALERT_KEYS = {
    "status": str,
    "labels": dict,
    "annotations": dict,
    "startsAt": str,
    "endsAt": str,
    "generatorURL": str,
    "fingerprint": str,
}
PAYLOAD_KEYS = {
    "version": str,
    "groupKey": str,
    "truncatedAlerts": int,
    "status": str,
    "receiver": str,
    "groupLabels": dict,
    "commonLabels": dict,
    "commonAnnotations": dict,
    "externalURL": str,
    "alerts": list,
}


def problems(payload: Any) -> list[str]:
    """What makes ``payload`` not a valid Alertmanager webhook payload, version 4."""
    if not isinstance(payload, dict):
        return ["payload is not an object"]
    out: list[str] = []
    for key, kind in PAYLOAD_KEYS.items():
        if not isinstance(payload.get(key), kind):
            out.append(f"{key}: missing or not {kind.__name__}")
    if payload.get("version") != "4":
        out.append(f"version is {payload.get('version')!r}, not '4'")
    if payload.get("status") not in STATUSES:
        out.append(f"status {payload.get('status')!r}")
    for i, alert in enumerate(payload.get("alerts") or []):
        if not isinstance(alert, dict):
            out.append(f"alerts[{i}] is not an object")
            continue
        for key, kind in ALERT_KEYS.items():
            if not isinstance(alert.get(key), kind):
                out.append(f"alerts[{i}].{key}: missing or not {kind.__name__}")
        if alert.get("status") not in STATUSES:
            out.append(f"alerts[{i}].status {alert.get('status')!r}")
        labels = alert.get("labels") or {}
        if not all(isinstance(v, str) for v in labels.values()):
            out.append(f"alerts[{i}].labels: a value is not a string")
    group_labels = payload.get("groupLabels") or {}
    common = payload.get("commonLabels") or {}
    if isinstance(group_labels, dict) and isinstance(common, dict):
        for name, value in group_labels.items():
            if common.get(name) != value:
                out.append(f"groupLabels.{name} is not among commonLabels")
    return out


class State:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.payloads = 0
        self.invalid: list[str] = []
        self.firing: dict[str, set[str]] = {}
        self.first_seen: dict[str, float] = {}
        self.resolved = 0
        self.waiters: dict[str, asyncio.Event] = {}


async def hook(request: web.Request) -> web.Response:
    at = time.monotonic()
    state: State = request.app["state"]
    try:
        payload = json.loads(await request.read())
    except ValueError as exc:
        state.invalid.append(f"not JSON: {exc}")
        return web.Response(status=400, text="not JSON")
    state.payloads += 1
    bad = problems(payload)
    if bad:
        state.invalid.append("; ".join(bad[:5]))
        return web.Response(status=400, text="\n".join(bad))
    for alert in payload["alerts"]:
        labels = alert["labels"]
        name = labels.get("alertname", "")
        if alert["status"] == "resolved":
            state.resolved += 1
            continue
        if name not in state.first_seen:
            state.first_seen[name] = at
            if name in state.waiters:
                state.waiters.pop(name).set()
        state.firing.setdefault(name, set()).add(labels.get("id", ""))
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    body = {
        "payloads": state.payloads,
        "invalid": state.invalid[:20],
        "invalid_count": len(state.invalid),
        "firing": {name: sorted(ids) for name, ids in state.firing.items()},
        "first_seen": state.first_seen,
        "resolved": state.resolved,
    }
    return web.json_response(body)


async def wait(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    name = request.query["name"]
    if name not in state.first_seen:
        event = state.waiters.setdefault(name, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), float(request.query.get("timeout", "5")))
        except TimeoutError:
            return web.Response(status=404, text="not yet")
    return web.json_response({"at": state.first_seen[name]})


async def reset(request: web.Request) -> web.Response:
    request.app["state"].reset()
    return web.Response(text="ok")


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["state"] = State()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_get("/wait", wait)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
