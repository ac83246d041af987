"""Authentication and authorization of the HTTP API against the daemon running in this
process (echo probes, SQLite in a temporary directory), over real HTTP."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pyotp
import pytest

from pudimd.api.problems import CONTENT_TYPE
from pudimd.auth.audit import list_audit
from pudimd.auth.passwords import hash_password
from pudimd.auth.tokens import create_token, find_token
from pudimd.daemon import Daemon
from pudimd.plugins import PluginHost
from pudimd.sdnotify import Notifier
from tests.auth_helpers import auth_headers, token_for
from tests.testplugins import EchoPlugin

pytestmark = pytest.mark.anyio

TARGETS = "targets:\n  - {name: web, probe: echo, target: a.example, interval: 1h}\n"
PASSWORD_HASH = hash_password("s3cret-pass")


class Running:
    def __init__(self, daemon: Daemon, http: aiohttp.ClientSession) -> None:
        self.daemon = daemon
        self.http = http
        self.url = f"http://127.0.0.1:{daemon.port}"

    @property
    def engine(self) -> Any:
        assert self.daemon.store is not None
        return self.daemon.store.engine

    async def call(
        self,
        method: str,
        path: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> tuple[Any, aiohttp.ClientResponse]:
        async with self.http.request(
            method, self.url + path, headers=headers or {}, json=json
        ) as resp:
            text = await resp.text()
            assert resp.status == status, f"{method} {path}: {resp.status} {text}"
            body: Any = text
            if resp.content_type in ("application/json", CONTENT_TYPE) and text:
                body = await resp.json(content_type=None)
            return body, resp


@asynccontextmanager
async def running(tmp_path: Path, migrated: Path, extra: str = "") -> AsyncIterator[Running]:
    config = tmp_path / "pudimd.yaml"
    config.write_text(TARGETS + extra)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    shutil.copyfile(migrated, state / "pudimd.db")
    host = PluginHost()
    host.register(EchoPlugin(), "echo")
    daemon = Daemon(config, listen="127.0.0.1:0", state_dir=state, host=host, notifier=Notifier(""))
    jar = aiohttp.CookieJar(unsafe=True)
    async with anyio.create_task_group() as tg, aiohttp.ClientSession(cookie_jar=jar) as http:
        tg.start_soon(daemon.run)
        with anyio.fail_after(10):
            while not daemon.ready:
                await anyio.sleep(0.02)
        try:
            yield Running(daemon, http)
        finally:
            daemon.stop()


@pytest.fixture
async def served(tmp_path: Path, migrated: Path) -> AsyncIterator[Running]:
    async with running(tmp_path, migrated) as run:
        yield run


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- tokens, roles, scopes -------------------------------------------------------------


async def test_no_or_bad_credentials_are_401_problems_that_say_nothing(served: Running) -> None:
    for headers in (
        {},
        bearer("pudimd_not-a-real-token"),
        bearer("nonsense"),
        {"Authorization": "Basic YTpi"},
    ):
        for path in ("/api/v1/config/versions", "/api/v1/no/such/path"):
            body, resp = await served.call("GET", path, 401, headers=headers)
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert resp.content_type == CONTENT_TYPE
            assert body["status"] == 401 and body["detail"] == "missing or invalid credentials"
    await served.call(
        "GET", "/api/v1/config/versions", 200, headers=await auth_headers(served.daemon)
    )


async def test_revoked_and_expired_tokens_are_refused(served: Running) -> None:
    admin = await auth_headers(served.daemon)
    expired, _ = await create_token(served.engine, "old", "admin", expires_at=time.time() - 1)
    await served.call("GET", "/api/v1/whoami", 401, headers=bearer(expired))
    created, _ = await served.call(
        "POST", "/api/v1/tokens", 201, headers=admin, json={"name": "bot", "role": "viewer"}
    )
    secret = created["token"]
    assert secret.startswith("pudimd_") and created["role"] == "viewer"
    who, _ = await served.call("GET", "/api/v1/whoami", 200, headers=bearer(secret))
    assert who == {"name": "token:bot", "kind": "token", "role": "viewer", "scopes": []}
    await served.call("DELETE", f"/api/v1/tokens/{created['id']}", 204, headers=admin)
    await served.call("GET", "/api/v1/whoami", 401, headers=bearer(secret))
    await served.call("DELETE", f"/api/v1/tokens/{created['id']}", 404, headers=admin)
    listed, _ = await served.call("GET", "/api/v1/tokens", 200, headers=admin)
    assert "bot" not in [t["name"] for t in listed["tokens"]]
    assert all("token" not in t and "token_hash" not in t for t in listed["tokens"])
    everything, _ = await served.call("GET", "/api/v1/tokens?revoked=true", 200, headers=admin)
    assert "bot" in [t["name"] for t in everything["tokens"]]


async def test_roles(served: Running) -> None:
    viewer = bearer(await token_for(served.engine, "viewer", "v"))
    operator = bearer(await token_for(served.engine, "operator", "o"))
    admin = bearer(await token_for(served.engine, "admin", "a"))
    await served.call("GET", "/api/v1/config/versions", 200, headers=viewer)
    await served.call("GET", "/api/v1/oncall", 200, headers=viewer)
    body, _ = await served.call("POST", "/api/v1/config/rollback/1", 403, headers=viewer, json={})
    assert body["detail"] == "token:v may not do this"
    await served.call("POST", "/api/v1/config/rollback/1", 403, headers=operator, json={})
    await served.call("POST", "/api/v1/alerts/0000/ack", 403, headers=viewer, json={})
    # the operator gets past auth: the alert is unknown
    await served.call("POST", "/api/v1/alerts/0000/ack", 404, headers=operator, json={})
    await served.call("GET", "/api/v1/tokens", 403, headers=operator)
    await served.call("GET", "/api/v1/audit", 403, headers=operator)
    await served.call("GET", "/api/v1/tokens", 200, headers=admin)
    # an admin's rollback records the caller as the author when the body names none
    served.daemon.config_path.write_text(TARGETS + "# changed\n")
    assert await served.daemon.reload() is None
    answer, _ = await served.call("POST", "/api/v1/config/rollback/1", 200, headers=admin, json={})
    assert answer["changed"] is True and answer["version"]["author"] == "token:a"


async def test_scopes_limit_a_token_to_resources(served: Running) -> None:
    admin = await auth_headers(served.daemon)
    created, _ = await served.call(
        "POST",
        "/api/v1/tokens",
        201,
        headers=admin,
        json={"name": "alerts-bot", "role": "operator", "scopes": ["alerts", "config:read"]},
    )
    scoped = bearer(created["token"])
    await served.call("GET", "/api/v1/config/versions", 200, headers=scoped)
    await served.call("POST", "/api/v1/alerts/0000/ack", 404, headers=scoped, json={})
    await served.call("GET", "/api/v1/oncall", 403, headers=scoped)
    await served.call("POST", "/api/v1/notify/test", 403, headers=scoped)
    await served.call("GET", "/api/v1/whoami", 200, headers=scoped)
    body, _ = await served.call(
        "POST",
        "/api/v1/tokens",
        400,
        headers=admin,
        json={"name": "x", "role": "viewer", "scopes": ["nope"]},
    )
    assert "unknown scope 'nope'" in body["detail"]
    await served.call(
        "POST", "/api/v1/tokens", 400, headers=admin, json={"name": "x", "role": "root"}
    )


async def test_last_use_is_recorded_in_the_background(served: Running) -> None:
    secret = await token_for(served.engine, "viewer", "used")
    await served.call("GET", "/api/v1/whoami", 200, headers=bearer(secret))
    with anyio.fail_after(5):
        while True:
            info = await find_token(served.engine, secret)
            assert info is not None
            if info.last_used_at is not None:
                break
            await anyio.sleep(0.02)


async def test_exempt_paths_and_health(served: Running) -> None:
    await served.call("GET", "/-/healthy", 200)
    await served.call("GET", "/-/ready", 200)
    await served.call("GET", "/metrics", 200)
    await served.call("GET", "/api/v2/status", 200)
    # a damaged action link: refused by its own signature check, not by auth
    _, resp = await served.call("GET", "/api/v1/actions/garbage", 400)
    assert "WWW-Authenticate" not in resp.headers
    await served.call("POST", "/api/v1/actions/garbage", 400)
    rows = await list_audit(served.engine)
    assert [(r.actor, r.path, r.status) for r in rows] == [("link", "/api/v1/actions/garbage", 400)]


# -- audit -----------------------------------------------------------------------------


async def test_writes_are_audited_with_pages(served: Running) -> None:
    admin = await auth_headers(served.daemon)
    operator = bearer(await token_for(served.engine, "operator", "ops"))
    await served.call("POST", "/api/v1/alerts/0000/ack", 404, headers=operator, json={})
    await served.call("POST", "/api/v1/alerts/0000/ack", 401, json={})  # no row: no caller
    created, _ = await served.call(
        "POST", "/api/v1/tokens", 201, headers=admin, json={"name": "n", "role": "viewer"}
    )
    await served.call("GET", "/api/v1/config/versions", 200, headers=operator)  # reads: no row
    rows = await list_audit(served.engine)
    assert [(r.actor, r.method, r.path, r.action, r.status) for r in rows] == [
        ("token:test", "POST", "/api/v1/tokens", "tokens.create", 201),
        ("token:ops", "POST", "/api/v1/alerts/0000/ack", "alerts.post", 404),
    ]
    assert rows[0].after["name"] == "n" and "token" not in rows[0].after
    assert rows[0].address == "127.0.0.1"
    page, _ = await served.call("GET", "/api/v1/audit?limit=1", 200, headers=admin)
    assert [e["action"] for e in page["entries"]] == ["tokens.create"]
    assert page["next_cursor"] is not None
    more, _ = await served.call(
        "GET", f"/api/v1/audit?limit=1&cursor={page['next_cursor']}", 200, headers=admin
    )
    assert [e["action"] for e in more["entries"]] == ["alerts.post"]
    last, _ = await served.call(
        "GET", f"/api/v1/audit?limit=1&cursor={more['next_cursor']}", 200, headers=admin
    )
    assert last == {"entries": [], "next_cursor": None}
    await served.call("GET", "/api/v1/audit?cursor=x", 400, headers=admin)
    assert created["id"] > 0


# -- headers, CORS, disabled auth, allowlist ---------------------------------------------


async def test_security_headers_everywhere(served: Running) -> None:
    for path, status in (("/api/v1/whoami", 401), ("/-/healthy", 200), ("/", 200)):
        _, resp = await served.call("GET", path, status)
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    _, resp = await served.call("GET", "/api/v1/whoami", 401)
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_cors_only_for_listed_origins(tmp_path: Path, migrated: Path) -> None:
    extra = "auth:\n  cors:\n    origins: [https://ops.example.com]\n"
    async with running(tmp_path, migrated, extra) as served:
        preflight = {
            "Origin": "https://ops.example.com",
            "Access-Control-Request-Method": "POST",
        }
        _, resp = await served.call("OPTIONS", "/api/v1/alerts/x/ack", 204, headers=preflight)
        assert resp.headers["Access-Control-Allow-Origin"] == "https://ops.example.com"
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        headers = {**await auth_headers(served.daemon), "Origin": "https://ops.example.com"}
        _, resp = await served.call("GET", "/api/v1/whoami", 200, headers=headers)
        assert resp.headers["Access-Control-Allow-Origin"] == "https://ops.example.com"
        headers["Origin"] = "https://evil.example.com"
        _, resp = await served.call("GET", "/api/v1/whoami", 200, headers=headers)
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_disabled_auth_lets_everyone_in(tmp_path: Path, migrated: Path) -> None:
    async with running(tmp_path, migrated, "auth:\n  enabled: false\n") as served:
        who, _ = await served.call("GET", "/api/v1/whoami", 200)
        assert who["name"] == "anonymous" and who["role"] == "admin"
        await served.call("POST", "/api/v1/alerts/0000/ack", 404, json={})
        rows = await list_audit(served.engine)
        assert [(r.actor, r.status) for r in rows] == [("anonymous", 404)]


async def test_allowlist_refuses_other_addresses(tmp_path: Path, migrated: Path) -> None:
    async with running(tmp_path, migrated, "auth:\n  allow: [10.0.0.0/8]\n") as served:
        headers = await auth_headers(served.daemon)
        body, _ = await served.call("GET", "/api/v1/whoami", 403, headers=headers)
        assert body["status"] == 403
        for path in ("/api/v2/status", "/metrics"):
            assert (await served.call("GET", path, 403, headers=headers))[0] == "Forbidden\n"
        await served.call("GET", "/-/healthy", 200)
        served.daemon.config_path.write_text(TARGETS + "auth:\n  allow: [127.0.0.0/8, ::1]\n")
        assert await served.daemon.reload() is None
        await served.call("GET", "/api/v1/whoami", 200, headers=headers)


# -- rate limits -------------------------------------------------------------------------


async def test_rate_limits_answer_429_with_retry_after(tmp_path: Path, migrated: Path) -> None:
    extra = (
        "auth:\n  rate_limit:\n"
        "    per_token: {rate: 0.01, burst: 3}\n"
        "    per_address: {rate: 0.01, burst: 2}\n"
    )
    async with running(tmp_path, migrated, extra) as served:
        headers = await auth_headers(served.daemon)
        for _ in range(3):
            await served.call("GET", "/api/v1/whoami", 200, headers=headers)
        body, resp = await served.call("GET", "/api/v1/whoami", 429, headers=headers)
        assert body["status"] == 429 and int(resp.headers["Retry-After"]) >= 1
        other = bearer(await token_for(served.engine, "viewer", "other"))
        await served.call("GET", "/api/v1/whoami", 200, headers=other)
        for _ in range(2):
            await served.call("GET", "/api/v1/whoami", 401)
        _, resp = await served.call("GET", "/api/v1/whoami", 429)
        assert int(resp.headers["Retry-After"]) >= 1


# -- web users --------------------------------------------------------------------------


def _users(tmp_path: Path, totp: str | None = None) -> str:
    text = (
        "auth:\n  cookie_secure: false\n  session_ttl: 1h\n  users:\n"
        f"    - {{name: alice, role: operator, password_hash: '{PASSWORD_HASH}'}}\n"
    )
    if totp is not None:
        (tmp_path / "bob.totp").write_text(totp + "\n")
        text += (
            f"    - {{name: bob, role: admin, password_hash: '{PASSWORD_HASH}', "
            f"totp_secret_file: {tmp_path / 'bob.totp'}}}\n"
        )
    return text


async def test_login_session_csrf_logout(tmp_path: Path, migrated: Path) -> None:
    async with running(tmp_path, migrated, _users(tmp_path)) as served:
        await served.call(
            "POST", "/api/v1/login", 401, json={"username": "alice", "password": "wrong"}
        )
        await served.call(
            "POST", "/api/v1/login", 401, json={"username": "nobody", "password": "x"}
        )
        body, resp = await served.call(
            "POST", "/api/v1/login", 200, json={"username": "alice", "password": "s3cret-pass"}
        )
        cookie = resp.headers["Set-Cookie"]
        assert "pudimd_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie and "Secure" not in cookie
        csrf = body["csrf_token"]
        assert body["user"] == "alice" and body["role"] == "operator"
        who, _ = await served.call("GET", "/api/v1/whoami", 200)
        assert who["name"] == "user:alice" and who["kind"] == "user"
        body, _ = await served.call("POST", "/api/v1/alerts/0000/ack", 403, json={})
        assert "X-CSRF-Token" in body["detail"]
        await served.call(
            "POST", "/api/v1/alerts/0000/ack", 403, json={}, headers={"X-CSRF-Token": "nope"}
        )
        await served.call(
            "POST", "/api/v1/alerts/0000/ack", 404, json={}, headers={"X-CSRF-Token": csrf}
        )
        await served.call("GET", "/api/v1/tokens", 403)  # an operator
        await served.call("POST", "/api/v1/logout", 204, headers={"X-CSRF-Token": csrf})
        await served.call("GET", "/api/v1/whoami", 401)
        rows = await list_audit(served.engine)
        actions = [(r.actor, r.action) for r in reversed(rows)]
        assert actions[:3] == [
            ("anonymous", "login.failed"),
            ("anonymous", "login.failed"),
            ("user:alice", "login"),
        ]


async def test_login_with_totp(tmp_path: Path, migrated: Path) -> None:
    secret = pyotp.random_base32()
    async with running(tmp_path, migrated, _users(tmp_path, secret)) as served:
        creds = {"username": "bob", "password": "s3cret-pass"}
        await served.call("POST", "/api/v1/login", 401, json=creds)
        wrong = f"{(int(pyotp.TOTP(secret).now()) + 500_000) % 1_000_000:06d}"
        await served.call("POST", "/api/v1/login", 401, json={**creds, "totp": wrong})
        body, _ = await served.call(
            "POST", "/api/v1/login", 200, json={**creds, "totp": pyotp.TOTP(secret).now()}
        )
        assert body["role"] == "admin"


async def test_failed_logins_are_rate_limited(tmp_path: Path, migrated: Path) -> None:
    extra = _users(tmp_path) + "  rate_limit:\n    login: {rate: 0.01, burst: 2}\n"
    async with running(tmp_path, migrated, extra) as served:
        wrong = {"username": "alice", "password": "wrong"}
        for _ in range(2):
            await served.call("POST", "/api/v1/login", 401, json=wrong)
        _, resp = await served.call("POST", "/api/v1/login", 429, json=wrong)
        assert int(resp.headers["Retry-After"]) >= 1
        right = {"username": "alice", "password": "s3cret-pass"}
        await served.call("POST", "/api/v1/login", 429, json=right)


# -- the Alertmanager API and /metrics ---------------------------------------------------


async def test_alertmanager_api_and_metrics_credentials(tmp_path: Path, migrated: Path) -> None:
    (tmp_path / "scrape.token").write_text("scrape-secret\n")
    extra = (
        "auth:\n"
        f"  alertmanager_api:\n    basic_auth_users: {{amtool: '{PASSWORD_HASH}'}}\n"
        f"  metrics:\n    bearer_token_file: {tmp_path / 'scrape.token'}\n"
        "    api_tokens: false\n"
    )
    async with running(tmp_path, migrated, extra) as served:
        _, resp = await served.call("GET", "/api/v2/status", 401)
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="pudimd"'
        good = base64.b64encode(b"amtool:s3cret-pass").decode()
        bad = base64.b64encode(b"amtool:nope").decode()
        await served.call("GET", "/api/v2/status", 200, headers={"Authorization": f"Basic {good}"})
        await served.call("GET", "/api/v2/status", 401, headers={"Authorization": f"Basic {bad}"})
        token = await token_for(served.engine, "viewer", "prom")
        await served.call("GET", "/api/v2/status", 200, headers=bearer(token))
        await served.call("POST", "/api/v1/alertmanager/webhook", 401, json={})
        await served.call("GET", "/metrics", 401)
        await served.call("GET", "/metrics", 401, headers=bearer(token))
        await served.call("GET", "/metrics", 200, headers=bearer("scrape-secret"))
