"""The blocking client: :class:`Client`, an :class:`~pudimd.client.AsyncClient` run on a
private event loop in a background thread.

One implementation of requests, retries and parsing serves both; the thread owns the loop
and the pooled session, so the client works from any thread, including one that already
runs an event loop of its own (where ``asyncio.run`` would refuse)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from pudimd.client._async import AsyncClient
from pudimd.client.errors import PudimdError
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

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """The same API as :class:`AsyncClient`, blocking.  Use it as a context manager (or
    call :meth:`close`): it holds a thread and its connections until closed."""

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
        self._client = AsyncClient(
            base_url,
            token=token,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            max_retry_after=max_retry_after,
            interface=interface,
            connections=connections,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pudimd-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    def __repr__(self) -> str:
        return f"Client({self._client.base_url!r})"

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the thread; idempotent."""
        if self._closed:
            return
        try:
            self._run(self._client.aclose())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise PudimdError("the client is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise PudimdError("Client called from its own event loop: use AsyncClient there")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # interrupted (KeyboardInterrupt): stop the request too
            raise

    # -- the API (see AsyncClient) --------------------------------------------------------

    def alerts(
        self,
        filters: Sequence[str] = (),
        *,
        active: bool | None = None,
        silenced: bool | None = None,
        inhibited: bool | None = None,
        unprocessed: bool | None = None,
        receiver: str | None = None,
    ) -> list[GettableAlert]:
        return self._run(
            self._client.alerts(
                filters,
                active=active,
                silenced=silenced,
                inhibited=inhibited,
                unprocessed=unprocessed,
                receiver=receiver,
            )
        )

    def status(self) -> Status:
        return self._run(self._client.status())

    def alert(self, fingerprint: str) -> Alert:
        return self._run(self._client.alert(fingerprint))

    def ack(
        self,
        fingerprint: str,
        *,
        actor: str,
        until: datetime | str | None = None,
        for_: timedelta | str | None = None,
        comment: str | None = None,
    ) -> Alert:
        return self._run(
            self._client.ack(fingerprint, actor=actor, until=until, for_=for_, comment=comment)
        )

    def snooze(
        self,
        fingerprint: str,
        *,
        actor: str,
        until: datetime | str | None = None,
        for_: timedelta | str | None = None,
        comment: str | None = None,
    ) -> Alert:
        return self._run(
            self._client.snooze(fingerprint, actor=actor, until=until, for_=for_, comment=comment)
        )

    def unack(self, fingerprint: str, *, actor: str, comment: str | None = None) -> Alert:
        return self._run(self._client.unack(fingerprint, actor=actor, comment=comment))

    def assign(
        self, fingerprint: str, assignee: str, *, actor: str, comment: str | None = None
    ) -> Alert:
        return self._run(self._client.assign(fingerprint, assignee, actor=actor, comment=comment))

    def comment(self, fingerprint: str, text: str, *, actor: str) -> Alert:
        return self._run(self._client.comment(fingerprint, text, actor=actor))

    def resolve(self, fingerprint: str, *, actor: str, comment: str | None = None) -> Alert:
        return self._run(self._client.resolve(fingerprint, actor=actor, comment=comment))

    def history(self, fingerprint: str) -> AlertHistory:
        return self._run(self._client.history(fingerprint))

    def oncall(self, at: datetime | str | None = None) -> OnCall:
        return self._run(self._client.oncall(at))

    def config_versions(
        self, *, limit: int | None = None, before: int | None = None
    ) -> list[ConfigVersion]:
        return self._run(self._client.config_versions(limit=limit, before=before))

    def targets_page(self, **filters: Any) -> TargetPage:
        return self._run(self._client.targets_page(**filters))

    def targets(self, **filters: Any) -> list[Target]:
        return self._run(self._client.targets(**filters))

    def target(self, name: str) -> Target:
        return self._run(self._client.target(name))

    def create_target(self, target: Mapping[str, Any]) -> Target:
        return self._run(self._client.create_target(target))

    def replace_target(self, name: str, target: Mapping[str, Any]) -> Target:
        return self._run(self._client.replace_target(name, target))

    def update_target(self, name: str, patch: Mapping[str, Any]) -> Target:
        return self._run(self._client.update_target(name, patch))

    def delete_target(self, name: str) -> None:
        self._run(self._client.delete_target(name))

    def import_targets(
        self, targets: Sequence[Mapping[str, Any]], *, mode: str = "merge", dry_run: bool = False
    ) -> BulkResult:
        return self._run(self._client.import_targets(targets, mode=mode, dry_run=dry_run))

    def export_targets(self) -> list[dict[str, Any]]:
        return self._run(self._client.export_targets())

    def daemon_status(self) -> dict[str, Any]:
        return self._run(self._client.daemon_status())

    def whoami(self) -> dict[str, Any]:
        return self._run(self._client.whoami())
