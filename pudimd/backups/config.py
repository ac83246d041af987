"""The ``backups`` section of the config file."""

from __future__ import annotations

from pydantic import Field

from pudimd.settings import StrictModel

__all__ = ["BackupsConfig"]


class BackupsConfig(StrictModel):
    """Scheduled backups of the config file and the state database."""

    schedule: str | None = Field(None, description="Cron schedule; unset: no scheduled backups")
