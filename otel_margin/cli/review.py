"""``otel-margin review weekly|quarterly``: the fixed-agenda margin reviews, as Markdown (and HTML).

Reads through a short storage session like ``otel-margin report`` (so it works beside a running
service), with the policy file's floors, exceptions, prices and ``[reviews]`` settings. Markdown
goes to standard output or ``--output``; ``--html`` also writes the page with its charts.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from otel_margin.analysis.reviews import periods


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``review weekly`` and ``review quarterly``."""
    parser = subparsers.add_parser("review", help="the weekly or quarterly margin review (Markdown, HTML)")
    kinds = parser.add_subparsers(dest="review", metavar="KIND", required=True)
    weekly = kinds.add_parser("weekly", help="zones, alerts, cost trends, upcoming changes, the improvement backlog")
    weekly.add_argument("--week", type=_parsed(periods.iso_week), metavar="YYYY-Www",
                        help="ISO week, e.g. 2026-W49 (default: the last complete week, UTC)")
    quarterly = kinds.add_parser("quarterly", help="floors, structural gaps, 12-month trends, guardrails, self-hosting")
    quarterly.add_argument("--quarter", type=_parsed(periods.quarter), metavar="YYYY-Qn",
                           help="calendar quarter, e.g. 2026-Q4 (default: the last complete quarter, UTC)")
    for kind in (weekly, quarterly):
        kind.add_argument("--output", metavar="FILE.md", help="write the Markdown here (default: standard output)")
        kind.add_argument("--html", metavar="FILE.html", help="also write a self-contained HTML page with the charts")
        kind.add_argument("--database", help="database name (default: OTEL_EXPORTER_CLICKHOUSE_DATABASE)")
        kind.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the review in one storage session, then write it."""
    from otel_margin.analysis.reviews.html import PlotlyMissing, render_html
    from otel_margin.analysis.reviews.quarterly import quarterly_review
    from otel_margin.analysis.reviews.render import markdown
    from otel_margin.analysis.reviews.settings import ReviewSettings
    from otel_margin.analysis.reviews.weekly import weekly_review
    from otel_margin.cli import CommandError, storage_config
    from otel_margin.exporters.catchup import insert_spooled_rows
    from otel_margin.exporters.storage import StorageUnavailable, session
    from otel_margin.policy import PolicyError, load_policy
    from otel_margin.prices import PriceCatalog

    try:
        policy = load_policy()
    except PolicyError as error:
        raise CommandError(str(error)) from error
    settings = ReviewSettings.from_policy(policy)
    catalog = PriceCatalog(policy, log_unpriced=False)
    today = datetime.now(timezone.utc).date()
    config = storage_config(database=args.database)
    try:
        with session(config) as client:
            insert_spooled_rows(client, config)  # embedded: what the service spooled so far
            if not _has_calls(client, config.database):
                raise CommandError(
                    f"no LLM calls recorded yet in database {config.database!r} at {config.endpoint}: nothing to "
                    "review. Calls appear once an instrumented application exports them; `otel-margin demo` "
                    "writes sample data.")
            if args.review == "weekly":
                period = args.week or periods.last_complete_week(today)
                review = weekly_review(client, period, policy=policy, catalog=catalog, settings=settings,
                                       database=config.database)
            else:
                period = args.quarter or periods.last_complete_quarter(today)
                review = quarterly_review(client, period, policy=policy, catalog=catalog, settings=settings,
                                          database=config.database)
    except StorageUnavailable as error:
        raise CommandError(str(error)) from error
    except Exception as error:
        if getattr(error, "code", None) not in _SCHEMA_CODES:
            raise
        # A review only reads: an older database lacks what it reads (request_hash, a view).
        raise CommandError(
            f"database {config.database!r} at {config.endpoint} lacks part of the otel-margin schema "
            f"({str(error).splitlines()[0]}). Create what is missing with `otel-margin schema apply`."
        ) from error
    text = markdown(review)
    page = None
    if args.html:
        try:
            page = render_html(review)
        except PlotlyMissing as error:
            raise CommandError(str(error)) from error
    if args.output:
        _write(args.output, text, "--output")
    else:
        sys.stdout.write(text)
    if page is not None:
        _write(args.html, page, "--html")
    return 0


_SCHEMA_CODES = (46, 47, 60, 81)
"""ClickHouse's UNKNOWN_FUNCTION (a parameterised view), UNKNOWN_IDENTIFIER (a column added by an
upgrade), UNKNOWN_TABLE and UNKNOWN_DATABASE."""


def _has_calls(client: Any, database: str) -> bool:
    return bool(client.query(
        "SELECT count() FROM system.tables WHERE database = {database:String} AND name = 'llm_calls'",
        parameters={"database": database},
    ).result_rows[0][0])


def _write(path: str, text: str, flag: str) -> None:
    from otel_margin.cli import CommandError

    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as error:
        raise CommandError(f"{flag} {path}: cannot write it ({error.strerror or error}); choose a writable path") from error


def _parsed(parse: Any) -> Any:
    """An argparse type from a parser raising ValueError (argparse shows the message under the flag)."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = parse.__name__
    return convert
