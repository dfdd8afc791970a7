"""``otel-margin alerts run|test``: evaluate the alert rules, keep their history, send them.

``run`` evaluates every rule once (``--watch``: every ``--interval`` seconds until Ctrl-C or
SIGTERM), records the breaches in ``alert_events`` (created on first use), prints them (a table,
or ``--format json``: a JSON array of objects) and sends the new ones to the policy file's
webhooks. ``test`` sends a sample alert to each configured webhook and says which succeeded.
See docs/alerts.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

_DESCRIPTION = """\
Margin alerts: each rule is a SQL file returning the rows that breach (rule, severity, feature,
customer, value, threshold, trend, driver). The built-in rules ship with otel-margin; add your own
as .sql files in a directory ([alerts] rules_dir in the policy file, or --rules DIR). Every breach
is recorded in the alert_events table; a standing breach is not sent again within its cooldown
([alerts] cooldown_hours, default 24). Destinations and the runbook are [[alerts.webhooks]] and
[alerts.runbook] in the policy file (docs/alerts.md)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alerts`` with its ``run`` and ``test`` actions."""
    from otel_margin.analysis.alerts.runner import DEFAULT_INTERVAL

    parser = subparsers.add_parser(
        "alerts", help="evaluate the margin alert rules, record and send them",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_parser = actions.add_parser(
        "run", help="evaluate every rule once (or --watch), record, print and send the alerts",
        description="Evaluate every rule, record the breaches in alert_events, print them and send the new ones "
        "to the policy file's webhooks. Exit status 1 when a rule failed or a webhook could not be reached (the "
        "alert is sent again at the next run).",
    )
    run_parser.add_argument("--watch", action="store_true",
                            help="run on a schedule until Ctrl-C or SIGTERM (a failed run is reported, never fatal)")
    run_parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                            help=f"seconds between runs with --watch (default {DEFAULT_INTERVAL:g})")
    run_parser.add_argument("--format", choices=("table", "json"), default="table",
                            help="table (default) or json: a JSON array of the alerts' fields on stdout")
    run_parser.add_argument("--rules", action="append", default=[], metavar="DIR",
                            help="a directory of your own rule files (*.sql); may be repeated; a file named like a "
                            "built-in replaces it")
    run_parser.add_argument("--no-builtin", action="store_true", help="run only your own rule files")
    _common(run_parser)
    run_parser.add_argument("--database", help="database name (default: OTEL_EXPORTER_CLICKHOUSE_DATABASE)")
    run_parser.add_argument("--cluster", help="create alert_events ON CLUSTER NAME (Replicated + Distributed), "
                            "as `otel-margin schema print --cluster` does for the margin schema")
    run_parser.set_defaults(func=run)
    test_parser = actions.add_parser("test", help="send a sample alert to each configured webhook",
                                     description="Send a sample alert to each [[alerts.webhooks]] destination of "
                                     "the policy file and say which succeeded (exit status 1 if any failed).")
    _common(test_parser)
    test_parser.set_defaults(func=test)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", metavar="FILE",
                        help="the policy file (default: OTEL_MARGIN_POLICY, else ./otel-margin.toml)")


def run(args: argparse.Namespace) -> int:
    """``alerts run``: once, or ``--watch``."""
    from otel_margin.analysis.alerts.events import HistoryError
    from otel_margin.analysis.alerts.runner import AlertRunner, watch
    from otel_margin.cli import CommandError, storage_config
    from otel_margin.exporters.storage import StorageUnavailable
    from otel_margin.policy import PolicyError, load_policy

    if not args.interval > 0:
        raise CommandError(f"--interval {args.interval:g} must be a number of seconds > 0, like 300")
    config = storage_config(database=args.database)
    runner = AlertRunner(config, policy=lambda: load_policy(args.policy), rules_dirs=args.rules,
                         builtin=not args.no_builtin, cluster=args.cluster)
    if args.watch:
        stop = threading.Event()
        told: dict[str, int] = {}  # fatigue already said, by rule: said again only when the count changes

        def report(result: Any) -> None:
            _print_result(result, args, config, watching=True, fatigue_told=told)

        def report_error(error: Exception) -> None:
            print(f"otel-margin alerts: this run failed, the next one is in {args.interval:g} s: "
                  f"{_first_lines(error)}", file=sys.stderr, flush=True)

        with _stopped_by_signals(stop):
            watch(runner, interval=args.interval, stop=stop, report=report, report_error=report_error)
        return 0
    try:
        result = runner.run_once()
    except (StorageUnavailable, PolicyError, HistoryError) as error:
        raise CommandError(str(error)) from error
    return _print_result(result, args, config, watching=False)


def test(args: argparse.Namespace) -> int:
    """``alerts test``: a sample alert to each webhook."""
    import httpx

    from otel_margin.analysis.alerts.delivery import alert_fields, body, post, sample_event
    from otel_margin.analysis.alerts.settings import alert_settings
    from otel_margin.cli import CommandError
    from otel_margin.display import printable
    from otel_margin.policy import PolicyError, load_policy

    try:
        policy = load_policy(args.policy)
        settings = alert_settings(policy)
    except PolicyError as error:
        raise CommandError(str(error)) from error
    if not settings.webhooks:
        raise CommandError(
            f"{policy.display_name}: no destinations to test; add one to the policy file:\n"
            '[[alerts.webhooks]]\nname = "slack-margin"\nurl = "https://hooks.slack.com/services/T000/B000/XXXX"\n'
            'format = "slack"'
        )
    event = sample_event()
    fields = alert_fields(event, settings.runbook)
    failed = 0
    with httpx.Client() as client:
        for webhook in settings.webhooks:
            delivery = post(webhook, body(webhook, fields), event_id=event.event_id, client=client)
            if delivery.ok:
                print(f"ok      {printable(webhook.name)} ({webhook.format}): the sample alert was delivered")
            else:
                failed += 1
                print(f"FAILED  {printable(webhook.name)} ({webhook.format}): {printable(delivery.error)}")
    return 1 if failed else 0


# --- output ---------------------------------------------------------------------------------------


def _print_result(result: Any, args: argparse.Namespace, config: Any, *, watching: bool,
                  fatigue_told: dict[str, int] | None = None) -> int:
    """Print one run's alerts and notes; the exit status it deserves (1: a rule or a webhook failed).

    ``fatigue_told`` (a watcher's): the fatigue counts already printed, so a standing count is said once.
    """
    from otel_margin.analysis.alerts.delivery import alert_fields
    from otel_margin.analysis.alerts.events import FATIGUE_PER_WEEK
    from otel_margin.display import printable_lines

    if result.no_data:
        note = (f"no LLM calls recorded yet in database {config.database!r} at {config.endpoint}: no rule was "
                "evaluated and nothing was created. Alerts run once an instrumented application exports calls.")
        if args.format == "json":
            print("[]", flush=True)
            print(f"otel-margin alerts: {note}", file=sys.stderr, flush=True)
        else:
            print(f"No data yet: {note}", flush=True)
        return 0
    runbook = result.settings.runbook
    rows = [alert_fields(event, runbook, status=status, weekly_count=result.weekly.get(event.rule, 0))
            for event, status in result.current]
    notes: list[str] = [failure.message for failure in result.failures]
    notes += [delivery.error for _, delivery in result.deliveries if not delivery.ok]
    if result.unrecorded:
        notes.append(result.unrecorded)
    fatigue = {rule: count for rule, count in result.weekly.items() if count > FATIGUE_PER_WEEK}
    if fatigue_told is not None:
        fatigue = {rule: count for rule, count in fatigue.items() if fatigue_told.get(rule) != count}
        fatigue_told.update(fatigue)
    if args.format == "json":
        print(json.dumps(rows, indent=None if watching else 2, default=str), flush=True)
    elif not watching or any(row["status"] == "new" for row in rows) or notes or result.deliveries:
        _print_table(rows, result)
    else:
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        print(f"{when}: {len(rows)} standing alert(s), nothing new", flush=True)
    for rule, count in sorted(fatigue.items()):
        notes.append(f"alert fatigue: rule {rule!r} fired {count} times in the last 7 days; more than "
                     f"{FATIGUE_PER_WEEK} a week means its thresholds are wrong: change them in the policy file "
                     "([alerts.thresholds], the floors), or its cooldown ([alerts] cooldown_hours)")
    for note in notes:
        print(f"otel-margin alerts: {printable_lines(note)}", file=sys.stderr, flush=True)
    failed = bool(result.failures) or any(not delivery.ok for _, delivery in result.deliveries)
    return 1 if failed else 0


_PIPE_WIDTH = 200
_STYLE = {"red": "red", "yellow": "yellow", "green": "green"}


def _print_table(rows: list[dict[str, Any]], result: Any) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from otel_margin.display import rich_text

    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(width=_PIPE_WIDTH)
    if not rows:
        console.print("No alerts: every rule that ran found no breach.")
    else:
        table = Table(title="Alerts", title_justify="left")
        for column in ("status", "zone", "rule", "feature", "customer", "value", "threshold", "trend", "driver",
                       "first responder", "response", "first seen"):
            table.add_column(column, justify="right" if column in ("value", "threshold") else "left")
        for row in rows:
            zone = Text(row["zone"], style=_STYLE.get(row["zone"], ""))
            table.add_row(row["status"], zone, rich_text(row["rule"]), rich_text(row["feature"]),
                          rich_text(row["customer"]), f"{row['value']:.6g}", f"{row['threshold']:.6g}",
                          rich_text(row["trend"]), rich_text(row["driver"]), rich_text(row["responder"]),
                          rich_text(row["response"]), row["first_seen"][:16].replace("T", " "))
        console.print(table)
    sent = [(event, delivery) for event, delivery in result.deliveries if delivery.ok]
    for event, delivery in sent:
        console.print(Text.assemble("sent ", rich_text(event.rule), " ", rich_text(event.feature), " to ",
                                    rich_text(delivery.destination)))
    if result.weekly:
        table = Table(title="Fired in the last 7 days (more than 3 a week: the thresholds are wrong)",
                      title_justify="left")
        table.add_column("rule")
        table.add_column("alerts", justify="right")
        for rule, count in sorted(result.weekly.items()):
            table.add_row(rich_text(rule), Text(str(count), style="red" if count > 3 else ""))
        console.print(table)


def _first_lines(error: Exception) -> str:
    from otel_margin.display import printable_lines

    return printable_lines(str(error) or type(error).__name__)


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set ``stop``: the run in progress finishes its step, then the watcher exits."""
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in handled}
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only: the caller stops it through `stop`
        return
    for number in handled:
        signal.signal(number, lambda *_: stop.set())
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
