"""Fixtures for the whole suite: the anyio backend, TLS material for the probe tests (a
throwaway CA from trustme and its PEM file), and a migrated SQLite database per module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import trustme


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    # the loop `pudimd run` uses by default (--loop auto): uvloop
    return "asyncio", {"use_uvloop": True}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    import trustme

    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database at the newest schema, made once per test module: a test copies it
    (``migrated_database`` in tests/unit/alerting_fixtures.py) rather than migrating."""
    from tests.unit.alerting_fixtures import migrated_database

    return migrated_database(tmp_path_factory.mktemp("db"))
