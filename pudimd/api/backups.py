"""Backups in ``/api/v1`` (admin): list the archives and make one now.  There is no
restore over the API: a restore replaces the database under the running daemon, so it is
an offline operation (``pudimd config restore``, docs/backups.md).

=========================  =============================================================
``GET /api/v1/backups``    ``{"directory", "backups": [{name, path, created_at, size}]}``,
                           newest first
``POST /api/v1/backups``   make a backup now (after the one in progress, if any) and apply
                           retention: 201 with the archive's ``name``, ``path``,
                           ``created_at``, ``size``, ``seconds`` and the ``deleted`` names;
                           500 (problem document) when it fails
=========================  =============================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import orjson
from aiohttp import web

from pudimd.api.problems import Problem, answers_problems

if TYPE_CHECKING:
    from pudimd.backups.service import BackupService
    from pudimd.daemon import Daemon

__all__ = ["backups_routes"]


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class _BackupsAPI:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._fallback: BackupService | None = None

    def _service(self) -> BackupService:
        """The daemon's backup service (``daemon.backups``); until the daemon has one,
        one made here on its config (no metrics)."""
        service: BackupService | None = getattr(self.daemon, "backups", None)
        if service is not None:
            return service
        from pudimd.backups.service import BackupService

        daemon = self.daemon
        if daemon.config is None:
            raise Problem(503, "pudimd has no config loaded yet")
        if self._fallback is None:
            self._fallback = BackupService(
                daemon.config,
                config_path=daemon.config_path,
                state_dir=daemon.state_dir,
                store_url=daemon.store_url,
            )
        elif self._fallback.config is not daemon.config:
            self._fallback.configure(daemon.config)
        return self._fallback

    async def list(self, request: web.Request) -> web.Response:
        service = self._service()
        found = await anyio.to_thread.run_sync(service.list)
        return _json(
            {"directory": str(service.plan.directory), "backups": [a.as_json() for a in found]}
        )

    async def create(self, request: web.Request) -> web.Response:
        try:
            result = await self._service().backup_now()
        except Exception as exc:
            raise Problem(500, f"backup failed: {exc}") from None
        body = result.archive.as_json() | {
            "seconds": round(result.seconds, 3),
            "deleted": [p.name for p in result.deleted],
        }
        return _json(body, status=201)


def backups_routes(daemon: Daemon) -> list[web.RouteDef]:
    """The ``/api/v1/backups`` routes."""
    api = _BackupsAPI(daemon)
    return [
        web.get("/api/v1/backups", answers_problems(api.list)),
        web.post("/api/v1/backups", answers_problems(api.create)),
    ]
