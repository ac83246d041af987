"""``pudimd alerts``, ``pudimd silences``, ``pudimd notify`` and ``pudimd route``: the
on-call side of the command line.  Everything but ``route test`` talks to the running
daemon's HTTP API (the Alertmanager API v2), found from the config's ``server.listen`` or
``--url``."""

from __future__ import annotations

import http.client
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from pudimd.cli_common import config_option
from pudimd.cli_common import fail as _fail

__all__ = ["alerts", "notify", "route", "silences"]


def daemon_url(config_path: Path | None, url: str | None, listen: str | None = None) -> str:
    """The base URL of the running daemon: ``url``, else from ``listen`` (HOST:PORT) or
    the config's ``server.listen`` (wildcard addresses become loopback)."""
    if url:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https") or "//" not in url:
            _fail(f"--url: expected http://HOST:PORT (or https://), got {url!r}")
        return url.rstrip("/")
    from pudimd.config.models import DEFAULT_LISTEN
    from pudimd.daemon import read_listen

    address = listen or (read_listen(config_path) if config_path else None) or DEFAULT_LISTEN
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    return f"http://{host}:{port}"


def _reason(text: str) -> str:
    """What an error answer says: the API answers a JSON string (Alertmanager's API) or
    an object with ``error``; anything else is shown as it is."""
    try:
        answer = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return str(answer["error"])
    if isinstance(answer, dict) and isinstance(answer.get("detail"), str):  # RFC 9457
        return str(answer["detail"])
    return answer if isinstance(answer, str) else text.strip()


TOKEN_META = "pudimd.token"


def _remember_token(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta[TOKEN_META] = value


def api_token() -> str | None:
    """The API token to send: ``--token``, else ``PUDIMD_TOKEN``, else the first line of
    ``PUDIMD_TOKEN_FILE`` or ``~/.config/pudimd/token``."""
    import os

    ctx = click.get_current_context(silent=True)
    token = ctx.meta.get(TOKEN_META) if ctx is not None else None
    if token:
        return str(token)
    if os.environ.get("PUDIMD_TOKEN"):
        return os.environ["PUDIMD_TOKEN"].strip()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    path = Path(os.environ.get("PUDIMD_TOKEN_FILE") or config_home / "pudimd" / "token")
    try:
        return path.read_text(encoding="utf-8").strip().splitlines()[0] or None
    except (OSError, IndexError):
        return None


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> Any:
    """One API call; exits 1 with the daemon's reason when it refuses, and with a one-line
    error when it cannot be reached or does not answer JSON."""
    data = json.dumps(body).encode() if body is not None else None
    token = api_token()
    if token and not any(k.lower() == "authorization" for k in headers or {}):
        headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
    try:
        request = urllib.request.Request(
            base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        _fail(f"{method} {path}: HTTP {exc.code}: {_reason(exc.read().decode(errors='replace'))}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror  # "Connection refused", without "[Errno 111]"
        _fail(f"cannot reach the daemon at {base}: {str(reason) or type(exc).__name__}")
    except http.client.HTTPException:
        _fail(f"{method} {path}: the answer from {base} is not HTTP (is it pudimd?)")
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        _fail(f"{method} {path}: the answer from {base} is not JSON (is it pudimd?)")


def _options(fn: Any) -> Any:
    fn = click.option(
        "--token",
        expose_value=False,
        callback=_remember_token,
        help="API token (default: $PUDIMD_TOKEN, else $PUDIMD_TOKEN_FILE or "
        "~/.config/pudimd/token).",
    )(fn)
    fn = click.option("--url", help="Daemon URL (default: from the config's server.listen).")(fn)
    return config_option("Config file (to find the daemon).")(fn)


def _output(fn: Any) -> Any:
    return click.option(
        "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
    )(fn)


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {value!r}", param_hint=what)
        out[name] = text
    return out


def _seconds(text: str, what: str = "--duration") -> float:
    from pudimd.durations import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# -- alerts -------------------------------------------------------------------------------


@click.group()
def alerts() -> None:
    """List, post and act on alerts (acknowledge, assign, comment, resolve) in the running
    daemon."""


@alerts.command("list")
@_options
@_output
@click.option("-a", "--all", "show_all", is_flag=True, help="Include silenced and inhibited ones.")
@click.argument("matchers", nargs=-1)
def alerts_list(
    config_path: Path, url: str | None, output: str, show_all: bool, matchers: tuple[str, ...]
) -> None:
    """List active alerts, optionally filtered by MATCHERS (alertname=X, severity=~crit.*)."""
    query = [("filter", m) for m in matchers]
    if not show_all:
        query += [("silenced", "false"), ("inhibited", "false")]
    found = call(
        daemon_url(config_path, url), "GET", "/api/v2/alerts?" + urllib.parse.urlencode(query)
    )
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    rows = [
        [
            a["fingerprint"],
            a["labels"].get("alertname", ""),
            a["startsAt"][:19].replace("T", " "),
            a["status"]["state"],
            a["status"].get("acknowledgedBy", ""),
            ",".join(f"{k}={v}" for k, v in sorted(a["labels"].items()) if k != "alertname"),
            a["annotations"].get("summary", ""),
        ]
        for a in found
    ]
    _table(rows, ["FINGERPRINT", "ALERTNAME", "STARTS AT", "STATE", "ACK", "LABELS", "SUMMARY"])


@alerts.command("add")
@_options
@click.option("--annotation", "annotations", multiple=True, metavar="NAME=VALUE")
@click.option("--duration", help="Resolve after this long (default: resolve_timeout).")
@click.option("--generator-url", default="")
@click.argument("alertname")
@click.argument("labels", nargs=-1)
def alerts_add(
    config_path: Path,
    url: str | None,
    annotations: tuple[str, ...],
    duration: str | None,
    generator_url: str,
    alertname: str,
    labels: tuple[str, ...],
) -> None:
    """Post an alert ALERTNAME with LABELS (name=value ...)."""
    if not alertname:
        raise click.BadParameter("must not be empty", param_hint="ALERTNAME")
    alert: dict[str, Any] = {
        "labels": {"alertname": alertname, **_pairs(labels, "LABELS")},
        "annotations": _pairs(annotations, "--annotation"),
        "startsAt": _iso(_now()),
        "generatorURL": generator_url,
    }
    if duration:
        alert["endsAt"] = _iso(datetime.fromtimestamp(_now().timestamp() + _seconds(duration), UTC))
    call(daemon_url(config_path, url), "POST", "/api/v2/alerts", [alert])
    click.echo(f"alert {alertname} posted")


# -- silences -----------------------------------------------------------------------------


@click.group()
def silences() -> None:
    """Add, list and expire silences."""


@silences.command("add")
@_options
@click.option("--comment", required=True, help="Why (shown with the silence).")
@click.option("--author", default=None, help="Who (default: $USER).")
@click.option("--duration", default="1h", show_default=True, help="How long it lasts.")
@click.option(
    "--expire-on-resolve", is_flag=True, help="Expire it as soon as every alert it muted resolved."
)
@click.argument("matchers", nargs=-1, required=True)
def silences_add(
    config_path: Path,
    url: str | None,
    comment: str,
    author: str | None,
    duration: str,
    expire_on_resolve: bool,
    matchers: tuple[str, ...],
) -> None:
    """Silence the alerts matching every one of MATCHERS (alertname=X, instance=~web.*);
    prints the silence id."""
    import getpass

    from pudimd.alerting.matchers import MatcherError, parse_matchers

    try:
        parsed = [m for text in matchers for m in parse_matchers(text)]
    except MatcherError as exc:
        raise click.BadParameter(str(exc), param_hint="MATCHERS") from None
    start = _now()
    body = {
        "matchers": [m.to_api() for m in parsed],
        "startsAt": _iso(start),
        "endsAt": _iso(datetime.fromtimestamp(start.timestamp() + _seconds(duration), UTC)),
        "createdBy": author or getpass.getuser(),
        "comment": comment,
        "expireOnResolve": expire_on_resolve,
    }
    answer = call(daemon_url(config_path, url), "POST", "/api/v2/silences", body)
    click.echo(answer["silenceID"])


@silences.command("list")
@_options
@_output
@click.option("--expired", is_flag=True, help="Include expired silences.")
@click.argument("matchers", nargs=-1)
def silences_list(
    config_path: Path, url: str | None, output: str, expired: bool, matchers: tuple[str, ...]
) -> None:
    """List silences (active and pending; --expired for all)."""
    query = urllib.parse.urlencode([("filter", m) for m in matchers])
    path = "/api/v2/silences" + (f"?{query}" if query else "")
    found = call(daemon_url(config_path, url), "GET", path)
    if not expired:
        found = [s for s in found if s["status"]["state"] != "expired"]
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    from pudimd.alerting.matchers import Matcher

    rows = [
        [
            s["id"],
            ",".join(str(Matcher.from_api(m)) for m in s["matchers"]),
            s["status"]["state"],
            s["endsAt"][:19].replace("T", " "),
            s["createdBy"],
            s["comment"],
        ]
        for s in found
    ]
    _table(rows, ["ID", "MATCHERS", "STATE", "ENDS AT", "CREATED BY", "COMMENT"])


@silences.command("expire")
@_options
@click.argument("ids", nargs=-1, required=True)
def silences_expire(config_path: Path, url: str | None, ids: tuple[str, ...]) -> None:
    """Expire the silences IDS now (they are kept, expired)."""
    base = daemon_url(config_path, url)
    for silence_id in ids:
        call(base, "DELETE", f"/api/v2/silence/{urllib.parse.quote(silence_id)}")
        click.echo(f"silence {silence_id} expired")


# -- notify / route -----------------------------------------------------------------------


@click.group()
def notify() -> None:
    """Notification tools."""


@notify.command("test")
@_options
@click.argument("receiver")
def notify_test(config_path: Path, url: str | None, receiver: str) -> None:
    """Send a test notification to every integration of RECEIVER through the running
    daemon's real path (outbox, retries, notifier); exit 1 unless all were delivered."""
    query = urllib.parse.urlencode({"receiver": receiver})
    answer = call(daemon_url(config_path, url), "POST", f"/api/v1/notify/test?{query}")
    failed = False
    for outcome in answer["integrations"]:
        state = outcome["state"]
        if state == "pending":
            state = f"retrying ({outcome['error']})"
        elif outcome["error"]:
            state = f"{state}: {outcome['error']}"
        failed = failed or outcome["state"] != "delivered"
        click.echo(f"{receiver}/{outcome['integration']}: {state}")
    if not answer["integrations"]:
        _fail(f"receiver {receiver!r} has no integrations")
    sys.exit(1 if failed else 0)


@click.group()
def route() -> None:
    """Routing tree tools."""


@route.command("test")
@config_option(exists=True)
@click.option("--alertmanager-config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("labels", nargs=-1, required=True)
def route_test(
    config_path: Path, alertmanager_config: Path | None, labels: tuple[str, ...]
) -> None:
    """Print the receivers an alert with LABELS (name=value ...) is routed to, and the
    group it joins at each."""
    alert = _pairs(labels, "LABELS")  # before the slow imports: a typo fails at once

    from pudimd.alerting.routing import build_routes, format_labels
    from pudimd.config import ConfigError, load_config, schema_for
    from pudimd.daemon import make_host

    host = make_host(config_path)
    try:
        config = load_config(config_path, schema_for(host), alertmanager_config=alertmanager_config)
    except ConfigError as exc:
        _fail(str(exc))
    if config.alerting.route is None:
        _fail(f"{config_path}: no alerting.route: alerts are kept but notify no receiver")
    root = build_routes(config.alerting.route)
    for found in root.match(alert):
        click.echo(
            f"{found.receiver}  group {found.key}:{format_labels(found.group_labels(alert))}"
        )
