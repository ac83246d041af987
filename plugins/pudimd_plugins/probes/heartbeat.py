"""The ``heartbeat`` probe: push monitoring, like Healthchecks.io.

Instead of pudimd checking a service, a job (a cron job, a backup script, a batch worker)
tells pudimd it ran, by requesting its secret URL on the daemon's listener::

    curl -fsS -m 10 --retry 3 http://pudimd:9797/ping/<key>          # success
    curl -fsS -m 10 http://pudimd:9797/ping/<key>/start                # a run begins
    curl -fsS -m 10 http://pudimd:9797/ping/<key>/fail                 # the run failed
    backup.sh; curl -fsS -m 10 http://pudimd:9797/ping/<key>/$?        # its exit code
    out=$(backup.sh 2>&1); code=$?                                      # with its output
    printf %s "$out" | tail -c 10000 |
        curl -fsS -m 10 --data-binary @- http://pudimd:9797/ping/<key>/$code

``GET``, ``HEAD`` and ``POST`` are accepted.  The answer is ``200 OK``, or ``404 not found``
when no target has that key (``400`` for an exit code above 255).  The body of a ``POST``
(its first 10,000 bytes, decoded as UTF-8) is kept as the last ping's body (``BODY``, and
the reason shown with a failure).  Exit code ``0`` is a success ping; ``1``-``255`` a
failure.  Keys are looked up by their SHA-256, so the time a lookup takes says nothing about
which keys exist.

The target goes **down** when no success ping arrives within ``period`` + ``grace`` of the
last one (or, with ``cron``, when the run the schedule expected after the last success ping
is more than ``grace`` overdue), when the last completion ping reported a failure (until the
next success ping), or when a ``/start`` ping is not followed by a completion ping within
``grace``.  Between the deadline and the end of the grace time it is up but *degraded*
(status ``late``).  The target's ``interval`` (default from ``defaults``) is how often this
is evaluated: a missed ping is noticed up to one interval after its grace time ends.

Target: a free-form description of the job that pings (``nightly backup on db1``); it is
only shown, never contacted.

A target just added, or a daemon just started, has no ping yet: monitoring begins then, so
the target is up ("waiting for first ping", status ``new``) until period + grace (or the
cron schedule's next run + grace) have passed.  A config reload that keeps a target's key
keeps its ping history (the history belongs to the key, not to the target's probe
instance); a new key starts afresh and the old key's URL answers 404.  Two targets with the
same key share its pings.

Pings survive a restart: at a graceful stop (SIGTERM) the history is saved to
``heartbeat.json`` in the daemon's state directory (mode 0600; it holds the keys' SHA-256,
not the keys) and loaded at start-up; after a crash the history starts afresh.  The time
the daemon was down does not count against a job (its pings could not arrive): deadlines
move by the downtime.

``pudimd probe heartbeat`` cannot see pings (only the running daemon receives them): it fails
and says so.

Settings (the block under ``heartbeat:`` in a target)::

    key: (required)      # the secret in the URL: 16-128 of A-Z a-z 0-9 - _ . ~
                         #   (e.g. from `openssl rand -hex 16`); or key_file: a file holding it
    period: null         # the expected time between pings (e.g. 5m, 1d); or
    cron: null           # the job's own schedule ('0 3 * * *'), instead of period
    timezone: null       # time zone of cron (default UTC)
    grace: 1m            # how late a ping may be, and how long a started run may take

Result: ``message`` says why it is down (``no ping for 12m (expected every 5m + 1m
grace)``, ``last ping reported failure (exit code 3): disk full``, ``started 1h ago, no
completion ping within 1m grace``), or ``waiting for first ping`` / ``started 20s ago``
while up.  ``status``: ``new``, ``up``, ``started``, ``late`` or ``down``.

Metrics: ``pings_total`` (pings received, all kinds), ``last_ping_age_seconds`` (since the
last ping of any kind), ``run_duration_seconds`` (from ``/start`` to the success ping of the
last timed run), ``last_exit_code`` (of the last completion ping: 0 for a success ping,
absent after ``/fail``).

Values (for conditions): ``LAST_PING_AGE`` (seconds since the last ping, float; missing
before the first), ``EXIT_CODE`` (int, as ``last_exit_code``; missing when unknown), ``BODY``
(the body of the last ping, str; empty for ``GET``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator

from pudimd.durations import Duration, PositiveDuration, format_duration
from pudimd.hookspecs import hookimpl
from pudimd.results import ProbeResult
from pudimd.settings import CronExpression, PluginSettings, SecretFile, TimeZoneName

if TYPE_CHECKING:
    from aiohttp import web

    from pudimd.daemon import Daemon

__all__ = [
    "REGISTRY",
    "Beat",
    "HeartbeatProbe",
    "HeartbeatSettings",
    "Registry",
    "evaluate",
    "key_id",
    "pudimd_api_routes",
    "pudimd_probe_types",
    "pudimd_shutdown",
    "pudimd_startup",
    "routes",
]

MAX_BODY = 10_000
"""Bytes of a POST body kept as the ping's body."""
STATE_FILE = "heartbeat.json"
_KEY = re.compile(r"^[A-Za-z0-9._~-]{16,128}$")
_SUCCESS, _START, _FAIL = "success", "start", "fail"


def key_id(key: str) -> str:
    """What the registry knows a key by: its SHA-256 (hex)."""
    return hashlib.sha256(key.encode()).hexdigest()


class HeartbeatSettings(PluginSettings):
    """Settings of the ``heartbeat`` probe (see the module docstring)."""

    key: SecretStr | None = Field(
        None,
        description="Secret part of the ping URL /ping/<key>: 16-128 of A-Z a-z 0-9 - _ . ~ "
        "(e.g. `openssl rand -hex 16`)",
    )
    key_file: SecretFile | None = Field(None, description="File holding `key`")
    period: PositiveDuration | None = Field(
        None, description="Expected time between success pings (or set cron)"
    )
    cron: CronExpression | None = Field(
        None, description="The job's schedule, e.g. '0 3 * * *' (instead of period)"
    )
    timezone: TimeZoneName | None = Field(None, description="Time zone of cron (default UTC)")
    grace: Duration = Field(
        timedelta(minutes=1),
        description="How late a ping may be, and how long a started run may take, before "
        "the target is down",
    )

    @model_validator(mode="after")
    def _complete(self) -> Self:
        key = self.key if self.key is not None else self.key_file
        if key is None:
            raise ValueError("key (or key_file) is required: e.g. `openssl rand -hex 16`")
        if not _KEY.match(key.get_secret_value()):
            raise ValueError(
                "key must be 16-128 characters of A-Z a-z 0-9 - _ . ~ (e.g. `openssl rand -hex 16`)"
            )
        if (self.period is None) == (self.cron is None):
            raise ValueError("set period (e.g. 5m) or cron (e.g. '0 3 * * *'), one of them")
        if self.timezone is not None and self.cron is None:
            raise ValueError("timezone applies to cron only")
        return self

    @property
    def secret(self) -> str:
        key = self.key if self.key is not None else self.key_file
        assert key is not None, "validated: key or key_file is set"
        return key.get_secret_value()


# -- the pings of one key -----------------------------------------------------------------


@dataclass(slots=True)
class Beat:
    """What is known of one key's pings.  Times are Unix seconds."""

    created: float
    """When monitoring of the key began (the first period starts here)."""
    pings: int = 0
    last_ping: float | None = None
    last_success: float | None = None
    started: float | None = None
    """A ``/start`` not yet followed by a completion ping."""
    failed: bool = False
    """The last completion ping reported a failure (cleared by a success ping)."""
    exit_code: int | None = None
    duration: float | None = None
    """Seconds from ``/start`` to the success ping of the last timed run."""
    body: str = ""
    credit: float = 0.0
    """Seconds the daemon was down since the last success ping (deadlines move by it)."""
    credit_at_start: float = 0.0

    def record(self, kind: str, exit_code: int | None, body: str, now: float) -> None:
        """Fold one ping in: ``kind`` is success, start or fail."""
        self.pings += 1
        self.last_ping = now
        self.body = body
        if kind == _START:
            self.started = now
            self.credit_at_start = self.credit
            return
        if kind == _SUCCESS:
            self.duration = now - self.started if self.started is not None else None
            self.last_success = now
            self.failed = False
            self.exit_code = 0
            self.credit = self.credit_at_start = 0.0
        else:
            self.failed = True
            self.exit_code = exit_code
        self.started = None


class Registry:
    """Every heartbeat key the process monitors, by :func:`key_id`.

    Probe instances register their key when made and unregister it in ``aclose``.  The
    history belongs to the key: a reload makes the new instance before it closes the old
    one, so a key that stays in the config keeps its pings; a key no instance uses any more
    is forgotten and answers 404.  ``clock`` gives Unix time.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.serving = False
        """True once a daemon's HTTP app serves the ping routes of this registry."""
        self._beats: dict[str, Beat] = {}
        self._owners: dict[str, set[object]] = {}

    def register(self, kid: str, owner: object) -> Beat:
        beat = self._beats.get(kid)
        if beat is None:
            beat = self._beats[kid] = Beat(created=self.clock())
        self._owners.setdefault(kid, set()).add(owner)
        return beat

    def unregister(self, kid: str, owner: object) -> None:
        owners = self._owners.get(kid)
        if owners is None:
            return
        owners.discard(owner)
        if not owners:
            del self._owners[kid]
            del self._beats[kid]

    def active(self, kid: str) -> Beat | None:
        """The beat of a key some target uses, or None."""
        return self._beats.get(kid)

    def ping(self, key: str, kind: str, exit_code: int | None = None, body: str = "") -> bool:
        """Record a ping of ``key``; False when no target has that key."""
        beat = self._beats.get(key_id(key))
        if beat is None:
            return False
        beat.record(kind, exit_code, body, self.clock())
        return True

    # -- persistence ------------------------------------------------------------------

    def dump(self, kids: set[str]) -> dict[str, Any]:
        """The history of ``kids`` as JSON-able data."""
        beats = {kid: asdict(self._beats[kid]) for kid in sorted(kids) if kid in self._beats}
        return {"version": 1, "saved_at": self.clock(), "beats": beats}

    def restore(self, data: Any, kids: set[str]) -> int:
        """Load the history of ``kids`` from :meth:`dump` output (a key that has had pings
        since it was registered keeps them).  The time since ``saved_at`` is credited to
        each beat.  Returns how many beats were restored; ignores malformed data."""
        if not isinstance(data, dict) or data.get("version") != 1:
            return 0
        saved_at, beats = data.get("saved_at"), data.get("beats")
        if not isinstance(saved_at, int | float) or not isinstance(beats, dict):
            return 0
        downtime = max(0.0, self.clock() - saved_at)
        names = {f.name for f in fields(Beat)}
        restored = 0
        for kid, saved in beats.items():
            live = self._beats.get(kid)
            if kid not in kids or live is None or live.pings or not isinstance(saved, dict):
                continue
            try:
                beat = Beat(**{k: v for k, v in saved.items() if k in names})
            except TypeError:
                continue
            beat.credit += downtime
            for name in names:
                setattr(live, name, getattr(beat, name))
            restored += 1
        return restored


REGISTRY = Registry()
"""The registry of this process: probe instances are made by the scheduler from their
settings alone, so they find the daemon's ping routes through this module."""


# -- deciding the state -------------------------------------------------------------------


def _age(seconds: float) -> str:
    return format_duration(timedelta(seconds=round(max(0.0, seconds))))


def _expected(beat: Beat, settings: HeartbeatSettings) -> tuple[float, str]:
    """When the next success ping is due (Unix time) and how that was decided."""
    reference = beat.last_success if beat.last_success is not None else beat.created
    reference += beat.credit
    grace = format_duration(settings.grace)
    if settings.cron is None:
        assert settings.period is not None, "validated: period or cron"
        how = f"expected every {format_duration(settings.period)} + {grace} grace"
        return reference + settings.period.total_seconds(), how
    from croniter import croniter

    tz = ZoneInfo(settings.timezone) if settings.timezone else UTC
    due: float = croniter(settings.cron, datetime.fromtimestamp(reference, tz)).get_next(float)
    at = datetime.fromtimestamp(due, tz).strftime("%Y-%m-%d %H:%M %Z")
    return due, f"expected at {at} by cron '{settings.cron}' + {grace} grace"


def evaluate(beat: Beat, settings: HeartbeatSettings, now: float) -> ProbeResult:
    """The target's state at Unix time ``now``."""
    metrics: dict[str, float] = {"pings_total": float(beat.pings)}
    values: dict[str, Any] = {"BODY": beat.body}
    if beat.last_ping is not None:
        metrics["last_ping_age_seconds"] = values["LAST_PING_AGE"] = max(0.0, now - beat.last_ping)
    if beat.duration is not None:
        metrics["run_duration_seconds"] = beat.duration
    if beat.exit_code is not None:
        metrics["last_exit_code"] = float(beat.exit_code)
        values["EXIT_CODE"] = beat.exit_code

    def result(status: str, message: str = "", *, up: bool = True) -> ProbeResult:
        return ProbeResult(
            success=up, message=message, status=status, metrics=metrics, values=values,
            degraded=status == "late",
        )  # fmt: skip

    grace = settings.grace.total_seconds()
    if beat.failed:
        code = f" (exit code {beat.exit_code})" if beat.exit_code is not None else ""
        reason = beat.body.strip().splitlines()[0][:100] if beat.body.strip() else ""
        reason = f": {reason}" if reason else ""
        return result("down", f"last ping reported failure{code}{reason}", up=False)
    if beat.started is not None:
        running = now - beat.started
        if running > grace + beat.credit - beat.credit_at_start:
            return result(
                "down",
                f"started {_age(running)} ago, no completion ping within "
                f"{format_duration(settings.grace)} grace",
                up=False,
            )
    due, how = _expected(beat, settings)
    if now > due + grace:
        if beat.last_success is None:
            since = _age(now - beat.created)
            return result(
                "down", f"no ping in the {since} since monitoring began ({how})", up=False
            )
        what = "ping" if beat.last_ping == beat.last_success else "success ping"
        return result("down", f"no {what} for {_age(now - beat.last_success)} ({how})", up=False)
    if now > due:
        return result("late", f"late: {_age(now - due)} past the deadline ({how})")
    if beat.started is not None:
        return result("started", f"started {_age(now - beat.started)} ago")
    if beat.last_success is None:
        return result("new", "waiting for first ping")
    return result("up")


class HeartbeatProbe:
    """Evaluate the pings a job sent to its secret URL; see the module docstring."""

    type = "heartbeat"
    Settings = HeartbeatSettings

    def __init__(self, settings: HeartbeatSettings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else REGISTRY
        self.key_id = key_id(settings.secret)
        self.beat = self.registry.register(self.key_id, self)

    async def aclose(self) -> None:
        """Stop answering the key's URL (unless another instance uses the key)."""
        self.registry.unregister(self.key_id, self)

    async def check(self, target: str, timeout: float) -> ProbeResult:
        if not self.registry.serving:
            return ProbeResult.failure(
                "heartbeat pings are received by the running daemon (pudimd run): "
                "a one-off probe cannot see them"
            )
        return evaluate(self.beat, self.settings, self.registry.clock())


# -- the ping endpoints -------------------------------------------------------------------


async def _read_body(request: web.Request) -> str:
    data = bytearray()
    while len(data) < MAX_BODY:
        chunk = await request.content.read(MAX_BODY - len(data))
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace")


def routes(registry: Registry) -> list[web.RouteDef]:
    """The ping routes of ``registry``: ``/ping/{key}`` and ``/ping/{key}/{action}`` with
    action ``start``, ``fail`` or an exit code; GET (and HEAD) and POST."""
    from aiohttp import web

    async def ping(request: web.Request) -> web.Response:
        beat = registry.active(key_id(request.match_info["key"]))
        if beat is None:
            return web.Response(status=404, text="not found\n")
        action = request.match_info.get("action")
        kind, code = _SUCCESS, None
        if action in (_START, _FAIL):
            kind = action
        elif action is not None:
            code = int(action) if len(action) <= 3 else 256
            if code > 255:
                return web.Response(status=400, text="exit code must be 0-255\n")
            kind = _SUCCESS if code == 0 else _FAIL
        body = await _read_body(request) if request.method == "POST" else ""
        beat.record(kind, code, body, registry.clock())
        return web.Response(text="OK\n")

    out: list[web.RouteDef] = []
    for path in ("/ping/{key}", "/ping/{key}/{action:start|fail|[0-9]+}"):
        out += [web.get(path, ping), web.post(path, ping)]
    return out


@hookimpl
def pudimd_api_routes(daemon: Daemon) -> list[web.RouteDef]:
    """``/ping/<key>`` and friends on the daemon's listener."""
    REGISTRY.serving = True
    return routes(REGISTRY)


# -- persistence --------------------------------------------------------------------------


def _state_file(daemon: Daemon) -> Path | None:
    if daemon.config is None:
        return None
    return daemon.state_dir(daemon.config) / STATE_FILE


def _daemon_keys(daemon: Daemon) -> set[str]:
    if daemon.scheduler is None:
        return set()
    return {
        job.probe.key_id
        for job in daemon.scheduler.jobs.values()
        if isinstance(job.probe, HeartbeatProbe)
    }


def _take_json(path: Path) -> Any:
    """The data saved at ``path``, and the file removed: a crash must not leave an old
    history to be loaded by the next start."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    return data


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out)
    tmp.replace(path)


@hookimpl
async def pudimd_startup(daemon: Daemon) -> None:
    """Load the ping history saved by the last shutdown."""
    import anyio

    path = _state_file(daemon)
    if path is not None:
        saved = await anyio.to_thread.run_sync(_take_json, path)
        REGISTRY.restore(saved, _daemon_keys(daemon))


@hookimpl
async def pudimd_shutdown(daemon: Daemon) -> None:
    """Save the ping history of this daemon's heartbeat targets."""
    import anyio

    path, kids = _state_file(daemon), _daemon_keys(daemon)
    if path is not None and kids:
        await anyio.to_thread.run_sync(_write_json, path, REGISTRY.dump(kids))


@hookimpl
def pudimd_probe_types() -> list[type[Any]]:
    """The ``heartbeat`` probe."""
    return [HeartbeatProbe]
