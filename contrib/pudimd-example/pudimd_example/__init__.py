"""pudimd-example: a third-party pudimd plugin providing the ``file_age`` probe.

``file_age`` checks that a file exists, was modified recently and is big enough: the
heartbeat file a backup job touches, a spool that must keep being written, a dump that must
not come out empty.  The target is the file's path::

    targets:
      - name: nightly-backup
        probe: file_age
        target: /srv/backup/last-run.stamp
        interval: 1m
        file_age:
          max_age: 26h
          min_size: 1

Metrics per check: ``age_seconds`` (now minus the file's mtime) and ``size_bytes``.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any, ClassVar

import anyio
import anyio.to_thread
from pydantic import Field

from pudimd.durations import PositiveDuration, format_duration
from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings

__all__ = ["FileAge", "pudimd_probe_types"]


class FileAge:
    """Succeeds when the file at the target path exists, is younger than ``max_age`` and
    holds at least ``min_size`` bytes."""

    type: ClassVar[str] = "file_age"

    class Settings(PluginSettings):
        """The ``file_age:`` block of a target."""

        max_age: PositiveDuration = Field(
            default=timedelta(minutes=5),
            description="Fail when the file was last modified longer ago than this.",
        )
        min_size: int = Field(
            default=0, ge=0, description="Fail when the file holds fewer bytes than this."
        )

    def __init__(self, settings: FileAge.Settings) -> None:
        self.settings = settings

    # The timeout parameter is pudimd's Probe contract (ruff's ASYNC109 would rather it were a
    # cancel scope around the call, which the scheduler also puts there).
    async def check(self, target: str, timeout: float) -> ProbeResult:
        """Stat ``target`` (in a worker thread: a hung NFS mount must not block the loop)."""
        try:
            with anyio.fail_after(timeout):
                # abandon_on_cancel: on timeout the check ends now; the stuck thread is left
                # to finish on its own rather than holding the check past its timeout.
                st = await anyio.to_thread.run_sync(os.stat, target, abandon_on_cancel=True)
        except TimeoutError:
            return ProbeResult.failure(f"{target}: stat did not answer within {timeout:g}s")
        except FileNotFoundError:
            return ProbeResult.failure(f"{target}: no such file")
        except OSError as exc:
            return ProbeResult.failure(f"{target}: {exc.strerror or exc}")

        age = max(0.0, time.time() - st.st_mtime)  # an mtime in the future counts as fresh
        metrics = {"age_seconds": age, "size_bytes": float(st.st_size)}
        problems = []
        if age > self.settings.max_age.total_seconds():
            problems.append(
                f"last modified {_seconds(age)} ago, more than max_age "
                f"{format_duration(self.settings.max_age)}"
            )
        if st.st_size < self.settings.min_size:
            problems.append(f"{st.st_size} bytes, fewer than min_size {self.settings.min_size}")
        if problems:
            return ProbeResult.failure(f"{target}: " + "; ".join(problems), metrics=metrics)
        return ProbeResult(
            success=True,
            message=f"{target}: modified {_seconds(age)} ago, {st.st_size} bytes",
            metrics=metrics,
        )

    async def aclose(self) -> None:
        """Nothing to release: each check only stats the file."""


def _seconds(seconds: float) -> str:
    """``452.7`` -> ``"7m33s"``: whole seconds read better in a message."""
    return format_duration(timedelta(seconds=round(seconds)))


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """Register the ``file_age`` probe type."""
    return [FileAge]
