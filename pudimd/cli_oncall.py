"""``pudimd alerts ack|unack|assign|comment|resolve|snooze|history``: what an on-call
engineer does to an alert, through the running daemon's ``/api/v1/alerts``.  Alerts are
named by fingerprint (``pudimd alerts list`` shows them).  Every action is recorded with
the login name (``--as`` to say otherwise) and the interface ``cli``."""

from __future__ import annotations

import getpass
import json
import re
import urllib.parse
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from pudimd.cli_alerting import (
    _iso,
    _now,
    _options,
    _output,
    _seconds,
    _table,
    alerts,
    call,
    daemon_url,
)

__all__ = ["alerts", "oncall"]

_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
_HEADERS = {"X-Pudimd-Interface": "cli"}


def _fingerprints(values: tuple[str, ...]) -> list[str]:
    for value in values:
        if not _FINGERPRINT.match(value):
            raise click.BadParameter(
                f"{value!r} is not a fingerprint (16 hex digits, as `pudimd alerts list` "
                "shows them)",
                param_hint="FINGERPRINT",
            )
    return list(values)


def _act(
    config_path: Path,
    url: str | None,
    action: str,
    fingerprints: list[str],
    body: dict[str, Any],
    actor: str | None,
) -> None:
    base = daemon_url(config_path, url)
    payload = {"actor": actor or getpass.getuser(), **{k: v for k, v in body.items() if v}}
    for fp in fingerprints:
        shown = call(base, "POST", f"/api/v1/alerts/{fp}/{action}", payload, headers=_HEADERS)
        click.echo(f"{fp} {shown['labels'].get('alertname', '')}: {_summary(shown)}")


def _summary(shown: dict[str, Any]) -> str:
    parts = ["firing" if shown["firing"] else "resolved"]
    ack = shown.get("acknowledged")
    if ack:
        until = f" until {ack['until'][:19].replace('T', ' ')}" if ack.get("until") else ""
        parts.append(f"acknowledged by {ack['by']}{until}")
    if shown.get("assignee"):
        parts.append(f"assigned to {shown['assignee']}")
    return ", ".join(parts)


def _actor_option(fn: Any) -> Any:
    return click.option(
        "--as", "actor", metavar="NAME", help="Who does it (default: your login name)."
    )(fn)


def _until_options(fn: Any) -> Any:
    fn = click.option("--until", help="Until this time (RFC 3339, 2026-12-02T18:00:00Z).")(fn)
    return click.option("--for", "for_", metavar="DURATION", help="For this long (2h, 30m).")(fn)


@alerts.command("ack")
@_options
@_actor_option
@_until_options
@click.option("--comment", help="Why, or what you are doing about it.")
@click.argument("fingerprints", nargs=-1, required=True)
def ack(
    config_path: Path,
    url: str | None,
    actor: str | None,
    for_: str | None,
    until: str | None,
    comment: str | None,
    fingerprints: tuple[str, ...],
) -> None:
    """Acknowledge alerts: their receivers are told, repeats and escalation stop.  With
    --for or --until the acknowledgement runs out and they are notified again."""
    body = {"for": for_, "until": until, "comment": comment}
    _act(config_path, url, "ack", _fingerprints(fingerprints), body, actor)


@alerts.command("unack")
@_options
@_actor_option
@click.option("--comment")
@click.argument("fingerprints", nargs=-1, required=True)
def unack(
    config_path: Path,
    url: str | None,
    actor: str | None,
    comment: str | None,
    fingerprints: tuple[str, ...],
) -> None:
    """Take acknowledgements back."""
    _act(config_path, url, "unack", _fingerprints(fingerprints), {"comment": comment}, actor)


@alerts.command("snooze")
@_options
@_actor_option
@_until_options
@click.option("--comment")
@click.argument("fingerprints", nargs=-1, required=True)
def snooze(
    config_path: Path,
    url: str | None,
    actor: str | None,
    for_: str | None,
    until: str | None,
    comment: str | None,
    fingerprints: tuple[str, ...],
) -> None:
    """Quiet alerts until a time (--for or --until, one is needed): they are notified
    again then if they still fire."""
    if not for_ and not until:
        raise click.UsageError("snooze needs --for or --until")
    body = {"for": for_, "until": until, "comment": comment}
    _act(config_path, url, "snooze", _fingerprints(fingerprints), body, actor)


@alerts.command("assign")
@_options
@_actor_option
@click.option("--to", "assignee", required=True, metavar="user:NAME|team:NAME")
@click.option("--comment")
@click.argument("fingerprints", nargs=-1, required=True)
def assign(
    config_path: Path,
    url: str | None,
    actor: str | None,
    assignee: str,
    comment: str | None,
    fingerprints: tuple[str, ...],
) -> None:
    """Assign alerts to a user or a team of the config's oncall section."""
    body = {"assignee": assignee, "comment": comment}
    _act(config_path, url, "assign", _fingerprints(fingerprints), body, actor)


@alerts.command("comment")
@_options
@_actor_option
@click.argument("fingerprint")
@click.argument("text")
def comment(
    config_path: Path, url: str | None, actor: str | None, fingerprint: str, text: str
) -> None:
    """Add a comment to an alert's timeline."""
    _act(config_path, url, "comment", _fingerprints((fingerprint,)), {"comment": text}, actor)


@alerts.command("resolve")
@_options
@_actor_option
@click.option("--comment")
@click.argument("fingerprints", nargs=-1, required=True)
def resolve(
    config_path: Path,
    url: str | None,
    actor: str | None,
    comment: str | None,
    fingerprints: tuple[str, ...],
) -> None:
    """Resolve alerts by hand.  One whose source still reports it fires again as a new
    episode: silence it to stop hearing about it."""
    _act(config_path, url, "resolve", _fingerprints(fingerprints), {"comment": comment}, actor)


@alerts.command("history")
@_options
@_output
@click.option(
    "--target", metavar="NAME", help="A target's uptime and the alert events about it instead."
)
@click.option(
    "--since",
    metavar="DURATION",
    help="With --target: the events of the last DURATION (default 90d).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    help="With --target: at most this many events (the oldest in the range).",
)
@click.argument("fingerprint", required=False)
def history(
    config_path: Path,
    url: str | None,
    output: str,
    target: str | None,
    since: str | None,
    limit: int,
    fingerprint: str | None,
) -> None:
    """An alert's timeline: fired, acknowledged, assigned, commented, resolved..., and
    the notifications of its groups with each delivery attempt.  With --target NAME
    instead of a FINGERPRINT: the target's uptime (the share of successful checks) over
    24h, 7d, 30d and 90d, and the events of its alerts over --since."""
    if (fingerprint is None) == (target is None):
        raise click.UsageError("give an alert's FINGERPRINT or --target NAME (one of them)")
    if target is not None:
        _target_history(daemon_url(config_path, url), output, target, since or "90d", limit)
        return
    if since is not None:
        raise click.UsageError("--since goes with --target")
    (fp,) = _fingerprints((fingerprint or "",))
    found = call(daemon_url(config_path, url), "GET", f"/api/v1/alerts/{fp}/history")
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    rows: list[tuple[str, list[str]]] = []
    for event in found["events"]:
        rows.append((event["at"], [event["kind"], _who(event), _detail(event["detail"])]))
    for sent in found["notifications"]:
        what = f"{sent['status']}{' (acknowledged)' if sent['acknowledged'] else ''}"
        rows.append(
            (sent["createdAt"], ["notified", f"{sent['receiver']}/{sent['integration']}",
                                 f"{what}: {sent['state']}"])
        )  # fmt: skip
        for attempt in sent["attempts"]:
            detail = f" {attempt['detail']}" if attempt["detail"] else ""
            rows.append(
                (attempt["at"], ["  attempt", f"{sent['receiver']}/{sent['integration']}",
                                 f"{attempt['outcome']} in {attempt['seconds']}s{detail}"])
            )  # fmt: skip
    rows.sort(key=lambda row: row[0])
    _table(
        [[at[:23].replace("T", " "), *cells] for at, cells in rows],
        ["AT", "EVENT", "BY", "DETAIL"],
    )


def _who(event: dict[str, Any]) -> str:
    who: str = event["actor"] or ""
    if event["interface"]:
        who += f" ({event['interface']})"
    return who


def _target_history(base: str, output: str, target: str, since: str, limit: int) -> None:
    """``alerts history --target``: two calls, the uptime and the target's events."""
    start = _now() - timedelta(seconds=_seconds(since, "--since"))
    name = urllib.parse.quote(target, safe="")
    uptime = call(base, "GET", f"/api/v1/targets/{name}/uptime")
    query = urllib.parse.urlencode({"target": target, "since": _iso(start), "limit": str(limit)})
    events = call(base, "GET", f"/api/v1/history?{query}")["events"]
    if output == "json":
        click.echo(json.dumps({"uptime": uptime, "events": events}, indent=2))
        return
    _table(
        [
            [
                w["window"],
                str(w["checks"]),
                str(w["failures"]),
                "-" if w["uptimePercent"] is None else f"{w['uptimePercent']:.3f}%",
            ]
            for w in uptime["windows"]
        ],
        ["WINDOW", "CHECKS", "FAILURES", "UPTIME"],
    )
    click.echo("")
    if not events:
        click.echo(f"No alert events for {target} in the last {since}.")
        return
    _table(
        [
            [
                e["at"][:23].replace("T", " "),
                e["alertname"],
                e["fingerprint"],
                e["kind"],
                _who(e),
                _detail(e["detail"]),
            ]
            for e in events
        ],
        ["AT", "ALERT", "FINGERPRINT", "EVENT", "BY", "DETAIL"],
    )
    if len(events) >= limit:
        click.echo(
            f"(the first {limit} events since {_iso(start)}: narrow --since or raise --limit)"
        )


@alerts.command("report")
@_options
@_output
@click.option(
    "--since",
    default="30d",
    show_default=True,
    metavar="DURATION",
    help="The episodes of alerts that fired in the last DURATION.",
)
def report(config_path: Path, url: str | None, output: str, since: str) -> None:
    """How fast alerts are answered: MTTA (mean time to acknowledge) and MTTR (mean time
    to resolve), with medians and counts, in all, per receiver and per team (the team an
    episode was last assigned to, or its assigned user's teams).  An episode is one firing
    of an alert, from fired to resolved."""
    now = _now()
    query = urllib.parse.urlencode(
        {"since": _iso(now - timedelta(seconds=_seconds(since, "--since"))), "until": _iso(now)}
    )
    found = call(daemon_url(config_path, url), "GET", f"/api/v1/reports/response?{query}")
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    rows = [_report_row("all", "-", found["total"])]
    rows += [_report_row("receiver", r["receiver"], r) for r in found["receivers"]]
    rows += [_report_row("team", t["team"], t) for t in found["teams"]]
    rows.append(_report_row("team", "(none)", found["noTeam"]))
    _table(rows, _REPORT_HEADER)


_REPORT_HEADER = ["BY", "NAME", "EPISODES", "ACKED", "UNACKED", "RESOLVED", "OPEN", "MTTA",
                  "MTTA-P50", "MTTR", "MTTR-P50"]  # fmt: skip


def _report_row(by: str, name: str, stats: dict[str, Any]) -> list[str]:
    counts = [str(stats[key]) for key in ("episodes", "acknowledged", "unacknowledged")]
    counts += [str(stats[key]) for key in ("resolved", "open")]
    times = [
        _span(stats[measure][key])
        for measure in ("mtta", "mttr")
        for key in ("meanSeconds", "medianSeconds")
    ]
    return [by, name, *counts, *times]


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    from pudimd.durations import format_duration

    return format_duration(timedelta(seconds=round(seconds, 0 if seconds >= 60 else 3)))


def _detail(detail: dict[str, Any]) -> str:
    parts = []
    for key, value in detail.items():
        if key == "labels":
            continue
        parts.append(f"{key}={value}")
    return " ".join(parts)


# -- who is on call -----------------------------------------------------------------------


@click.group()
def oncall() -> None:
    """Who is on call: now, at a time, and a schedule's shifts (the running daemon's
    oncall section)."""


@oncall.command("now")
@_options
@_output
@click.option("--at", "at", metavar="TIME", help="At this time (RFC 3339) instead of now.")
def oncall_now(config_path: Path, url: str | None, output: str, at: str | None) -> None:
    """Who is on call in each schedule."""
    query = f"?at={urllib.parse.quote(at)}" if at else ""
    found = call(daemon_url(config_path, url), "GET", f"/api/v1/oncall{query}")
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    rows = [[name, ", ".join(users) or "(nobody)"] for name, users in found["schedules"].items()]
    _table(rows, ["SCHEDULE", "ON CALL"])


@oncall.command("schedule")
@_options
@_output
@click.option("--from", "start", metavar="TIME", help="From this time (RFC 3339; default now).")
@click.option("--days", default=7.0, show_default=True, help="How many days to show.")
@click.argument("name")
def oncall_schedule(
    config_path: Path, url: str | None, output: str, start: str | None, days: float, name: str
) -> None:
    """The shifts of schedule NAME, who holds each and from which layer (or override)."""
    query = urllib.parse.urlencode({"days": str(days), **({"from": start} if start else {})})
    found = call(
        daemon_url(config_path, url),
        "GET",
        f"/api/v1/oncall/schedules/{urllib.parse.quote(name, safe='')}?{query}",
    )
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    rows = [
        [s["start"][:16].replace("T", " "), s["end"][:16].replace("T", " "), s["user"], s["layer"]]
        for s in found["shifts"]
    ]
    _table(rows, ["FROM (UTC)", "TO (UTC)", "USER", "LAYER"])
