"""The history queries (uptime from the rollups, the labels of alerts from their fired
events, pruning the timeline) on the real PostgreSQL server on this machine: the scenarios of
tests/unit/store/test_store_history.py, unchanged, in a database made for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pudimd.store import Store
from pudimd.store.alerting import AlertingDB
from tests.integration.test_store_postgres import pg_url
from tests.unit.store.test_store_history import (
    check_fired_labels,
    check_prune_events,
    check_uptime,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

__all__ = ["pg_url"]  # the fixture, used by name


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    store = await Store.open(pg_url)
    yield store
    await store.close()


@pytest.fixture
async def db(store: Store) -> AsyncIterator[AlertingDB]:
    db = AlertingDB(store.engine)
    yield db
    db.close()


async def test_uptime_on_postgres(store: Store) -> None:
    await check_uptime(store)


async def test_fired_labels_on_postgres(db: AlertingDB) -> None:
    await check_fired_labels(db)


async def test_prune_events_on_postgres(db: AlertingDB) -> None:
    await check_prune_events(db)
