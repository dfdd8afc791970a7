"""``otel-margin report``: the main margin views in the terminal, or as JSON for machines.

Reads through a short storage session, so it works beside a running service (chDB is held
only while the queries run). In embedded mode it first inserts what the service's exporters
spooled before it asked (:mod:`otel_margin.exporters.catchup`), so it shows every call spooled
so far, from the service's first second. A database where nothing was exported yet is reported
as "no data yet"; one that lacks part of the schema (an upgrade) is an error that says how to
create it, not something the report creates. ``--format json`` emits the same numbers,
Decimals as strings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from datetime import date
from decimal import Decimal
from typing import Any

from otel_margin.analysis import margin
from otel_margin.analysis import zones
from otel_margin.cli import _report_sections
from otel_margin.display import printable
from otel_margin.policy import load_policy

_NO_SCHEMA_CODES = (60, 81)
"""ClickHouse's UNKNOWN_TABLE and UNKNOWN_DATABASE (and UNKNOWN_FUNCTION, 46, naming one of
the database's parameterized views)."""
_UNKNOWN_IDENTIFIER = 47
"""A column the queries read that an older ``margin_daily`` view lacks (``error_calls``)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report``."""
    parser = subparsers.add_parser(
        "report", help="gross margin per feature, tier and customer, the margin waterfall, units of work and the cost map",
        description="Gross margin over a period: the waterfall (revenue - inference - orchestration - infrastructure "
        "- support = gross margin) in total and per --by level, margin per feature and tier, customers losing money, "
        "cost per unit of work and margin per outcome, the cost map and the guardrails.",
    )
    _report_sections.add_arguments(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--feature", help="only this feature")
    parser.add_argument(
        "--allocate-by", choices=margin.ALLOCATE_BY, default=margin.DEFAULT_ALLOCATE_BY,
        help="how subscription revenue without a feature is split across features: by inference calls (the "
        f"default, {margin.DEFAULT_ALLOCATE_BY}), cost, tokens or value (the policy's value weights); docs/margin.md",
    )
    parser.add_argument("--database", help="database name (default: OTEL_EXPORTER_CLICKHOUSE_DATABASE)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Query the views in one session, then print them."""
    from otel_margin.cli import CommandError, storage_config
    from otel_margin.exporters.catchup import insert_spooled_rows
    from otel_margin.exporters.storage import StorageUnavailable, session

    period = _report_sections.resolve_period(args)
    start, end = period.start, period.end
    config = storage_config(database=args.database)
    try:
        with session(config) as client:
            # Embedded: insert what the exporters spooled before we asked (and the schema with it).
            insert_spooled_rows(client, config)
            if not _has_calls(client, config.database):
                _print_no_data_yet(args, config, start, end, period)
                return 0
            report = build_report(
                client, start=start, end=end, feature=args.feature, allocate_by=args.allocate_by,
                database=config.database, by=args.by, grace_minutes=args.grace_minutes,
            )
            report["period"] = period
    except StorageUnavailable as error:
        raise CommandError(str(error)) from error
    except Exception as error:
        code = getattr(error, "code", None)
        if code not in _NO_SCHEMA_CODES and not (code == 46 and f"{config.database}." in str(error)) and not (
                code == _UNKNOWN_IDENTIFIER and f"{config.database}.margin_daily" in str(error)):
            raise
        # A report only reads: it creates nothing, so it works with read-only credentials.
        raise CommandError(
            f"database {config.database!r} at {config.endpoint} lacks the otel-margin schema, or part of it "
            f"after an upgrade ({str(error).splitlines()[0]}). Create what is missing with `otel-margin "
            "schema apply` (the exporter also does when it first writes), or try everything on demo data "
            "with `otel-margin demo`."
        ) from error
    if args.format == "json":
        print(to_json(report))
    else:
        print_tables(report)
    return 0


def _has_calls(client: Any, database: str) -> bool:
    """The calls table exists: some exporter (or ``schema apply``) has written to ``database``."""
    return bool(client.query(
        "SELECT count() FROM system.tables WHERE database = {database:String} AND name = 'llm_calls'",
        parameters={"database": database},
    ).result_rows[0][0])


def _print_no_data_yet(args: argparse.Namespace, config: Any, start: date, end: date, period: Any) -> None:
    """Nothing written yet (a service starting, or none running): an empty report, and why."""
    note = (f"no LLM calls recorded yet in database {config.database!r} at {config.endpoint}: nothing has "
            "been exported there (the exporter creates the schema with its first rows). Calls appear once an "
            "instrumented application exports them; `otel-margin demo` shows a report on sample data.")
    if args.format == "json":
        empty = {"range": {"start": start, "end": end, "feature": args.feature or "", "allocate_by": args.allocate_by},
                 "total": [], "features": [], "tiers": [], "cost_map": [], "negative_customers": [],
                 "guardrails": [], "zones": {section: [] for section in zones.REPORT_LEVELS}, "period": period,
                 **_report_sections.empty_sections(args.by, args.grace_minutes)}
        print(to_json(empty))
        print(f"otel-margin report: {note}", file=sys.stderr)
    else:
        print(f"No data yet: {note}")


def build_report(
    client: Any, *, start: date, end: date, feature: str | None = None, allocate_by: str = margin.DEFAULT_ALLOCATE_BY,
    database: str = "otel_margin", top: int = 10, by: str = "feature",
    grace_minutes: int = _report_sections.units.DEFAULT_GRACE_MINUTES, policy: Any = None,
) -> dict[str, Any]:
    """Every section of the report as rows (the one source of both output formats).

    ``policy`` gives the floors the zones compare with; ``None`` reads the policy file.
    """
    common = {"start": start, "end": end, "feature": feature, "allocate_by": allocate_by, "database": database}
    report = {
        "range": {"start": start, "end": end, "feature": feature or "", "allocate_by": allocate_by},
        "total": margin.margin_by(client, "all", **common),
        "features": margin.margin_by(client, "feature", **common),
        "tiers": margin.margin_by(client, "tier", **common),
        "cost_map": margin.cost_map(client, start=start, end=end, feature=feature, database=database),
        "negative_customers": margin.negative_margin_customers(client, limit=top, **common),
        "guardrails": margin.guardrails(client, start=start, end=end, feature=feature, database=database),
        **_report_sections.build_sections(client, start=start, end=end, by=by, feature=feature,
                                          allocate_by=allocate_by, grace_minutes=grace_minutes, database=database),
    }
    # Green / yellow / red against each feature's floor, exceptions as of the range's last day.
    report["zones"] = zones.report_zones(report, policy if policy is not None else load_policy(), today=end,
                                         feature=feature)
    return report


def to_json(report: dict[str, Any]) -> str:
    """The report as JSON: Decimals and dates as strings, so no digit is lost."""
    return json.dumps(_plain(report), indent=2)


_PIPE_WIDTH = 160


def print_tables(report: dict[str, Any]) -> None:
    """The report as rich tables."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from otel_margin.display import rich_text

    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(width=_PIPE_WIDTH)  # a pipe or a CI log: room for every column
    span = report["range"]
    # Names come from outside (baggage, --feature): shown as printable text, never as markup.
    period = report.get("period")
    header = Text.assemble(("Gross margin", "bold"), f" {span['start']} .. {span['end']}")
    if period and period.label != f"{span['start']} .. {span['end']}":
        header.append(f" ({period.label})")
    if span["feature"]:
        header.append_text(Text("  feature=") + rich_text(span["feature"]))
    header.append(f"  (subscription revenue allocated by {span['allocate_by']})")
    console.print(header)
    for title, rows in (("Total", report["total"]), ("Per feature", report["features"]), ("Per tier", report["tiers"]),
                        ("Customers with negative margin", report["negative_customers"])):
        table = Table(title=title, title_justify="left")
        zone_of = {info.key: info for info in report.get("zones", {}).get(_ZONE_SECTIONS[title], [])}
        for column in ("key", "calls", "errors", "unpriced", "revenue $", "cost $", "margin $", "margin %", "zone"):
            table.add_column(column, justify="left" if column in ("key", "zone") else "right")
        for row in rows:
            table.add_row(rich_text(row.key) if row.key else "(none)", str(row.calls), _flagged(row.error_calls, "red"),
                          _flagged(row.unpriced_calls, "yellow"), _usd(row.revenue_usd), _usd(row.cost_usd),
                          _usd(row.margin_usd), _pct(row.margin_pct), _zone(zone_of.get(row.key)))
        console.print(table)
    table = Table(title="Cost map (per priced request)", title_justify="left")
    for column in ("feature", "calls", "unpriced", "avg $", "P95 $", "input", "cache read", "cache write", "output", "other"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for row in report["cost_map"]:
        table.add_row(rich_text(row.feature), str(row.calls), _flagged(row.unpriced_calls, "yellow"),
                      _usd(row.avg_cost_usd), _usd(row.p95_cost_usd), _usd(row.avg_input_usd),
                      _usd(row.avg_cache_read_usd), _usd(row.avg_cache_write_usd), _usd(row.avg_output_usd),
                      _usd(row.avg_other_usd))
    console.print(table)
    _print_guardrails(console, report["guardrails"])
    _report_sections.print_sections(console, report)
    if any(row.unpriced_calls for row in report["total"]):
        console.print("[yellow]Unpriced calls have no cost in these sums: margins above are upper bounds. "
                      "Add their models to the policy file's prices.[/yellow]")
    if any(row.error_calls for row in report["total"]):
        console.print("[red]Errors are failed calls: one the provider reported no usage for costs nothing and "
                      "books no usage revenue.[/red]")


_ZONE_SECTIONS = {"Total": "total", "Per feature": "features", "Per tier": "tiers",
                  "Customers with negative margin": "negative_customers"}


def _zone(info: Any) -> Any:
    """``green`` / ``yellow`` / ``red`` in its colour, and the floor; an exception says whose."""
    from rich.text import Text

    if info is None or info.zone is None:
        return "-"
    text = Text(info.zone, style=info.zone)
    text.append(f" (floor {info.floor_pct}%)")
    if info.exception_owner is not None:
        text.append(f", exception until {info.exception_review_date}: ")
        text.append(printable(info.exception_owner))
    return text


def _print_guardrails(console: Any, rows: list[Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from otel_margin.display import rich_text

    if not rows:
        console.print("Guardrails: none acted in this range (the cache, routing and limits report here once configured).")
        return
    table = Table(title="Guardrails", title_justify="left")
    for column in ("feature", "cache lookups", "exact hits", "semantic hits", "hit rate", "cache saved $",
                   "cache cost $", "cache net $", "routed", "route saved $", "capped", "blocked"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for row in rows:
        rate = "-" if row.hit_rate is None else f"{row.hit_rate * 100:.1f}%"
        table.add_row(rich_text(row.feature), str(row.cache_lookups), str(row.exact_hits), str(row.semantic_hits), rate,
                      _usd(row.cache_saved_usd), _usd(row.cache_cost_usd), _usd(row.cache_net_saved_usd),
                      str(row.routed_calls), _usd(row.route_saved_usd),
                      str(row.capped_calls), str(row.blocked_calls))
    console.print(table)
    for row in rows:
        if row.cache_hint:
            console.print(Text.assemble("  ", rich_text(row.feature), f": {row.cache_hint}"))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return value


_SIGNIFICANT_DIGITS = 3
"""Digits an amount below 1 keeps: a small workload's $0.000412 must not read 0.00."""
_MAX_PLACES = 12
"""The stored scale (``Decimal(38, 12)``): digits past it would be made up."""
_HALF_STORED_UNIT = Decimal(5).scaleb(-_MAX_PLACES - 1)


def usd_text(value: Decimal | None) -> str:
    """Dollars to the cent from 1 up (``1,234.57``); below, three significant digits (``0.000412``)."""
    return "-" if value is None else _significant(value, whole_places=2, sep=",")


_usd = usd_text


def _pct(value: Decimal | None) -> str:
    if value is None:
        return "-"
    # The sign's colour; the zone column compares with the feature's floor.
    text = _significant(value, whole_places=1, digits=2)
    style = "red" if text.startswith("-") else "green"
    return f"[{style}]{text}%[/{style}]"


def _significant(value: Decimal, *, whole_places: int, sep: str = "", digits: int = _SIGNIFICANT_DIGITS) -> str:
    """``value`` with ``whole_places`` decimals when it is 1 or more, else with its first
    significant digits; never ``-0.00`` (zero is ``0.00``, a small loss keeps its digits)."""
    if abs(value) <= _HALF_STORED_UNIT:  # rounds to 0 at the stored scale (half-even)
        return f"{Decimal(0):.{whole_places}f}"
    if abs(value) >= 1:
        return f"{value:{sep}.{whole_places}f}"
    places = min(max(whole_places, digits - 1 - value.adjusted()), _MAX_PLACES)
    return f"{value:.{places}f}"


def _flagged(count: int, style: str) -> str:
    return f"[{style}]{count}[/{style}]" if count else "0"
