"""The role table, scopes, token buckets and the ``auth`` config section's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pudimd.auth import policy
from pudimd.auth.config import AuthConfig
from pudimd.auth.passwords import hash_password
from pudimd.auth.ratelimit import Buckets, retry_after
from pudimd.auth.tokens import Role

HASH = hash_password("pw")


@pytest.mark.parametrize(
    ("role", "method", "path", "allowed"),
    [
        ("viewer", "GET", "/api/v1/alerts/abc", True),
        ("viewer", "HEAD", "/api/v1/targets", True),
        ("viewer", "POST", "/api/v1/alerts/abc/ack", False),
        ("operator", "POST", "/api/v1/alerts/abc/ack", True),
        ("operator", "POST", "/api/v1/silences", True),
        ("operator", "DELETE", "/api/v1/silences/x", True),
        ("operator", "PUT", "/api/v1/targets/web", True),
        ("operator", "POST", "/api/v1/notify/test", True),
        ("operator", "POST", "/api/v1/config/rollback/1", False),
        ("operator", "PUT", "/api/v1/receivers/x", False),
        ("operator", "POST", "/api/v1/routes", False),
        ("operator", "POST", "/api/v1/rules", False),
        ("admin", "POST", "/api/v1/config/rollback/1", True),
        ("viewer", "GET", "/api/v1/config/versions", True),
        ("operator", "GET", "/api/v1/export", False),
        ("admin", "GET", "/api/v1/export", True),
        ("operator", "GET", "/api/v1/tokens", False),
        ("operator", "GET", "/api/v1/backups", False),
        ("operator", "GET", "/api/v1/audit", False),
        ("admin", "DELETE", "/api/v1/tokens/3", True),
        ("viewer", "POST", "/api/v1/validate", False),
        ("operator", "POST", "/api/v1/validate", True),
        ("viewer", "GET", "/api/v1/something-new", True),
        ("operator", "POST", "/api/v1/something-new", False),
        ("admin", "POST", "/api/v1/something-new", True),
        ("viewer", "POST", "/api/v1/logout", True),
    ],
)
def test_roles(role: Role, method: str, path: str, allowed: bool) -> None:
    assert policy.allowed(role, (), method, path) is allowed


def test_scopes() -> None:
    scopes = ("alerts", "config:read")
    assert policy.allowed("admin", scopes, "POST", "/api/v1/alerts/x/ack")
    assert policy.allowed("admin", scopes, "GET", "/api/v1/config/versions")
    assert not policy.allowed("admin", scopes, "POST", "/api/v1/config/rollback/1")
    assert not policy.allowed("admin", scopes, "GET", "/api/v1/targets")
    assert policy.allowed("admin", scopes, "GET", "/api/v1/whoami"), "always allowed"
    assert not policy.allowed("viewer", scopes, "POST", "/api/v1/alerts/x/ack"), "role first"


def test_exempt_paths() -> None:
    for path in (
        "/api/v1/openapi.json",
        "/api/v1/docs",
        "/api/v1/docs/index.html",
        "/api/v1/login",
        "/api/v1/actions/abc.def",
        "/api/v1/alertmanager/webhook",
    ):
        assert policy.is_exempt(path), path
    for path in ("/api/v1/loginx", "/api/v1/actions", "/api/v1/docsx", "/api/v1/alerts"):
        assert not policy.is_exempt(path), path


def test_every_planned_prefix_has_a_rule() -> None:
    planned = "targets validate export import config receivers routes rules silences alerts "
    planned += "results history status events templates backups tokens audit oncall reports notify"
    for segment in planned.split():
        assert policy.rule_for(f"/api/v1/{segment}/x") is not policy.DEFAULT, segment


def test_token_bucket() -> None:
    buckets = Buckets(rate=2.0, burst=3)
    assert [buckets.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", now=0.0) == pytest.approx(0.5)
    assert buckets.take("other", now=0.0) == 0.0, "one bucket per key"
    assert buckets.peek("k", now=0.5) == 0.0
    assert buckets.take("k", now=0.5) == 0.0
    assert buckets.take("k", now=0.5) > 0
    assert retry_after(0.01) == "1" and retry_after(2.2) == "3"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"allow": ["10.0.0.0/33"]}, "is not an address or network"),
        (
            {"users": [{"name": "a", "role": "admin", "password_hash": "hunter2"}]},
            "expected an encoded argon2 hash",
        ),
        ({"users": [{"name": "a", "role": "root", "password_hash": HASH}]}, "role"),
        (
            {"users": [{"name": "a", "role": "admin", "password_hash": HASH}] * 2},
            "'a' is listed twice",
        ),
        ({"cors": {"origins": ["*"]}}, "no wildcard"),
        ({"metrics": {"basic_auth_users": {"prom": "plain"}}}, "user 'prom'"),
        ({"rate_limit": {"per_token": {"rate": 0, "burst": 1}}}, "greater than 0"),
        ({"session_ttl": "soon"}, "invalid duration"),
        ({"enabeld": False}, "Extra inputs"),
    ],
)
def test_config_errors_are_clear(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AuthConfig.model_validate(section)
    assert message in str(caught.value)


def test_totp_secret_file_must_be_base32(tmp_path: Path) -> None:
    path = tmp_path / "totp"
    path.write_text("not base32 !!\n")
    user = {"name": "a", "role": "admin", "password_hash": HASH, "totp_secret_file": str(path)}
    with pytest.raises(ValidationError, match="base32"):
        AuthConfig.model_validate({"users": [user]})
    path.write_text("JBSWY3DPEHPK3PXP\n")
    loaded = AuthConfig.model_validate({"users": [user]})
    secret = loaded.users[0].totp_secret_file
    assert secret is not None and secret.get_secret_value() == "JBSWY3DPEHPK3PXP"
