"""``pudimd rules test``: run unit tests of the alerting rules (docs/rule-tests.md), as
``promtool test rules`` does for Prometheus' rules.  Nothing runs but the rule engine, on a
virtual clock: no daemon, no probes, no notifications."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

__all__ = ["rules"]


@click.group()
def rules() -> None:
    """Test alerting rules against made-up check results."""


@rules.command("test")
@click.option(
    "--run",
    "pattern",
    metavar="REGEX",
    help="Run only the tests whose name REGEX matches (anywhere in the name).",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def rules_test(files: tuple[Path, ...], pattern: str | None) -> None:
    """Run the rule tests in FILES: each feeds check results (ok, fail, degraded, durations,
    metrics) at given times to the rules of a pudimd config (config: pudimd.yaml) or of
    inline rules and targets, and says which alerts must fire at given times, with which
    labels, annotations and blocked_by.  The file format is in docs/rule-tests.md.

    Prints PASS NAME or FAIL NAME per test, and for a failure the expected and the firing
    alerts (labels sorted) and how they differ.

    Exit codes: 0 every test passed; 1 a test failed; 2 a test file (or the config it
    names) is invalid, printed as file:line:column: reason, no test matched --run, or bad
    usage.

    Example: pudimd rules test rules/*.test.yaml --run 'db|switch'
    """
    from pudimd.alerting.ruletest import load_tests
    from pudimd.config import ConfigError
    from pudimd.log import configure_logging

    configure_logging(level="warning")  # the engine's warnings (a template that fails) on stderr

    select: re.Pattern[str] | None = None
    if pattern is not None:
        try:
            select = re.compile(pattern)
        except re.error as exc:
            raise click.BadParameter(
                f"invalid regex {pattern!r}: {exc}", param_hint="--run"
            ) from None
    invalid = 0
    passed = failed = 0
    for file in files:
        try:
            suite = load_tests(file)
        except ConfigError as exc:
            invalid += 1
            for line in str(exc).splitlines():
                click.echo(line, err=True)
            continue
        for outcome in suite.run(select):
            if outcome.passed:
                passed += 1
                click.echo(f"PASS {outcome.name}")
                continue
            failed += 1
            click.echo(f"FAIL {outcome.name}")
            for failure in outcome.failures:
                for line in str(failure).splitlines():
                    click.echo(f"  {line}")
    ran = passed + failed
    summary = f"{ran} test{'s' if ran != 1 else ''}: {passed} passed, {failed} failed"
    click.echo(
        summary + (f", {invalid} invalid file{'s' if invalid != 1 else ''}" if invalid else "")
    )
    if invalid:
        sys.exit(2)
    if select is not None and passed + failed == 0:
        click.echo(f"pudimd: no test name matches --run {pattern!r}", err=True)
        sys.exit(2)
    sys.exit(1 if failed else 0)
