"""The report's calendar period, margin waterfall and units of work (``otel-margin report``).

Kept apart from ``report.py`` (the command, its storage session and the margin tables) so each
reads in one sitting: this module adds the flags that choose the period and the ``--by`` level,
builds the waterfall and units sections from :mod:`otel_margin.analysis`, and prints them.
(A leading underscore: the command line discovers its sub-commands as this package's modules.)
"""

from __future__ import annotations

import argparse
from datetime import date, datetime, timezone
from typing import Any

from otel_margin.analysis import periods, units

BY = ("feature", "tier", "customer", "cohort", "model", "unit-kind")
"""The levels ``--by`` offers; the waterfall is also always shown in total."""

DEFAULT_DAYS = 30

_NOTES = {
    "model": "Per model: cost side only. A model's row is its calls (their inference and orchestration cost, and "
             "the usage revenue priced on them); subscription and outcome revenue, cost lines and period costs "
             "belong to no model (the JSON row with key ''), so no per-model margin is shown.",
    "unit-kind": "Per unit kind: calls and costs outside any unit are under '(no unit)'; subscription revenue and "
                 "period costs are allocated by the same rule as to features (--allocate-by).",
}
_EMPTY_KEYS = {"model": "(no model)", "unit-kind": "(no unit)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The period flags (one of ``--month``, ``--from``/``--to``, ``--since``), ``--by`` and
    ``--grace-minutes``."""
    period = parser.add_argument_group(
        "period (one of; default the last 30 days)",
        "A monthly subscription is spread over its month's days, so --month shows it whole; the "
        "month still running is shown up to today and labelled partial.",
    )
    period.add_argument("--month", type=_month, metavar="YYYY-MM", help="a calendar month, e.g. 2026-12")
    period.add_argument("--from", dest="from_day", type=_day, metavar="YYYY-MM-DD",
                        help="first day, inclusive (with --to; alone: up to today)")
    period.add_argument("--to", dest="to_day", type=_day, metavar="YYYY-MM-DD", help="last day, inclusive")
    period.add_argument("--since", "--days", dest="since", type=int, metavar="DAYS",
                        help=f"days back from today, UTC, today included (default {DEFAULT_DAYS})")
    parser.add_argument(
        "--by", choices=BY, default="feature",
        help="the level of the margin waterfall shown beside the total (default feature); customer lists "
        "every customer",
    )
    parser.add_argument(
        "--grace-minutes", type=_grace, default=units.DEFAULT_GRACE_MINUTES, metavar="MINUTES",
        help="a unit with calls and no outcome counts as abandoned this long after its last activity "
        f"(default {units.DEFAULT_GRACE_MINUTES})",
    )


def resolve_period(args: argparse.Namespace, today: date | None = None) -> periods.Period:
    """The period the flags ask for, or a :class:`~otel_margin.cli.CommandError` naming the flag."""
    from otel_margin.cli import CommandError

    today = today or datetime.now(timezone.utc).date()
    chosen = [flag for flag, value in (("--month", args.month), ("--from/--to", args.from_day or args.to_day),
                                       ("--since", args.since is not None)) if value]
    if len(chosen) > 1:
        raise CommandError(f"{' and '.join(chosen)} both choose the period; give only one of them")
    try:
        if args.month:
            return periods.month(args.month, today=today)
        if args.to_day and not args.from_day:
            raise CommandError(f"--to {args.to_day} needs --from; add --from YYYY-MM-DD, the first day")
        if args.from_day:
            return periods.between(args.from_day, args.to_day or today, today=today)
        return periods.last_days(DEFAULT_DAYS if args.since is None else args.since, today=today)
    except ValueError as error:
        flag = chosen[0] if chosen else "--since"
        raise CommandError(f"{flag}: {error}") from error


def build_sections(
    client: Any, *, start: date, end: date, by: str, feature: str | None, allocate_by: str, grace_minutes: int,
    database: str,
) -> dict[str, Any]:
    """The waterfall (total and per ``by``) and the units sections, as rows."""
    from otel_margin.analysis.waterfall import waterfall

    common = {"start": start, "end": end, "feature": feature, "database": database}
    groups = units.outcome_groups(client, grace_minutes=grace_minutes, **common)
    return {
        "waterfall": {
            "by": by,
            "total": waterfall(client, level="all", allocate_by=allocate_by, **common),
            "rows": waterfall(client, level=by.replace("-", "_"), allocate_by=allocate_by, **common),
            "note": _NOTES.get(by, ""),
        },
        "units": {
            "grace_minutes": grace_minutes,
            "summary": units.unit_summary(groups),
            "cost_per_unit": units.cost_per_unit(client, grace_minutes=grace_minutes, **common),
            "outcomes": units.margin_per_outcome(groups),
        },
    }


def empty_sections(by: str, grace_minutes: int) -> dict[str, Any]:
    """The same keys with no rows (a database nothing was exported to yet)."""
    return {"waterfall": {"by": by, "total": [], "rows": [], "note": _NOTES.get(by, "")},
            "units": {"grace_minutes": grace_minutes, "summary": None, "cost_per_unit": [], "outcomes": []}}


_WATERFALL = ("revenue_usd", "inference_usd", "orchestration_usd", "infrastructure_usd", "support_usd",
              "gross_margin_usd")


def print_sections(console: Any, report: dict[str, Any]) -> None:
    """The waterfall tables, cost per unit, margin per outcome and the units summary."""
    from rich.table import Table

    from otel_margin.cli.report import _pct, usd_text
    from otel_margin.display import rich_text

    flow = report["waterfall"]
    empty_key = _EMPTY_KEYS.get(flow["by"], "(none)")
    sections = [("Margin waterfall: total", flow["total"])]
    if flow["by"] != "model":
        sections.append((f"Margin waterfall per {flow['by'].replace('-', ' ')}", flow["rows"]))
    for title, rows in sections:
        table = Table(title=title, title_justify="left",
                      caption="revenue − inference − orchestration − infrastructure − support = gross margin")
        for column in ("key", "calls", "revenue $", "inference $", "orchestration $", "infrastructure $",
                       "support $", "margin $", "margin %"):
            table.add_column(column, justify="left" if column == "key" else "right")
        for row in rows:
            table.add_row(rich_text(row.key) if row.key else empty_key, str(row.calls),
                          *(usd_text(getattr(row, name)) for name in _WATERFALL), _pct(row.gross_margin_pct))
        console.print(table)
    if flow["by"] == "model":
        _print_models(console, flow["rows"], usd_text, rich_text)
    if flow["note"]:
        console.print(f"  {flow['note']}", markup=False, highlight=False)
    _print_units(console, report["units"], usd_text, _pct, rich_text)


def _print_models(console: Any, rows: list[Any], usd_text: Any, rich_text: Any) -> None:
    """Cost per model: the calls' side of the waterfall rows (revenue other than usage is no model's)."""
    from rich.table import Table

    table = Table(title="Cost per model", title_justify="left")
    for column in ("model", "calls", "errors", "unpriced", "inference $", "orchestration $", "usage revenue $"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        if row.key:
            table.add_row(rich_text(row.key), str(row.calls), str(row.error_calls), str(row.unpriced_calls),
                          usd_text(row.inference_usd), usd_text(row.orchestration_usd), usd_text(row.usage_revenue_usd))
    console.print(table)


def _print_units(console: Any, section: dict[str, Any], usd_text: Any, pct: Any, rich_text: Any) -> None:
    from rich.table import Table

    summary = section["summary"]
    if summary is None or not summary.units:
        console.print("Units of work: none in this period.")
        return
    table = Table(title="Cost per unit of work", title_justify="left")
    for column in ("unit kind", "feature", "units", "calls", "avg $", "P50 $", "P95 $", "max $"):
        table.add_column(column, justify="left" if column in ("unit kind", "feature") else "right")
    for row in section["cost_per_unit"]:
        table.add_row(rich_text(row.unit_kind) if row.unit_kind else "(no unit: one call)", rich_text(row.feature),
                      str(row.units), str(row.calls), usd_text(row.avg_cost_usd), usd_text(row.p50_cost_usd),
                      usd_text(row.p95_cost_usd), usd_text(row.max_cost_usd))
    console.print(table)
    table = Table(title="Margin per outcome", title_justify="left")
    for column in ("feature", "outcome", "units", "revenue $", "cost $", "margin $", "margin %", "revenue/unit $",
                   "cost/unit $"):
        table.add_column(column, justify="left" if column in ("feature", "outcome") else "right")
    for row in section["outcomes"]:
        outcome = rich_text(row.outcome) if row.recorded else f"{row.outcome} (no outcome)"
        table.add_row(rich_text(row.feature), outcome, str(row.units), usd_text(row.revenue_usd),
                      usd_text(row.cost_usd), usd_text(row.margin_usd), pct(row.margin_pct),
                      usd_text(row.revenue_per_unit_usd), usd_text(row.cost_per_unit_usd))
    console.print(table)
    console.print(
        f"Units: {summary.units}, {summary.with_outcome} with an outcome. Without one: "
        f"{summary.abandoned_units} abandoned (cost ${usd_text(summary.abandoned_cost_usd)}), "
        f"{summary.open_units} open (cost ${usd_text(summary.open_cost_usd)}; abandoned after "
        f"{section['grace_minutes']} minutes without activity), and {summary.outside_units} calls outside any unit "
        f"(cost ${usd_text(summary.outside_cost_usd)}). Failed: {summary.failed_units} units cost "
        f"${usd_text(summary.failed_cost_usd)}.",
        markup=False, highlight=False,
    )


def _month(text: str) -> date:
    try:
        return periods.parse_month(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _day(text: str) -> date:
    try:
        return periods.parse_day(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _grace(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or value >= 2**32:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of minutes from 0; use e.g. 60")
    return value
