"""``/api/v1/actions/{token}``: the pages behind the signed links of notifications, against
the real alerting engine (SQLite in a temporary directory), and a Slack message whose
buttons acknowledge then resolve its alert, each change reflected in a follow-up message."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pudimd_plugins.notifiers.slack import SlackNotifier

from pudimd.alerting import links
from pudimd.alerting.alert import PostableAlert, fingerprint
from pudimd.alerting.config import (
    ActionLinksConfig,
    AlertingBase,
    ReceiverBase,
    build_alerting_model,
)
from pudimd.alerting.engine import Alerting
from pudimd.alerting.routing import RouteConfig
from pudimd.api.actionlinks import install
from pudimd.api.problems import CONTENT_TYPE
from tests.unit.alerting_fixtures import migrated_database, running_engine
from tests.unit.notifiers.saas_fakes import Fake, slack_fake

if TYPE_CHECKING:
    from pudimd.daemon import Daemon

pytestmark = pytest.mark.anyio

Client = TestClient[web.Request, web.Application]

EXTERNAL = "http://pudimd.test"
CONFIG = AlertingBase(
    external_url=EXTERNAL,
    route=RouteConfig(receiver="hook", group_by=["alertname"]),
    receivers=[ReceiverBase(name="hook")],
)
LABELS = {"alertname": "DiskFull", "target": "db1"}
FP = fingerprint(LABELS)
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_database(tmp_path_factory.mktemp("db"))


@asynccontextmanager
async def serving(engine: Alerting, config: Any, state: Path) -> AsyncIterator[Client]:
    """The action link routes of a daemon holding ``engine`` and ``config`` (its state
    directory ``state``), installed as ``make_app`` does: they provide the links."""
    daemon = SimpleNamespace(
        alerting=engine, config=SimpleNamespace(alerting=config), state_dir=lambda _c: state
    )
    app = web.Application()
    install(app, cast("Daemon", daemon))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def engine(migrated_db: Path, tmp_path: Path) -> AsyncIterator[Alerting]:
    async with running_engine(migrated_db, tmp_path, CONFIG) as alerting:
        await alerting.post([PostableAlert(labels=LABELS, annotations={"summary": "disk full"})])
        yield alerting


@pytest.fixture
async def client(engine: Alerting, tmp_path: Path) -> AsyncIterator[Client]:
    async with serving(engine, CONFIG, tmp_path / "state") as served:
        yield served


def link(action: links.LinkName, fp: str = FP, at: float | None = None) -> str:
    """The path of the link a notification would carry now (or made at ``at``)."""
    signer = links.links_for(EXTERNAL)
    assert signer is not None, "the served API provides the links"
    url = signer.url(fp, action, time.time() if at is None else at)
    assert url.startswith(EXTERNAL + "/api/v1/actions/")
    return url.removeprefix(EXTERNAL)


async def timeline(engine: Alerting, fp: str = FP) -> list[tuple[str, str | None, str | None]]:
    events = await engine.timeline(fingerprint=fp, limit=100)
    return [(e["kind"], e["actor"], e["interface"]) for e in events]


def assert_secured(response: Any) -> None:
    headers = response.headers
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    policy = headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"):
        assert directive in policy


async def test_get_shows_what_the_link_does_and_changes_nothing(
    client: Client, engine: Alerting
) -> None:
    for _ in range(3):  # a mail scanner fetching the link, then the engineer
        response = await client.get(link("ack"), headers=BROWSER)
        assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert_secured(response)
    assert "Acknowledge this alert?" in page and "DiskFull" in page and "disk full" in page
    assert "<code>target</code></td><td>db1" in page and FP in page
    assert "State: firing since" in page
    assert '<form method="post">' in page and 'name="actor"' in page
    assert "This link works until" in page
    # the page's one style sheet is what the policy allows, and nothing else runs
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style is not None and "<script" not in page
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in response.headers["Content-Security-Policy"]
    alert = engine.alert(FP)
    assert alert is not None and alert.acked_by is None
    assert await timeline(engine) == [("fired", None, None)]
    head = await client.head(link("resolve"))
    assert head.status == 200
    shown = await (await client.get(link("snooze"), headers=JSON)).json()
    assert shown["action"] == "snooze" and shown["alert"]["fingerprint"] == FP
    assert shown["alert"]["acknowledged"] is None and shown["expiresAt"].endswith("Z")
    snooze_page = await (await client.get(link("snooze"))).text()
    assert "Snooze this alert for 1h?" in snooze_page


async def test_post_acknowledges_with_the_link_interface(client: Client, engine: Alerting) -> None:
    response = await client.post(
        link("ack"), data={"actor": "alice", "comment": "on it"}, headers=BROWSER
    )
    assert response.status == 200, await response.text()
    assert_secured(response)
    page = await response.text()
    assert "<h1>Acknowledged</h1>" in page and "acknowledged by alice" in page
    alert = engine.alert(FP)
    assert alert is not None and alert.acked_by == "alice" and alert.ack_until is None
    assert await timeline(engine) == [("fired", None, None), ("acknowledged", "alice", "link")]
    events = await engine.timeline(fingerprint=FP, limit=10)
    assert events[-1]["detail"] == {"comment": "on it"}
    # without a name: the actor is "link"; JSON in, JSON out
    again = await client.post(link("ack"), json={})
    assert again.status == 200 and again.content_type == "application/json"
    shown = await again.json()
    assert shown["acknowledged"]["by"] == "link" and shown["fingerprint"] == FP
    empty = await client.post(link("ack"), headers=JSON)
    assert empty.status == 200


async def test_snooze_acknowledges_for_the_duration_in_the_link(
    client: Client, engine: Alerting
) -> None:
    before = time.time()
    response = await client.post(link("snooze"), data={"actor": "bob"})
    assert response.status == 200
    assert "<h1>Snoozed</h1>" in await response.text()
    alert = engine.alert(FP)
    assert alert is not None and alert.acked_by == "bob" and alert.ack_until is not None
    assert before + 3600 <= alert.ack_until <= time.time() + 3600
    assert (await timeline(engine))[-1] == ("snoozed", "bob", "link")


async def test_a_resolved_alert_is_a_conflict(client: Client, engine: Alerting) -> None:
    response = await client.post(link("resolve"), data={"actor": "carol"}, headers=BROWSER)
    assert response.status == 200 and "<h1>Resolved</h1>" in await response.text()
    assert (await timeline(engine))[-1] == ("resolved", "carol", "link")
    page = await client.get(link("ack"), headers=BROWSER)
    assert page.status == 409 and page.content_type == "text/html"
    assert "already resolved" in await page.text()
    assert_secured(page)
    for path in (link("ack"), link("resolve")):
        refused = await client.post(path, json={"actor": "dave"})
        assert refused.status == 409 and refused.content_type == CONTENT_TYPE
        assert_secured(refused)
        problem = await refused.json()
        assert problem["status"] == 409 and "resolved" in problem["detail"]
    assert (await timeline(engine))[-1] == ("resolved", "carol", "link")


async def test_an_expired_or_forged_link_is_forbidden(client: Client, engine: Alerting) -> None:
    expired = link("ack", at=time.time() - 86400 - 1)
    page = await client.get(expired, headers=BROWSER)
    assert page.status == 403 and page.content_type == "text/html"
    assert "expired" in await page.text()
    assert_secured(page)
    refused = await client.post(expired, json={"actor": "eve"})
    assert refused.status == 403 and refused.content_type == CONTENT_TYPE
    assert "expired" in (await refused.json())["detail"]
    # a link to resolve turned into a link to another alert: the signature does not match
    encoded, signature = link("resolve").rsplit("/", 1)[1].split(".")
    other = link("resolve", fp="0000000000000001").rsplit("/", 1)[1].split(".")[0]
    forged = await client.post(f"/api/v1/actions/{other}.{signature}", json={})
    assert forged.status == 403 and "signature" in (await forged.json())["detail"]
    damaged = await client.post("/api/v1/actions/not-a-token", headers=JSON)
    assert damaged.status == 400 and damaged.content_type == CONTENT_TYPE
    alert = engine.alert(FP)
    assert alert is not None and alert.acked_by is None and not alert.resolved(time.time())
    assert await timeline(engine) == [("fired", None, None)]
    assert encoded  # the genuine token had a payload


async def test_an_alert_pudimd_does_not_hold_is_not_found(client: Client) -> None:
    for method in ("GET", "POST"):
        response = await client.request(method, link("ack", fp="00000000000000ff"), headers=JSON)
        assert response.status == 404 and response.content_type == CONTENT_TYPE
    page = await client.get(link("ack", fp="00000000000000ff"), headers=BROWSER)
    assert page.status == 404 and "no longer holds" in await page.text()


async def test_bad_input_is_refused(client: Client, engine: Alerting) -> None:
    unknown = await client.post(link("ack"), json={"actor": "a", "until": "tomorrow"})
    assert unknown.status == 400
    assert (await unknown.json())["errors"] == [{"field": "until", "message": "unknown field"}]
    long_name = await client.post(link("ack"), data={"actor": "x" * 101})
    assert long_name.status == 400 and "at most 100" in await long_name.text()
    not_a_string = await client.post(link("ack"), json={"actor": 3})
    assert not_a_string.status == 400
    text = await client.post(link("ack"), data=b"hello", headers={"Content-Type": "text/plain"})
    assert text.status == 400
    assert await timeline(engine) == [("fired", None, None)]


async def test_labels_and_names_are_escaped(
    migrated_db: Path, tmp_path: Path, engine: Alerting
) -> None:
    labels = {"alertname": "Evil<script>alert(1)</script>", "target": '"><img src=x>'}
    await engine.post(
        [PostableAlert(labels=labels, annotations={"summary": "<b>bold</b> & 'quoted'"})]
    )
    fp = fingerprint(labels)
    async with serving(engine, CONFIG, tmp_path / "state") as client:
        page = await (await client.get(link("ack", fp=fp), headers=BROWSER)).text()
        assert "<script>" not in page and "<img" not in page and "<b>bold" not in page
        assert "Evil&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "&quot;&gt;&lt;img src=x&gt;" in page
        assert "&lt;b&gt;bold&lt;/b&gt; &amp; &#x27;quoted&#x27;" in page
        done = await client.post(link("ack", fp=fp), data={"actor": "<i>mallory</i>"})
        result = await done.text()
        assert "<i>" not in result and "&lt;i&gt;mallory&lt;/i&gt;" in result
        alert = engine.alert(fp)
        assert alert is not None and alert.acked_by == "<i>mallory</i>"  # stored as given


async def test_the_key_is_made_once_and_kept_in_the_state_directory(
    engine: Alerting, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with serving(engine, CONFIG, state) as client:
        path = link("ack")  # the first link made creates the key
        key = (state / links.KEY_FILE).read_text()
        assert stat.S_IMODE((state / links.KEY_FILE).stat().st_mode) == 0o600
    assert links.links_for(EXTERNAL) is None  # cleaned up: no daemon, no links
    async with serving(engine, CONFIG, state) as client:  # a restart
        response = await client.get(path, headers=JSON)
        assert response.status == 200, await response.text()
        assert (state / links.KEY_FILE).read_text() == key
    configured = CONFIG.model_copy(
        update={"action_links": ActionLinksConfig.model_validate({"secret": "z" * 32})}
    )
    other_state = tmp_path / "other"
    async with serving(engine, configured, other_state) as client:
        refused = await client.get(path, headers=JSON)  # another key: the old link is void
        assert refused.status == 403
        assert (await client.get(link("ack"), headers=JSON)).status == 200
        assert not other_state.exists()  # a configured secret needs no key file


async def test_links_turned_off(engine: Alerting, tmp_path: Path) -> None:
    off = CONFIG.model_copy(
        update={"action_links": ActionLinksConfig.model_validate({"enabled": False})}
    )
    async with serving(engine, CONFIG, tmp_path / "state") as client:
        path = link("ack")
    async with serving(engine, off, tmp_path / "state") as client:
        assert links.links_for(EXTERNAL) is None
        response = await client.post(path, headers=JSON)
        assert response.status == 404 and "turned off" in (await response.json())["detail"]
        alert = engine.alert(FP)
        assert alert is not None and alert.acked_by is None


# -- end to end: Slack buttons ---------------------------------------------------------------

SLACK_MODEL = build_alerting_model({"slack": SlackNotifier})


async def next_message(fake: Fake, count: int, within: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(within):
        while len(fake.accepted) < count:
            await anyio.sleep(0.02)
    assert not [hit.errors for hit in fake.hits if hit.errors]
    message: dict[str, Any] = fake.accepted[count - 1]
    return message


async def test_slack_buttons_act_and_each_change_is_a_follow_up(
    migrated_db: Path, tmp_path: Path
) -> None:
    async with slack_fake() as fake:
        config = SLACK_MODEL.model_validate(
            {
                "external_url": EXTERNAL,
                "route": {
                    "receiver": "chat",
                    "group_by": ["alertname"],
                    "group_wait": "0s",
                    "group_interval": "50ms",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {
                        "name": "chat",
                        "slack_configs": [
                            {"api_url": fake.url + "/services/T/B/X", "send_resolved": True}
                        ],
                    }
                ],
            }
        )
        async with (
            running_engine(
                migrated_db, tmp_path, config, notifier_types={"slack": SlackNotifier}
            ) as engine,
            serving(engine, config, tmp_path / "state") as client,
        ):
            await engine.post([PostableAlert(labels=LABELS, annotations={"summary": "full"})])
            first = (await next_message(fake, 1))["attachments"][0]
            assert first["title"] == "[FIRING:1] DiskFull" and first["color"] == "danger"
            buttons = {b["text"]: b["url"] for b in first["actions"]}
            assert list(buttons) == ["Acknowledge", "Snooze 1h", "Resolve"]
            ack = buttons["Acknowledge"].removeprefix(EXTERNAL)
            assert (await client.post(ack, data={"actor": "alice"})).status == 200

            follow_up = (await next_message(fake, 2, within=2.0))["attachments"][0]
            assert follow_up["title"] == "[ACK] [FIRING:1] DiskFull"
            assert follow_up["color"] == "warning"
            assert follow_up["text"].startswith("*Acknowledged*")
            assert [b["text"] for b in follow_up["actions"]] == ["Resolve"]
            resolve = follow_up["actions"][0]["url"].removeprefix(EXTERNAL)
            assert (await client.post(resolve, data={"actor": "alice"})).status == 200

            resolved = (await next_message(fake, 3, within=2.0))["attachments"][0]
            assert resolved["title"] == "[RESOLVED] DiskFull" and "actions" not in resolved
            assert await timeline(engine) == [
                ("fired", None, None),
                ("acknowledged", "alice", "link"),
                ("resolved", "alice", "link"),
            ]


async def test_a_key_that_cannot_be_made_is_a_503_and_no_links(
    engine: Alerting, tmp_path: Path
) -> None:
    blocker = tmp_path / "state-file"
    blocker.write_text("a file where the state directory should be")
    async with serving(engine, CONFIG, blocker) as client:
        assert links.links_for(EXTERNAL) is None  # logged; notifications go out without
        token = links.ActionLinks(b"k" * 32, EXTERNAL).token(FP, "ack", time.time())
        response = await client.get(f"/api/v1/actions/{token}", headers=JSON)
        assert response.status == 503 and "action link key" in (await response.json())["detail"]
