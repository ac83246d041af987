"""The asyncio client: :class:`AsyncClient`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from pudimd import __version__
from pudimd.client._transport import Params, RetryPolicy, Transport
from pudimd.client.errors import PROBLEM_CONTENT_TYPE, PudimdError
from pudimd.client.models import (
    Alert,
    AlertHistory,
    BulkResult,
    ConfigVersion,
    GettableAlert,
    OnCall,
    Status,
    Target,
    TargetPage,
)

__all__ = ["AsyncClient", "format_duration", "format_time"]


def format_time(moment: datetime | str) -> str:
    """An aware datetime as RFC 3339 in UTC (a string is sent as it is)."""
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone: give an aware datetime")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def format_duration(duration: timedelta | str) -> str:
    """A timedelta as the daemon reads durations (``7200s``, ``1500ms``)."""
    if isinstance(duration, str):
        return duration
    millis = round(duration.total_seconds() * 1000)
    if millis <= 0:
        raise ValueError(f"a duration must be positive, got {duration!r}")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _expect(data: Any, kind: type, what: str) -> Any:
    if not isinstance(data, kind):
        raise PudimdError(f"malformed answer to {what}: expected a {kind.__name__}")
    return data


class AsyncClient:
    """pudimd's HTTP API over one pooled :class:`aiohttp.ClientSession`.

    Use it as an async context manager (or call :meth:`aclose`)::

        async with AsyncClient("http://127.0.0.1:9797") as client:
            alert = await client.ack(fingerprint, actor="alice", for_="2h")

    ``timeout`` bounds each attempt (seconds, whole request); ``retries``, ``backoff``,
    ``max_backoff`` and ``max_retry_after`` are the retry policy
    (:mod:`pudimd.client._transport`); ``interface`` is sent as ``X-Pudimd-Interface`` and
    recorded with actions (``api``, ``cli``, ``web``); ``token`` as a bearer token;
    ``connections`` caps the pool.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_retry_after: float = 30.0,
        interface: str = "api",
        connections: int = 10,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.policy = RetryPolicy(retries, backoff, max_backoff, max_retry_after)
        self.timeout = timeout
        self.connections = connections
        headers = {
            "Accept": f"application/json, {PROBLEM_CONTENT_TYPE}",
            "User-Agent": f"pudimd-client/{__version__}",
            "X-Pudimd-Interface": interface,
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.headers: Mapping[str, str] = headers
        self._transport: Transport | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r})"

    async def __aenter__(self) -> Self:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _open(self) -> Transport:
        if self._closed:
            raise PudimdError("the client is closed")
        if self._transport is None:
            session = aiohttp.ClientSession(
                headers=dict(self.headers),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.connections),
                raise_for_status=False,
            )
            self._transport = Transport(session, self.base_url, self.policy)
        return self._transport

    async def aclose(self) -> None:
        """Close the pooled connections; the client cannot be used after."""
        self._closed = True
        if self._transport is not None:
            await self._transport.session.close()
            self._transport = None

    async def _get(self, path: str, params: Params = ()) -> Any:
        return await self._open().request("GET", path, params=params)

    async def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        return await self._open().request("POST", path, body=dict(body))

    async def _send(self, method: str, path: str, body: Any = None, params: Params = ()) -> Any:
        return await self._open().request(method, path, body=body, params=params)

    # -- Alertmanager API v2 --------------------------------------------------------------

    async def alerts(
        self,
        filters: Sequence[str] = (),
        *,
        active: bool | None = None,
        silenced: bool | None = None,
        inhibited: bool | None = None,
        unprocessed: bool | None = None,
        receiver: str | None = None,
    ) -> list[GettableAlert]:
        """``GET /api/v2/alerts``: unresolved alerts matching every matcher of ``filters``
        (``'severity=~"crit.*"'``); the flags as Alertmanager's (unset: the daemon's
        default, true); ``receiver`` a regex."""
        params: list[tuple[str, str]] = [("filter", f) for f in filters]
        flags = {"active": active, "silenced": silenced, "inhibited": inhibited}
        flags["unprocessed"] = unprocessed
        params += [(name, _bool(value)) for name, value in flags.items() if value is not None]
        if receiver is not None:
            params.append(("receiver", receiver))
        data = _expect(await self._get("/api/v2/alerts", params), list, "GET /api/v2/alerts")
        return [GettableAlert.from_json(item) for item in data]

    async def status(self) -> Status:
        """``GET /api/v2/status``."""
        return Status.from_json(_expect(await self._get("/api/v2/status"), dict, "status"))

    # -- on call: one alert ---------------------------------------------------------------

    async def alert(self, fingerprint: str) -> Alert:
        """``GET /api/v1/alerts/{fingerprint}``; NotFound when the daemon holds no such alert."""
        data = await self._get(f"/api/v1/alerts/{quote(fingerprint, safe='')}")
        return Alert.from_json(_expect(data, dict, "GET alert"))

    async def _act(self, fingerprint: str, action: str, body: dict[str, Any]) -> Alert:
        path = f"/api/v1/alerts/{quote(fingerprint, safe='')}/{action}"
        sent = {name: value for name, value in body.items() if value is not None}
        return Alert.from_json(_expect(await self._post(path, sent), dict, action))

    async def ack(
        self,
        fingerprint: str,
        *,
        actor: str,
        until: datetime | str | None = None,
        for_: timedelta | str | None = None,
        comment: str | None = None,
    ) -> Alert:
        """Acknowledge until ``until``, for ``for_`` (``"2h"`` or a timedelta), or until it
        resolves; the alert after the change."""
        return await self._act(
            fingerprint,
            "ack",
            _ack_body(actor, until, for_, comment),
        )

    async def snooze(
        self,
        fingerprint: str,
        *,
        actor: str,
        until: datetime | str | None = None,
        for_: timedelta | str | None = None,
        comment: str | None = None,
    ) -> Alert:
        """Acknowledge until ``until`` or for ``for_`` (one of them is required)."""
        return await self._act(
            fingerprint,
            "snooze",
            _ack_body(actor, until, for_, comment),
        )

    async def unack(self, fingerprint: str, *, actor: str, comment: str | None = None) -> Alert:
        """Take the acknowledgement back; Conflict when it is not acknowledged."""
        return await self._act(fingerprint, "unack", {"actor": actor, "comment": comment})

    async def assign(
        self, fingerprint: str, assignee: str, *, actor: str, comment: str | None = None
    ) -> Alert:
        """Assign to ``user:NAME`` or ``team:NAME``."""
        body = {"actor": actor, "assignee": assignee, "comment": comment}
        return await self._act(fingerprint, "assign", body)

    async def comment(self, fingerprint: str, text: str, *, actor: str) -> Alert:
        return await self._act(fingerprint, "comment", {"actor": actor, "comment": text})

    async def resolve(self, fingerprint: str, *, actor: str, comment: str | None = None) -> Alert:
        """Resolve by hand; Conflict when it already is."""
        return await self._act(fingerprint, "resolve", {"actor": actor, "comment": comment})

    async def history(self, fingerprint: str) -> AlertHistory:
        """``GET /api/v1/alerts/{fingerprint}/history``: the timeline and notifications."""
        data = await self._get(f"/api/v1/alerts/{quote(fingerprint, safe='')}/history")
        return AlertHistory.from_json(_expect(data, dict, "history"))

    # -- on call: people, config ----------------------------------------------------------

    async def oncall(self, at: datetime | str | None = None) -> OnCall:
        """``GET /api/v1/oncall``: who is on call in each schedule, now or ``at``."""
        params = [] if at is None else [("at", format_time(at))]
        return OnCall.from_json(_expect(await self._get("/api/v1/oncall", params), dict, "oncall"))

    async def config_versions(
        self, *, limit: int | None = None, before: int | None = None
    ) -> list[ConfigVersion]:
        """``GET /api/v1/config/versions``: newest first, without their text."""
        params = [(k, str(v)) for k, v in (("limit", limit), ("before", before)) if v is not None]
        data = _expect(await self._get("/api/v1/config/versions", params), dict, "versions")
        return [ConfigVersion.from_json(item) for item in data.get("versions") or ()]

    # -- targets ------------------------------------------------------------------------

    async def targets_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        probe: str | None = None,
        labels: Mapping[str, str] | None = None,
        query: str | None = None,
        health: str | None = None,
    ) -> TargetPage:
        """``GET /api/v1/targets``: one page, by name, filtered."""
        params: list[tuple[str, str]] = [
            (k, str(v))
            for k, v in (
                ("limit", limit),
                ("cursor", cursor),
                ("probe", probe),
                ("q", query),
                ("health", health),
            )
            if v is not None
        ]
        params += [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        data = _expect(await self._get("/api/v1/targets", params), dict, "GET /api/v1/targets")
        return TargetPage.from_json(data)

    async def targets(self, **filters: Any) -> list[Target]:
        """Every target matching ``filters`` (as :meth:`targets_page`), all pages."""
        found: list[Target] = []
        cursor: str | None = None
        while True:
            page = await self.targets_page(limit=1000, cursor=cursor, **filters)
            found += page.targets
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    async def target(self, name: str) -> Target:
        """``GET /api/v1/targets/{name}``."""
        data = await self._get(f"/api/v1/targets/{quote(name, safe='/')}")
        return Target.from_json(_expect(data, dict, "GET target"))

    async def create_target(self, target: Mapping[str, Any]) -> Target:
        """``POST /api/v1/targets``: written to the config file and applied."""
        data = await self._send("POST", "/api/v1/targets", dict(target))
        return Target.from_json(_expect(data, dict, "POST target"))

    async def replace_target(self, name: str, target: Mapping[str, Any]) -> Target:
        """``PUT /api/v1/targets/{name}``."""
        data = await self._send("PUT", f"/api/v1/targets/{quote(name, safe='/')}", dict(target))
        return Target.from_json(_expect(data, dict, "PUT target"))

    async def update_target(self, name: str, patch: Mapping[str, Any]) -> Target:
        """``PATCH /api/v1/targets/{name}`` (JSON merge patch: None removes a field)."""
        data = await self._send("PATCH", f"/api/v1/targets/{quote(name, safe='/')}", dict(patch))
        return Target.from_json(_expect(data, dict, "PATCH target"))

    async def delete_target(self, name: str) -> None:
        """``DELETE /api/v1/targets/{name}``."""
        await self._send("DELETE", f"/api/v1/targets/{quote(name, safe='/')}")

    async def import_targets(
        self, targets: Sequence[Mapping[str, Any]], *, mode: str = "merge", dry_run: bool = False
    ) -> BulkResult:
        """``POST /api/v1/targets/import``: ``merge`` creates or replaces by name,
        ``replace`` makes ``targets`` the whole list; all or nothing."""
        params = [("mode", mode)] + ([("dry_run", "true")] if dry_run else [])
        body = [dict(t) for t in targets]
        data = await self._send("POST", "/api/v1/targets/import", body, params)
        return BulkResult.from_json(_expect(data, dict, "import"))

    async def export_targets(self) -> list[dict[str, Any]]:
        """Every target as written (``GET /api/v1/targets?format=json``), importable."""
        data = await self._get("/api/v1/targets", [("format", "json")])
        return list(_expect(data, dict, "export").get("targets") or [])

    async def daemon_status(self) -> dict[str, Any]:
        """``GET /api/v1/status``: version, uptime, plugins, scheduler, store, outbox..."""
        return dict(_expect(await self._get("/api/v1/status"), dict, "GET /api/v1/status"))

    async def whoami(self) -> dict[str, Any]:
        """``GET /api/v1/whoami``: who the token (or session) is, and its role."""
        return dict(_expect(await self._get("/api/v1/whoami"), dict, "GET /api/v1/whoami"))


def _ack_body(
    actor: str,
    until: datetime | str | None,
    for_: timedelta | str | None,
    comment: str | None,
) -> dict[str, Any]:
    """The body of an acknowledgement or a snooze (None values are left out when sent)."""
    return {
        "actor": actor,
        "until": None if until is None else format_time(until),
        "for": None if for_ is None else format_duration(for_),
        "comment": comment,
    }
