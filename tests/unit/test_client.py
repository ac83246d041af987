"""``pudimd.client`` against real aiohttp servers on loopback: a small fake of the daemon's
endpoints answering the real handlers' JSON shapes (scripted failures for the retries), and
the real on-call and Alertmanager routes in front of the real alerting engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import anyio
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pudimd.alerting.alert import PostableAlert, fingerprint
from pudimd.alerting.config import AlertingBase, ReceiverBase
from pudimd.alerting.routing import RouteConfig
from pudimd.api.alertmanager import alertmanager_routes
from pudimd.api.oncall import oncall_routes
from pudimd.api.problems import problem_response
from pudimd.client import (
    Alert,
    ApiError,
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    FieldError,
    Forbidden,
    NotFound,
    PudimdError,
    TimedOut,
    Unauthorized,
)
from pudimd.client._transport import RetryPolicy, parse_retry_after
from tests.helpers import free_port
from tests.unit.alerting_fixtures import migrated_database, running_engine

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

pytestmark = pytest.mark.anyio

FP = "6e3c0ac9b1a2f4d7"
T0 = "2026-12-01T10:00:00.000Z"
LABELS = {"alertname": "DiskFull", "target": "db1", "severity": "critical"}


def fast(url: str, **options: Any) -> AsyncClient:
    """A client whose retries wait little, to keep the tests fast."""
    return AsyncClient(url, retries=3, backoff=0.01, max_backoff=0.05, **options)


# -- the fake daemon ----------------------------------------------------------------------


def alert_doc(**changes: Any) -> dict[str, Any]:
    """An alert as pudimd.api.oncall.alert_json writes it."""
    doc = {
        "fingerprint": FP,
        "labels": LABELS,
        "annotations": {"summary": "disk full"},
        "startsAt": T0,
        "endsAt": "2026-12-01T10:04:00.000Z",
        "firing": True,
        "state": "active",
        "silencedBy": [],
        "inhibitedBy": [],
        "mutedBy": [],
        "blockedBy": [],
        "receivers": ["ops"],
        "acknowledged": None,
        "assignee": None,
    }
    return {**doc, **changes}


def gettable_doc() -> dict[str, Any]:
    """An alert as pudimd.api._amjson.gettable_alert writes it."""
    return {
        "annotations": {"summary": "disk full"},
        "endsAt": "2026-12-01T10:04:00.000Z",
        "fingerprint": FP,
        "receivers": [{"name": "ops"}],
        "startsAt": T0,
        "status": {
            "state": "suppressed",
            "silencedBy": ["0b1d"],
            "inhibitedBy": [],
            "mutedBy": [],
            "blockedBy": ["router1"],
            "acknowledgedBy": "alice",
            "assignee": "team:dba",
        },
        "updatedAt": "2026-12-01T10:01:00.000Z",
        "labels": LABELS,
        "generatorURL": "http://prometheus/graph",
    }


HISTORY = {
    "fingerprint": FP,
    "alert": alert_doc(),
    "events": [
        {
            "fingerprint": FP,
            "at": T0,
            "kind": "fired",
            "alertname": "DiskFull",
            "target": "db1",
            "actor": None,
            "interface": None,
            "detail": {"labels": LABELS, "routed": ["ops"]},
        },
        {
            "fingerprint": FP,
            "at": "2026-12-01T10:02:00.000Z",
            "kind": "acknowledged",
            "alertname": "DiskFull",
            "target": "db1",
            "actor": "alice",
            "interface": "api",
            "detail": {"comment": "on it"},
        },
    ],
    "notifications": [
        {
            "id": 7,
            "receiver": "ops",
            "integration": "webhook/0",
            "status": "firing",
            "acknowledged": False,
            "createdAt": T0,
            "state": "delivered",
            "attempts": [
                {"at": T0, "outcome": "ok", "seconds": 0.012, "detail": None},
            ],
        }
    ],
}


@dataclass
class Fake:
    """What the fake daemon saw, and the answers it is told to give first."""

    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    script: list[web.Response] = field(default_factory=list)
    peers: set[int] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    stall: bool = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read()) if request.can_read_body else None
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add(peer[1])
        if self.stall:
            await asyncio.wait_for(self.release.wait(), 5)
        if self.script:
            return self.script.pop(0)
        return self.answer(request, body)

    def answer(self, request: web.Request, body: Any) -> web.StreamResponse:
        path = request.path
        if path == "/api/v2/alerts":
            return web.json_response([gettable_doc()])
        if path == "/api/v2/status":
            return web.json_response(
                {
                    "cluster": {"status": "disabled", "peers": []},
                    "versionInfo": {
                        "version": "0.9.0",
                        "revision": "",
                        "branch": "",
                        "buildUser": "",
                        "buildDate": "",
                        "goVersion": "cpython3.11.7",
                    },
                    "config": {"original": "route:\n  receiver: ops\n"},
                    "uptime": T0,
                }
            )
        if path == f"/api/v1/alerts/{FP}/history":
            return web.json_response(HISTORY)
        if path == f"/api/v1/alerts/{FP}":
            return web.json_response(alert_doc())
        if path.startswith(f"/api/v1/alerts/{FP}/"):
            return web.json_response(self.acted(path.rsplit("/", 1)[1], body))
        if path.startswith("/api/v1/alerts/"):
            return problem_response(404, "no alert with fingerprint 'ff'")
        if path == "/api/v1/oncall":
            at = request.query.get("at", T0)
            return web.json_response({"at": at, "schedules": {"primary": ["alice"], "dba": []}})
        if path == "/api/v1/config/versions":
            version = {
                "id": 3,
                "at": T0,
                "source": "file",
                "author": "file",
                "message": "",
                "sha256": "ab" * 32,
                "current": True,
            }
            return web.json_response({"versions": [version]})
        return problem_response(404, f"no route {path}")

    def acted(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        ack = {"by": body["actor"], "at": T0, "until": "2026-12-01T12:00:00.000Z"}
        if action == "ack":
            return alert_doc(acknowledged=ack)
        if action == "assign":
            return alert_doc(assignee=body["assignee"])
        if action == "resolve":
            return alert_doc(firing=False)
        return alert_doc()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[Fake, str]]:
    state = Fake()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield state, f"http://127.0.0.1:{server.port}"
        state.release.set()


def problem(status: int, detail: str, **extra: Any) -> web.Response:
    return problem_response(status, detail, **extra)


def unavailable(status: int = 503, retry_after: str | None = None) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response("pudimd's alerting is not running", status=status, headers=headers)


# -- success paths ------------------------------------------------------------------------


async def test_every_method_reads_the_fake_daemons_answers(fake: tuple[Fake, str]) -> None:
    state, url = fake
    async with fast(url, token="s3cret") as client:
        listed = await client.alerts(['severity="critical"'], silenced=False, receiver="ops")
        assert len(listed) == 1
        one = listed[0]
        assert one.fingerprint == FP and one.labels == LABELS and one.state == "suppressed"
        assert one.receivers == ("ops",) and one.blocked_by == ("router1",)
        assert one.acknowledged_by == "alice" and one.assignee == "team:dba"
        assert one.starts_at == datetime(2026, 12, 1, 10, tzinfo=UTC)
        assert one.generator_url == "http://prometheus/graph"

        shown = await client.alert(FP)
        assert shown == Alert.from_json(alert_doc())
        assert shown.firing and shown.acknowledged is None and shown.receivers == ("ops",)

        acked = await client.ack(FP, actor="alice", for_=timedelta(hours=2), comment="on it")
        assert acked.acknowledged is not None and acked.acknowledged.by == "alice"
        assert acked.acknowledged.until == datetime(2026, 12, 1, 12, tzinfo=UTC)
        until = datetime(2026, 12, 1, 13, 30, tzinfo=UTC)
        await client.ack(FP, actor="bob", until=until)
        await client.unack(FP, actor="alice")
        assert (await client.assign(FP, "team:dba", actor="alice")).assignee == "team:dba"
        await client.comment(FP, "disk at 99%", actor="bob")
        assert (await client.resolve(FP, actor="alice")).firing is False

        history = await client.history(FP)
        assert history.alert is not None and history.alert.fingerprint == FP
        assert [(e.kind, e.actor) for e in history.events] == [
            ("fired", None),
            ("acknowledged", "alice"),
        ]
        assert history.events[0].detail == {"labels": LABELS, "routed": ["ops"]}
        (note,) = history.notifications
        assert note.id == 7 and note.state == "delivered" and note.attempts[0].seconds == 0.012

        oncall = await client.oncall(datetime(2026, 12, 1, 9, tzinfo=UTC))
        assert oncall.schedules == {"primary": ("alice",), "dba": ()}
        assert oncall.at == datetime(2026, 12, 1, 9, tzinfo=UTC)
        (version,) = await client.config_versions(limit=5)
        assert version.id == 3 and version.current and version.text is None
        status = await client.status()
        assert status.version == "0.9.0" and status.cluster == "disabled"
        assert status.config.startswith("route:")

    sent = [(method, path, body) for method, path, _, body in state.requests]
    assert sent[0][:2] == (
        "GET",
        "/api/v2/alerts?filter=severity%3D%22critical%22&silenced=false&receiver=ops",
    )
    assert sent[2] == (
        "POST",
        f"/api/v1/alerts/{FP}/ack",
        {"actor": "alice", "for": "7200s", "comment": "on it"},
    )
    assert sent[3][2] == {"actor": "bob", "until": "2026-12-01T13:30:00Z"}
    assert sent[5][2] == {"actor": "alice", "assignee": "team:dba"}
    assert sent[6][2] == {"actor": "bob", "comment": "disk at 99%"}
    assert sent[9][1] == "/api/v1/oncall?at=2026-12-01T09:00:00Z"
    for _, _, headers, _ in state.requests:
        assert headers["X-Pudimd-Interface"] == "api"
        assert headers["Authorization"] == "Bearer s3cret"
    assert len(state.peers) == 1  # one pooled connection, kept alive for every request


async def test_no_authorization_header_without_a_token(fake: tuple[Fake, str]) -> None:
    state, url = fake
    async with AsyncClient(url, interface="cli") as client:
        await client.alert(FP)
    headers = state.requests[0][2]
    assert "Authorization" not in headers and headers["X-Pudimd-Interface"] == "cli"


# -- against the real engine --------------------------------------------------------------

ENGINE_CONFIG = AlertingBase(
    route=RouteConfig(receiver="hook", group_by=["alertname"]),
    receivers=[ReceiverBase(name="hook")],
)
REAL_LABELS = {"alertname": "DiskFull", "target": "db1"}
REAL_FP = fingerprint(REAL_LABELS)


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_database(tmp_path_factory.mktemp("db"))


@pytest.fixture
async def daemon_url(migrated_db: Path, tmp_path: Path) -> AsyncIterator[str]:
    async with running_engine(migrated_db, tmp_path, ENGINE_CONFIG, "route: {}\n") as engine:
        engine.set_people(["alice", "bob"], ["dba"])
        await engine.post([PostableAlert(labels=REAL_LABELS, annotations={"summary": "full"})])
        app = web.Application()
        daemon = cast("Daemon", SimpleNamespace(alerting=engine))
        app.add_routes(oncall_routes(daemon) + alertmanager_routes(daemon))
        async with TestServer(app, host="127.0.0.1") as server:
            yield f"http://127.0.0.1:{server.port}"


async def test_ack_then_read_the_alert_and_its_history_from_the_real_engine(
    daemon_url: str,
) -> None:
    async with fast(daemon_url) as client:
        before = datetime.now(UTC)
        acked = await client.ack(REAL_FP, actor="alice", for_="2h", comment="on it")
        assert acked.acknowledged is not None and acked.acknowledged.by == "alice"
        assert acked.acknowledged.until is not None
        assert acked.acknowledged.until > before + timedelta(minutes=119)
        shown = await client.alert(REAL_FP)
        assert shown.labels == REAL_LABELS and shown.firing and shown.receivers == ("hook",)
        assert shown.acknowledged == acked.acknowledged
        assert (await client.assign(REAL_FP, "team:dba", actor="bob")).assignee == "team:dba"

        history = await client.history(REAL_FP)
        assert [(e.kind, e.actor, e.interface) for e in history.events] == [
            ("fired", None, None),
            ("acknowledged", "alice", "api"),
            ("assigned", "bob", "api"),
        ]
        assert history.events[1].detail["comment"] == "on it"
        assert history.alert is not None and history.alert.assignee == "team:dba"

        (listed,) = await client.alerts(['alertname="DiskFull"'])
        assert listed.fingerprint == REAL_FP and listed.acknowledged_by == "alice"
        assert await client.alerts(['alertname="Other"']) == []
        status = await client.status()
        assert status.cluster == "disabled" and status.config == "route: {}\n"

        with pytest.raises(ApiError) as bad:
            await client.ack(REAL_FP, actor="alice", until="yesterday")
        assert bad.value.status == 400 and bad.value.errors[0].field == "until"
        with pytest.raises(NotFound):
            await client.alert("00000000000000ff")
        assert (await client.resolve(REAL_FP, actor="alice")).firing is False
        with pytest.raises(Conflict) as conflict:
            await client.resolve(REAL_FP, actor="alice")
        assert conflict.value.title == "Conflict"


# -- retries ------------------------------------------------------------------------------


async def test_a_get_answered_503_waits_retry_after_then_succeeds(fake: tuple[Fake, str]) -> None:
    state, url = fake
    state.script = [unavailable(503, "1")]
    async with AsyncClient(url, retries=3, backoff=0.01) as client:
        started = time.monotonic()
        shown = await client.alert(FP)
        elapsed = time.monotonic() - started
    assert shown.fingerprint == FP
    assert len(state.requests) == 2
    assert 0.95 <= elapsed < 3


async def test_a_post_answered_429_with_retry_after_is_sent_again(fake: tuple[Fake, str]) -> None:
    state, url = fake
    state.script = [unavailable(429, "0"), unavailable(503, "0")]
    async with fast(url) as client:
        acked = await client.ack(FP, actor="alice")
    assert acked.acknowledged is not None
    assert [m for m, *_ in state.requests] == ["POST", "POST", "POST"]


async def test_gets_are_retried_on_5xx_with_backoff_until_the_attempts_run_out(
    fake: tuple[Fake, str],
) -> None:
    state, url = fake
    state.script = [problem(500, "boom") for _ in range(10)]
    async with AsyncClient(url, retries=2, backoff=0.01, max_backoff=0.02) as client:
        with pytest.raises(ApiError) as raised:
            await client.alert(FP)
    assert raised.value.status == 500 and raised.value.detail == "boom"
    assert len(state.requests) == 3


@pytest.mark.parametrize(
    "answer",
    [
        lambda: problem(500, "boom"),
        lambda: unavailable(503),  # no Retry-After: the daemon may have acted
        lambda: unavailable(502, "0"),
    ],
    ids=["500", "503-without-retry-after", "502"],
)
async def test_a_post_is_not_retried_on_errors_that_may_follow_its_effect(
    fake: tuple[Fake, str], answer: Callable[[], web.Response]
) -> None:
    state, url = fake
    state.script = [answer() for _ in range(4)]
    async with fast(url) as client:
        with pytest.raises(ApiError):
            await client.resolve(FP, actor="alice")
    assert len(state.requests) == 1


async def test_a_retry_after_beyond_the_cap_is_raised_at_once(fake: tuple[Fake, str]) -> None:
    state, url = fake
    state.script = [unavailable(503, "120")]
    async with fast(url, max_retry_after=10) as client:
        with pytest.raises(ApiError) as raised:
            await client.alert(FP)
    assert raised.value.status == 503 and raised.value.retry_after == 120
    assert len(state.requests) == 1


async def test_connection_refused_is_connection_failed_after_every_attempt() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with fast(url) as client:
        with pytest.raises(ConnectionFailed) as raised:
            await client.alert(FP)
        assert raised.value.attempts == 4 and not isinstance(raised.value, TimedOut)
        assert url in str(raised.value)
        with pytest.raises(ConnectionFailed) as raised:
            await client.ack(FP, actor="alice")  # nothing was sent: safe to retry
        assert raised.value.attempts == 4


async def test_a_slow_daemon_times_out_gets_retried_posts_not(fake: tuple[Fake, str]) -> None:
    state, url = fake
    state.stall = True
    async with AsyncClient(url, timeout=0.2, retries=1, backoff=0.01) as client:
        started = time.monotonic()
        with pytest.raises(TimedOut) as raised:
            await client.alert(FP)
        assert raised.value.attempts == 2 and len(state.requests) == 2
        with pytest.raises(TimedOut) as raised:
            await client.ack(FP, actor="alice")
        assert raised.value.attempts == 1 and len(state.requests) == 3
        assert time.monotonic() - started < 2


def test_retry_after_is_seconds_or_an_http_date() -> None:
    now = time.time()
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(30, abs=1)
    earlier = format_datetime(datetime.fromtimestamp(now - 30, UTC), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0


def test_backoff_is_full_jitter_capped() -> None:
    policy = RetryPolicy(retries=5, backoff=0.5, max_backoff=2.0)
    for retry, bound in [(0, 0.5), (1, 1.0), (2, 2.0), (6, 2.0)]:
        delays = [policy.delay(retry) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2  # spread over the range, not a fixed wait
    with pytest.raises(ValueError, match="retries"):
        RetryPolicy(retries=-1)


# -- errors -------------------------------------------------------------------------------


async def test_a_problem_document_becomes_an_api_error_with_field_errors(
    fake: tuple[Fake, str],
) -> None:
    state, url = fake
    state.script = [
        problem(
            400,
            "version 3 does not validate any more",
            errors=[
                {"field": "route.receiver", "location": "pudimd.yaml:4:13", "message": "unknown"},
                {"field": "for", "message": "with until"},
            ],
        ),
        web.json_response("bad filter: unexpected end", status=400),  # Alertmanager's way
        web.Response(status=502, text="Bad gateway from the proxy\n"),
    ]
    async with AsyncClient(url, retries=0) as client:
        with pytest.raises(ApiError) as raised:
            await client.ack(FP, actor="alice")
        error = raised.value
        assert (error.status, error.title) == (400, "Bad Request")
        assert error.detail == "version 3 does not validate any more"
        assert error.errors == (
            FieldError("route.receiver", "unknown", "pudimd.yaml:4:13"),
            FieldError("for", "with until"),
        )
        assert "FieldError" in repr(error)
        with pytest.raises(ApiError) as raised:
            await client.alerts(["severity="])
        assert raised.value.detail == "bad filter: unexpected end" and not raised.value.errors
        with pytest.raises(ApiError) as raised:
            await client.status()
        assert raised.value.status == 502 and raised.value.detail == "Bad gateway from the proxy"


@pytest.mark.parametrize(
    ("status", "cls"),
    [(401, Unauthorized), (403, Forbidden), (404, NotFound), (409, Conflict), (400, ApiError)],
)
async def test_statuses_have_their_error_class(
    fake: tuple[Fake, str], status: int, cls: type[ApiError]
) -> None:
    state, url = fake
    state.script = [problem(status, "no")]
    async with AsyncClient(url, retries=0) as client:
        with pytest.raises(cls) as raised:
            await client.unack(FP, actor="alice")
    assert type(raised.value) is cls and raised.value.status == status
    assert isinstance(raised.value, PudimdError)


async def test_a_success_that_is_not_json_is_a_pudimd_error(fake: tuple[Fake, str]) -> None:
    state, url = fake
    state.script = [web.Response(text="<html>login</html>", content_type="text/html")]
    async with AsyncClient(url, retries=0) as client:
        with pytest.raises(PudimdError, match="not JSON"):
            await client.alert(FP)


# -- the blocking client ------------------------------------------------------------------


async def in_thread(work: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(work)


async def test_the_blocking_client_makes_the_same_calls(fake: tuple[Fake, str]) -> None:
    state, url = fake
    state.script = [unavailable(503, "0")]

    def work() -> None:
        with Client(url, token="t", retries=3, backoff=0.01, max_backoff=0.05) as client:
            assert client.alert(FP).fingerprint == FP  # after one retry
            acked = client.ack(FP, actor="alice", for_="2h")
            assert acked.acknowledged is not None and acked.acknowledged.by == "alice"
            assert client.assign(FP, "user:bob", actor="alice").assignee == "user:bob"
            assert client.resolve(FP, actor="alice").firing is False
            assert [e.kind for e in client.history(FP).events] == ["fired", "acknowledged"]
            assert client.alerts()[0].fingerprint == FP
            assert client.oncall().schedules["primary"] == ("alice",)
            assert client.config_versions()[0].id == 3
            assert client.status().runtime == "cpython3.11.7"
            with pytest.raises(NotFound):
                client.alert("ff")
        with pytest.raises(PudimdError, match="closed"):
            client.alert(FP)
        client.close()  # idempotent

    await in_thread(work)
    assert len(state.requests) == 11
    assert all(h["Authorization"] == "Bearer t" for _, _, h, _ in state.requests)


def test_the_blocking_client_reports_a_refused_connection() -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01)
    with client, pytest.raises(ConnectionFailed) as raised:
        client.oncall()
    assert raised.value.attempts == 2


def test_bad_arguments_are_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="base_url"):
        AsyncClient("127.0.0.1:9797")
    with pytest.raises(ValueError, match="timeout"):
        AsyncClient("http://x", timeout=0)


async def test_a_naive_until_is_refused(fake: tuple[Fake, str]) -> None:
    _, url = fake
    async with AsyncClient(url) as client:
        with pytest.raises(ValueError, match="time zone"):
            await client.ack(FP, actor="alice", until=datetime(2026, 12, 1, 12))
