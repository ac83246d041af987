"""The ``backups`` section of the config file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from pudimd.durations import Duration
from pudimd.settings import CronExpression, StrictModel, TimeZoneName

__all__ = ["BackupsConfig"]


class BackupsConfig(StrictModel):
    """Scheduled backups of the config file and the state database."""

    schedule: CronExpression | None = Field(
        None,
        description="Cron schedule of the daemon's backups, e.g. '0 3 * * *' (a sixth field "
        "counts seconds); unset: no scheduled backups (`pudimd config backup` still works)",
    )
    timezone: TimeZoneName | None = Field(
        None, description="Time zone of the schedule (default UTC), e.g. Europe/Lisbon"
    )
    dir: Path | None = Field(
        None,
        description="Where archives are written (relative to this file); default "
        "<state_dir>/backups",
    )
    keep: int = Field(14, ge=1, description="How many archives to keep (the newest)")
    max_age: Duration = Field(
        timedelta(days=30),
        description="Archives older than this are deleted after each backup (0s: no age "
        "limit); the newest archive is always kept",
    )
    include_state: bool = Field(
        True, description="Back up the state database too, not only the config files"
    )
    extra_files: list[Path] = Field(
        default_factory=list,
        description="More files (or directories, taken whole) to keep with the config, e.g. "
        "templates; relative to this file. alertmanager_config_file and probe_modules_file "
        "are always included",
    )

    @model_validator(mode="after")
    def _tz_needs_schedule(self) -> Self:
        if self.timezone is not None and self.schedule is None:
            raise ValueError("timezone applies to a schedule only")
        return self
