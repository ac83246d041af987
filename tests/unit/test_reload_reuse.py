"""A reload (or an API edit) hands the scheduler and the rule engine the same target
objects for targets written exactly as before, so they are skipped cheaply; a target
whose file-held secret changed is rebuilt all the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pudimd.daemon import reuse_unchanged_targets
from tests.unit.api_harness import running

pytestmark = pytest.mark.anyio


async def test_unchanged_targets_keep_their_objects_and_file_secrets_are_reread(
    tmp_path: Path, migrated: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text("one")
    config = tmp_path / "pudimd.yaml"
    text = (
        "targets:\n"
        "  - {name: a, probe: echo, target: x, interval: 1h}\n"
        "  - {name: b, probe: echo, target: y, interval: 1h}\n"
        f"  - {{name: s, probe: echo, target: z, interval: 1h, echo: {{token_file: {secret}}}}}\n"
    )
    config.write_text(text)
    (tmp_path / "state").mkdir()
    shutil.copyfile(migrated, tmp_path / "state" / "pudimd.db")
    async with running(config, tmp_path / "state") as api:
        daemon = api.daemon
        assert daemon.config is not None and daemon.scheduler is not None
        before = {t.name: t for t in daemon.config.targets}
        jobs = dict(daemon.scheduler.jobs)
        secret.write_text("two")
        config.write_text(text.replace("target: y", "target: y2"))
        assert await daemon.reload("test") is None
        after = {t.name: t for t in daemon.config.targets}
        assert after["a"] is before["a"] and daemon.scheduler.jobs["a"] is jobs["a"]
        assert after["b"] is not before["b"] and after["b"].target == "y2"
        assert after["s"] is not before["s"]  # same text, but its secret file changed
        assert after["s"].settings.token_file.get_secret_value() == "two"
        # a changed `defaults:` section reuses nothing
        daemon.config_path.write_text("defaults: {timeout: 5s}\n" + config.read_text())
        old = daemon.config
        assert await daemon.reload("test") is None
        assert all(t is not old.targets[i] for i, t in enumerate(daemon.config.targets))


def test_nothing_is_reused_without_an_old_config() -> None:
    from pudimd.config.models import ConfigBase

    assert reuse_unchanged_targets(None, ConfigBase()) == 0
