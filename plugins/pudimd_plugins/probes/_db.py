"""What the database and message-broker probes (``postgres``, ``mysql``, ``redis``,
``mqtt``, ``amqp``) share: their common settings (credentials, TLS, ``expect``, replication
checks), target URLs, and the frame every check runs in (timeout, phases, error texts).

Private to ``pudimd_plugins.probes``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, model_validator

from pudimd.durations import Duration, format_duration
from pudimd.results import ProbeResult
from pudimd.settings import PluginSettings, Regex, SecretFile
from pudimd_plugins.probes._net import Failure, PhaseClock, TlsClientSettings, error_text

__all__ = [
    "Endpoint",
    "Outcome",
    "ReplicationSettings",
    "ServerSettings",
    "check_expect",
    "parse_target",
    "report_role",
    "row_text",
    "run_check",
    "shorten",
]


class _Access(PluginSettings):
    """Credentials and TLS use: the first settings of every database and broker probe."""

    username: str | None = Field(
        default=None, description="User name; overrides the one in the target URL."
    )
    password: SecretStr | None = Field(
        default=None, description="Password; overrides the one in the target URL."
    )
    password_file: SecretFile | None = Field(
        default=None, description="File holding the password (instead of `password`)."
    )
    tls: bool = Field(
        default=False,
        description="Use TLS (also implied by a TLS scheme in the target URL, e.g. rediss://).",
    )


class ServerSettings(TlsClientSettings, _Access):
    """Settings every database and broker probe has (the TLS ones after the credentials)."""

    expect: Regex | None = Field(
        default=None,
        description="Regex the answer's text (the BODY value) must match (searched, not anchored).",
    )


class ReplicationSettings(ServerSettings):
    """Settings of the probes whose servers say their replication role (SQL, redis)."""

    replication: bool = Field(
        default=True,
        description="Ask the server its replication role and lag (ROLE, is_replica, "
        "replication_lag_seconds).",
    )
    role: Literal["any", "primary", "replica"] = Field(
        default="any", description="Fail unless the server has this replication role."
    )
    max_lag: Duration | None = Field(
        default=None,
        description="Report the check degraded when the replication lag is above this.",
    )

    @model_validator(mode="after")
    def _role_needs_replication(self) -> Self:
        if not self.replication and (self.role != "any" or self.max_lag is not None):
            raise ValueError("role and max_lag need replication: true")
        return self


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed target: where to connect and what the URL said."""

    scheme: str
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    path: str
    """The URL's path without its leading slash, unquoted (database, vhost, db number)."""


def parse_target(target: str, schemes: Mapping[str, tuple[int, bool]]) -> Endpoint:
    """Parse ``scheme://[user[:password]@]host[:port][/path]`` or ``host[:port]``.

    ``schemes`` maps each accepted scheme to its (default port, TLS); a target without a
    scheme takes the first one's."""
    text = target.strip()
    default = next(iter(schemes))
    if "://" not in text:
        text = f"{default}://{text}"
    accepted = ", ".join(f"{s}://" for s in schemes)
    bad = f"invalid target {target!r}: expected {accepted} URL or host:port"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise Failure(bad) from None
    scheme = parts.scheme.lower()
    if scheme not in schemes or not parts.hostname:
        raise Failure(bad)
    default_port, tls = schemes[scheme]
    return Endpoint(
        scheme=scheme,
        host=parts.hostname,
        port=port or default_port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=unquote(parts.path[1:]) if parts.path else "",
    )


class Outcome:
    """What a check found so far: phases, metrics, values, a degraded reason."""

    __slots__ = ("clock", "degraded", "metrics", "values", "waiting")

    def __init__(self, *phases: str) -> None:
        self.clock = PhaseClock(*phases)
        self.metrics: dict[str, float] = {}
        self.values: dict[str, Any] = {"CONNECTED": False}
        self.degraded = ""
        self.waiting = ""
        """What the check is waiting for, named in a timeout's message."""


def shorten(text: str, limit: int = 100) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def row_text(row: Any) -> str:
    """A row's columns as text, tab-separated (NULL for None)."""
    return "\t".join("NULL" if value is None else str(value) for value in row)


def check_expect(pattern: re.Pattern[str] | None, body: str) -> None:
    """Raise Failure unless ``pattern`` (when set) is found in ``body``."""
    if pattern is not None and not pattern.search(body):
        raise Failure(f"answer {shorten(body)!r} does not match /{pattern.pattern}/")


def report_role(
    outcome: Outcome, settings: ReplicationSettings, role: str, lag: float | None
) -> None:
    """Record ``role`` (``primary``/``replica``) and ``lag`` (seconds, if known); fail on an
    unwanted role, mark degraded on a lag above ``max_lag``."""
    outcome.values["ROLE"] = role
    outcome.metrics["is_replica"] = 1.0 if role == "replica" else 0.0
    if lag is not None:
        outcome.metrics["replication_lag_seconds"] = lag
    if settings.role != "any" and role != settings.role:
        raise Failure(f"server is a {role}, expected a {settings.role}")
    limit = settings.max_lag
    if limit is not None and lag is not None and lag > limit.total_seconds():
        outcome.degraded = f"replication lag {lag:.1f}s over {format_duration(limit)}"


def _timeout_text(timeout: float, outcome: Outcome) -> str:
    text = f"timeout after {timeout:g}s during {outcome.clock.phase}"
    return f"{text}, waiting for {outcome.waiting}" if outcome.waiting else text


async def run_check(
    timeout: float,
    outcome: Outcome,
    body: Callable[[], Awaitable[None]],
    explain: Callable[[Exception], str | None],
) -> ProbeResult:
    """Run ``body`` within ``timeout`` and make the result.

    A timeout names the phase it happened in; :class:`Failure` and OSError are reported as
    is; any other exception goes through ``explain`` (the client library's errors), and
    is raised again (a bug) when ``explain`` returns None."""
    start = time.perf_counter()
    message = ""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            await body()
    except Failure as exc:
        message = exc.message
    except TimeoutError:
        message = _timeout_text(timeout, outcome)
    except Exception as exc:
        if deadline.expired():
            message = _timeout_text(timeout, outcome)
        else:
            text = explain(exc)
            if text is None:
                if not isinstance(exc, OSError):
                    raise
                text = error_text(exc)
            message = text
    outcome.clock.enter("")
    degraded = not message and bool(outcome.degraded)
    return ProbeResult(
        success=not message,
        duration=time.perf_counter() - start,
        message=message or outcome.degraded,
        phases=outcome.clock.phases,
        metrics=outcome.metrics,
        values=outcome.values,
        degraded=degraded,
    )


class DbProbe:
    """The skeleton the database and broker probes share: the ``expect`` regex and the TLS
    context made once per instance, a connection opened and closed by every check (so
    nothing to release), and the check run by :func:`run_check` over ``PHASES``.

    A subclass sets ``type``, ``Settings`` and ``PHASES`` and writes :meth:`_run` (the
    check's body) and :meth:`_explain` (its client library's errors as messages)."""

    PHASES: ClassVar[tuple[str, ...]] = ("connect", "query")

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._expect = re.compile(settings.expect) if settings.expect else None
        self._ssl = settings.ssl_context() if settings.tls else None

    async def aclose(self) -> None:
        """Nothing to release: every check closes its own connection."""

    async def check(self, target: str, timeout: float) -> ProbeResult:
        outcome = Outcome(*self.PHASES)
        return await run_check(
            timeout, outcome, lambda: self._run(target, timeout, outcome), self._explain(outcome)
        )

    async def _run(self, target: str, timeout: float, outcome: Outcome) -> None:
        raise NotImplementedError

    def _explain(self, outcome: Outcome) -> Callable[[Exception], str | None]:
        raise NotImplementedError
