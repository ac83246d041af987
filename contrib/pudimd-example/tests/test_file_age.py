"""Unit tests of the ``file_age`` probe, calling the probe class directly."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pluggy
import pudimd_example
import pytest
from pudimd_example import FileAge
from pydantic import ValidationError

import pudimd.hookspecs
from pudimd.contracts import PluginType


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _probe(**settings: Any) -> FileAge:
    return FileAge(FileAge.Settings(**settings))


def _file(tmp_path: Path, size: int, age: float = 0.0) -> str:
    path = tmp_path / "stamp"
    path.write_bytes(b"x" * size)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return str(path)


@pytest.mark.anyio
async def test_fresh_big_enough_file_succeeds_with_its_metrics(tmp_path: Path) -> None:
    result = await _probe(min_size=10).check(_file(tmp_path, size=10), timeout=5)
    assert result.success, result.message
    assert result.metrics["size_bytes"] == 10
    assert 0 <= result.metrics["age_seconds"] < 60


@pytest.mark.anyio
async def test_missing_file_fails_saying_so(tmp_path: Path) -> None:
    result = await _probe().check(str(tmp_path / "nope"), timeout=5)
    assert not result.success
    assert "no such file" in result.message
    assert result.metrics == {}


@pytest.mark.anyio
async def test_file_older_than_max_age_fails_with_its_age(tmp_path: Path) -> None:
    result = await _probe(max_age="5m").check(_file(tmp_path, size=1, age=600), timeout=5)
    assert not result.success
    assert "more than max_age 5m" in result.message
    assert result.metrics["age_seconds"] >= 600


@pytest.mark.anyio
async def test_file_smaller_than_min_size_fails_with_its_size(tmp_path: Path) -> None:
    result = await _probe(min_size=100).check(_file(tmp_path, size=3), timeout=5)
    assert not result.success
    assert "3 bytes, fewer than min_size 100" in result.message


def test_settings_take_durations_and_reject_bad_values() -> None:
    assert FileAge.Settings(max_age="1h30m").max_age == timedelta(hours=1, minutes=30)
    assert FileAge.Settings().max_age == timedelta(minutes=5)
    for bad in ({"max_age": "0s"}, {"min_size": -1}, {"max_size": 1}):
        with pytest.raises(ValidationError):
            FileAge.Settings(**bad)


def test_plugin_registers_file_age_through_the_hookspecs() -> None:
    pm = pluggy.PluginManager("pudimd")
    pm.add_hookspecs(pudimd.hookspecs)
    pm.register(pudimd_example, name="example")
    (types,) = pm.hook.pudimd_probe_types()
    assert types == [FileAge]
    assert FileAge.type == "file_age"
    assert isinstance(FileAge, PluginType)
