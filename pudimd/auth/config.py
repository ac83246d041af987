"""The ``auth`` section of the config file."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pudimd.durations import PositiveDuration
from pudimd.settings import SecretFile, StrictModel

__all__ = [
    "AuthConfig",
    "CorsConfig",
    "EndpointAuth",
    "RateLimit",
    "RateLimits",
    "WebUser",
]

_NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"


def _password_hash(value: str) -> str:
    """An encoded argon2 (``$argon2id$...``) or bcrypt (``$2b$...``) hash."""
    if not value.startswith(("$argon2id$", "$argon2i$", "$argon2d$", "$2a$", "$2b$", "$2y$")):
        raise ValueError(
            "expected an encoded argon2 hash ($argon2id$...), as `pudimd auth hash-password` "
            "prints; never the password itself"
        )
    if value.startswith("$2") and not _has_bcrypt():
        raise ValueError("bcrypt hashes need the bcrypt package; use an argon2 hash instead")
    return value


def _has_bcrypt() -> bool:
    try:
        import bcrypt  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


class WebUser(StrictModel):
    """Someone who signs in to the web interface (``POST /api/v1/login``)."""

    name: str = Field(description="User name", pattern=_NAME_PATTERN)
    role: Literal["viewer", "operator", "admin"] = Field(description="What the user may do")
    scopes: list[str] = Field(
        default_factory=list,
        description="Resources the user may touch (`alerts`, `silences:read`...); empty: all",
    )
    password_hash: str = Field(
        description="Encoded argon2 hash of the password (`pudimd tokens hash-password`)"
    )
    totp_secret_file: SecretFile | None = Field(
        None, description="File holding the base32 TOTP secret (RFC 6238); asks for a code"
    )

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        return _password_hash(value)

    @field_validator("totp_secret_file")
    @classmethod
    def _base32(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        import base64
        import binascii

        secret = value.get_secret_value().strip().replace(" ", "").upper()
        try:
            base64.b32decode(secret + "=" * (-len(secret) % 8))
        except (binascii.Error, ValueError):
            raise ValueError("the TOTP secret file must hold a base32 secret") from None
        return SecretStr(secret)


class RateLimit(StrictModel):
    """A token bucket: ``rate`` requests a second on average, ``burst`` at once."""

    rate: float = Field(gt=0, description="Requests a second, on average")
    burst: int = Field(ge=1, description="Requests allowed at once")


class RateLimits(StrictModel):
    """Request rate limits of the HTTP API (429 with ``Retry-After`` beyond them)."""

    per_token: RateLimit = Field(
        RateLimit(rate=1000, burst=2000),
        description="Each token or signed-in session",
    )
    per_address: RateLimit = Field(
        RateLimit(rate=100, burst=200),
        description="Each client address, for requests without valid credentials",
    )
    login: RateLimit = Field(
        RateLimit(rate=0.2, burst=10),
        description="Failed sign-ins per client address",
    )


class CorsConfig(StrictModel):
    """Cross-origin requests to /api/v1 (off unless origins are listed)."""

    origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed (`https://ops.example.com`); empty: no CORS headers",
    )
    max_age: PositiveDuration = Field(
        timedelta(minutes=10), description="How long a browser may cache a preflight answer"
    )

    @field_validator("origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or "://" not in origin or origin.rstrip("/") != origin:
                raise ValueError(
                    f"{origin!r}: expected an origin like https://ops.example.com "
                    "(no wildcard, no path, no trailing slash)"
                )
        return value


class EndpointAuth(StrictModel):
    """Credentials for ``/api/v2`` (Alertmanager API) or ``/metrics``, as Prometheus and
    amtool send them.  Nothing set: open."""

    basic_auth_users: dict[str, str] = Field(
        default_factory=dict,
        description="User name: encoded argon2 hash of the password (like Prometheus web.yml)",
    )
    bearer_token_file: SecretFile | None = Field(
        None, description="File holding a bearer token accepted here"
    )
    api_tokens: bool = Field(
        True, description="Also accept any valid API token (as a bearer token) when protected"
    )

    @field_validator("basic_auth_users")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, encoded in value.items():
            try:
                _password_hash(encoded)
            except ValueError as exc:
                raise ValueError(f"user {name!r}: {exc}") from None
        return value

    @property
    def protected(self) -> bool:
        """Whether credentials are required."""
        return bool(self.basic_auth_users) or self.bearer_token_file is not None


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address or network (CIDR)") from None
    return value


class AuthConfig(StrictModel):
    """Who may use the HTTP API, and how they prove it."""

    enabled: bool = Field(
        True,
        description="Require a token or a signed-in user on /api/v1 (401 without, 403 when "
        "the role does not allow it); false is for labs only",
    )
    users: list[WebUser] = Field(
        default_factory=list, description="Users who sign in to the web interface"
    )
    session_ttl: PositiveDuration = Field(
        timedelta(hours=12), description="How long a web sign-in lasts"
    )
    cookie_secure: bool = Field(
        True, description="Mark the session cookie Secure (sent over HTTPS only)"
    )
    rate_limit: RateLimits = Field(default_factory=RateLimits, description="Request rate limits")
    allow: list[str] = Field(
        default_factory=list,
        description="Client networks allowed at all (CIDR); empty: any. Covers /api/v1, "
        "/api/v2 and /metrics",
    )
    cors: CorsConfig = Field(default_factory=CorsConfig, description="Cross-origin requests")
    alertmanager_api: EndpointAuth = Field(
        default_factory=EndpointAuth,
        description="Credentials for /api/v2 and the Alertmanager webhook receiver",
    )
    metrics: EndpointAuth = Field(
        default_factory=EndpointAuth, description="Credentials for /metrics"
    )

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [_network(item) for item in value]

    @model_validator(mode="after")
    def _unique_users(self) -> AuthConfig:
        seen: set[str] = set()
        for user in self.users:
            if user.name in seen:
                raise ValueError(f"users: {user.name!r} is listed twice")
            seen.add(user.name)
        return self
