"""``pudimd simulate``: what the alerting of a config would have sent for given check
results (docs/simulate.md).  The real rules, routes, silences, inhibition, time intervals,
``depends_on`` and escalations run on a virtual clock; nothing is sent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pudimd.cli_common import DEFAULT_CONFIG, config_option

__all__ = ["simulate"]


def _start(value: str | None) -> float | None:
    from pudimd.alerting.notification import parse_time

    if value is None:
        return None
    try:
        moment = parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--start") from None
    if moment is None:
        raise click.BadParameter(f"{value!r} is not a time", param_hint="--start")
    return moment.timestamp()


def _tail(value: str) -> float:
    from pudimd.durations import parse_duration

    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tail") from None


@click.command()
@click.option(
    "--results",
    "results_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The results file: check results, silences and acknowledgements (docs/simulate.md).",
)
@config_option(
    f"Config file (default: the results file's config:, else {DEFAULT_CONFIG}).", default=None
)
@click.option(
    "--start",
    metavar="TIME",
    help="RFC 3339 time of time 0 (default 2024-01-01T00:00:00Z; with recorded results, "
    "the second of the first one).",
)
@click.option(
    "--tail",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="How long to go on after the last result or acknowledgement.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one line per notification and a summary; json: one document, for scripts.",
)
def simulate(
    results_path: Path, config_path: Path | None, start: str | None, tail: str, output: str
) -> None:
    """Replay check results through the alerting of a config on a virtual clock and print
    what would have been sent, when and to whom.  Nothing is sent.

    The real rules, routes, grouping (group_wait, group_interval, repeat_interval),
    silences, inhibition, time intervals, depends_on and escalation policies run; the
    results file gives the checks (as `pudimd rules test` does), silences and
    acknowledgements at times from the start.

    Prints one line per notification (time from the start, RFC 3339 time,
    receiver/integration, firing, resolved or acknowledged, the group, the alerts, and
    the escalation level), then notifications per receiver.  Notes (an acknowledgement
    that selected no alert, a secret file not read) go to stderr.

    Exit codes: 0 the simulation ran; 2 the results file or the config is invalid
    (printed as file:line:column: reason) or bad usage.

    Example: pudimd simulate --results incident.yaml -c pudimd.yaml --tail 30m
    """
    from functools import partial

    import anyio

    from pudimd.alerting.simulate import load_scenario
    from pudimd.alerting.simulate import simulate as run_simulation
    from pudimd.config import ConfigError
    from pudimd.log import configure_logging
    from pudimd.plugins import PluginError

    start_at = _start(start)
    tail_seconds = _tail(tail)
    configure_logging(level="warning")  # the engine's warnings (a failing template) on stderr
    try:
        scenario = load_scenario(results_path, config_path, default_config=DEFAULT_CONFIG)
    except (ConfigError, PluginError) as exc:
        for line in str(exc).splitlines():
            click.echo(line, err=True)
        sys.exit(2)

    outcome = anyio.run(partial(run_simulation, scenario, start=start_at, tail=tail_seconds))
    for note in outcome.notes:
        click.echo(f"note: {note}", err=True)
    if output == "json":
        click.echo(json.dumps(outcome.to_json(), indent=2))
    else:
        for line in outcome.lines():
            click.echo(line)
    sys.exit(0)
