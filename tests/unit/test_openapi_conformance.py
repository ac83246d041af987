"""schemathesis against the daemon running in this process, with an admin token: for
every operation of ``/api/v1/openapi.json``, requests generated from its schemas get no
5xx, and every answer has a documented status and content type and conforms to its
schema."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.unit.api_harness import Api, served

pytestmark = pytest.mark.anyio

CONFIG = """\
targets:
  - name: web
    probe: echo
    target: a.example
    interval: 1h
    labels: {team: shop}
  - name: api
    probe: echo
    target: b.example
    interval: 1h

alerting:
  route:
    receiver: default
  receivers:
    - name: default
"""

SKIPPED = {
    "GET /api/v1/events": "an endless stream",
    "GET /api/v1/events/ws": "a WebSocket",
    "DELETE /api/v1/tokens/{id}": "would revoke the token the test runs with",
    "POST /api/v1/logout": "nothing to check without a session",
}
MAX_EXAMPLES = 12
BUDGET = 150.0  # seconds for every operation together (2 shared cores)


@pytest.fixture
async def api(tmp_path: Path, migrated: Path) -> AsyncIterator[Api]:
    async with served(tmp_path, migrated, CONFIG) as run:
        yield run


def _run_schemathesis(base: str, headers: dict[str, str]) -> tuple[list[str], list[str]]:
    """Every operation of the document at ``base``: the failures found and the operations
    run.  Blocking (schemathesis calls with requests): run in a worker thread."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json", timeout=10)
    failures: list[str] = []
    ran: list[str] = []
    deadline = time.monotonic() + BUDGET
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        label = f"{operation.method.upper()} {operation.path}"
        if label in SKIPPED:
            continue
        if time.monotonic() > deadline:
            failures.append(f"{label}: not run, over the time budget")
            continue
        ran.append(label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=base, headers=headers, timeout=20)
            case.validate_response(response, checks=checks, headers=headers)

        try:
            check()
        except (
            Exception,
            BaseExceptionGroup,
        ) as exc:  # a failed check: collect them all, then report
            failures.append(f"{label}: {str(exc)[:2000]}")
    return failures, ran


async def test_every_operation_conforms_to_the_document(api: Api) -> None:
    base = f"http://127.0.0.1:{api.daemon.port}"
    failures, ran = await anyio.to_thread.run_sync(_run_schemathesis, base, api.headers)
    assert len(ran) >= 45, ran
    assert not failures, "\n\n".join(failures)
