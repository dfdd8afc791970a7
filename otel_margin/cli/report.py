"""``otel-margin report``: the main margin views in the terminal, or as JSON for machines.

Reads through a short storage session, so it works beside a running service (chDB is held
only while the queries run). It only reads: a database without the schema is an error that
says how to create it, not something the report creates. ``--format json`` emits the same
numbers, Decimals as strings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from otel_margin import margin

_NO_SCHEMA_CODES = (60, 81)
"""ClickHouse's UNKNOWN_TABLE and UNKNOWN_DATABASE (and UNKNOWN_FUNCTION, 46, naming one of
the database's parameterized views)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report``."""
    parser = subparsers.add_parser("report", help="gross margin per feature, tier and customer, and the cost map")
    parser.add_argument("--since", type=int, default=30, metavar="DAYS", help="days back from today, UTC (default 30)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--feature", help="only this feature")
    parser.add_argument(
        "--allocate-by", choices=margin.ALLOCATE_BY, default="cost",
        help="how revenue without a feature is split across features (default cost)",
    )
    parser.add_argument("--database", help="database name (default: OTEL_EXPORTER_CLICKHOUSE_DATABASE)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Query the views in one session, then print them."""
    from otel_margin.cli import CommandError
    from otel_margin.exporters.storage import StorageConfig, StorageUnavailable, session

    if args.since < 1:
        raise CommandError(f"--since {args.since} must be at least 1 day")
    end = datetime.now(timezone.utc).date()
    start = end - timedelta(days=args.since - 1)
    config = StorageConfig.from_env(database=args.database)
    try:
        with session(config) as client:
            report = build_report(
                client, start=start, end=end, feature=args.feature, allocate_by=args.allocate_by,
                database=config.database,
            )
    except StorageUnavailable as error:
        raise CommandError(str(error)) from error
    except Exception as error:
        code = getattr(error, "code", None)
        if code not in _NO_SCHEMA_CODES and not (code == 46 and f"{config.database}." in str(error)):
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


def build_report(
    client: Any, *, start: date, end: date, feature: str | None = None, allocate_by: str = "cost",
    database: str = "otel_margin", top: int = 10,
) -> dict[str, Any]:
    """Every section of the report as rows (the one source of both output formats)."""
    common = {"start": start, "end": end, "feature": feature, "allocate_by": allocate_by, "database": database}
    return {
        "range": {"start": start, "end": end, "feature": feature or "", "allocate_by": allocate_by},
        "total": margin.margin_by(client, "all", **common),
        "features": margin.margin_by(client, "feature", **common),
        "tiers": margin.margin_by(client, "tier", **common),
        "cost_map": margin.cost_map(client, start=start, end=end, feature=feature, database=database),
        "negative_customers": margin.negative_margin_customers(client, limit=top, **common),
    }


def to_json(report: dict[str, Any]) -> str:
    """The report as JSON: Decimals and dates as strings, so no digit is lost."""
    return json.dumps(_plain(report), indent=2)


_PIPE_WIDTH = 160


def print_tables(report: dict[str, Any]) -> None:
    """The report as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(width=_PIPE_WIDTH)  # a pipe or a CI log: room for every column
    span = report["range"]
    console.print(f"[bold]Gross margin[/bold] {span['start']} .. {span['end']}"
                  + (f"  feature={span['feature']}" if span["feature"] else "")
                  + f"  (subscription revenue allocated by {span['allocate_by']})")
    for title, rows in (("Total", report["total"]), ("Per feature", report["features"]), ("Per tier", report["tiers"]),
                        ("Customers with negative margin", report["negative_customers"])):
        table = Table(title=title, title_justify="left")
        for column in ("key", "calls", "unpriced", "revenue $", "cost $", "margin $", "margin %"):
            table.add_column(column, justify="left" if column == "key" else "right")
        for row in rows:
            table.add_row(row.key or "(none)", str(row.calls), _unpriced(row.unpriced_calls), _usd(row.revenue_usd),
                          _usd(row.cost_usd), _usd(row.margin_usd), _pct(row.margin_pct))
        console.print(table)
    table = Table(title="Cost map (per priced request)", title_justify="left")
    for column in ("feature", "calls", "unpriced", "avg $", "P95 $", "input", "cache read", "cache write", "output", "other"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for row in report["cost_map"]:
        table.add_row(row.feature, str(row.calls), _unpriced(row.unpriced_calls), _usd(row.avg_cost_usd, 6),
                      _usd(row.p95_cost_usd, 6), _usd(row.avg_input_usd, 6), _usd(row.avg_cache_read_usd, 6),
                      _usd(row.avg_cache_write_usd, 6), _usd(row.avg_output_usd, 6), _usd(row.avg_other_usd, 6))
    console.print(table)
    if any(row.unpriced_calls for row in report["total"]):
        console.print("[yellow]Unpriced calls have no cost in these sums: margins above are upper bounds. "
                      "Add their models to the policy file's prices.[/yellow]")


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


def _usd(value: Decimal | None, places: int = 2) -> str:
    return "-" if value is None else f"{value:,.{places}f}"


def _pct(value: Decimal | None) -> str:
    if value is None:
        return "-"
    # No floors yet (they come with alerts): colour only the sign.
    style = "red" if value < 0 else "green"
    return f"[{style}]{value:.1f}%[/{style}]"


def _unpriced(count: int) -> str:
    return f"[yellow]{count}[/yellow]" if count else "0"
