"""``otel-margin revenue import FILE``: load subscription / invoice revenue (see docs/margin.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from otel_margin.display import printable
from otel_margin.analysis.revenue import RevenueFileError, import_revenue, parse_revenue_csv


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revenue import``."""
    parser = subparsers.add_parser("revenue", help="import subscription and invoice revenue")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    importer = actions.add_parser(
        "import", help="import a CSV: customer,period,amount,currency,tier[,feature] (all or nothing)"
    )
    importer.add_argument("file", type=Path, help="the CSV file")
    importer.add_argument("--database", help="database name (default: OTEL_EXPORTER_CLICKHOUSE_DATABASE)")
    importer.add_argument("--dry-run", action="store_true", help="check the file only; write nothing")
    importer.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    """Parse the whole file first; write only if every row is good."""
    return run_csv_import(args, parse_revenue_csv, RevenueFileError, import_revenue)


def run_csv_import(
    args: argparse.Namespace,
    parse: Callable[..., list[Any]],
    file_error: type[Exception],
    write: Callable[..., Any],
) -> int:
    """An all-or-nothing CSV import command (revenue, period costs): read and check every row of
    ``args.file`` with ``parse``, then (unless ``--dry-run``) ``write`` them in one session."""
    from otel_margin.cli import CommandError

    try:
        text = args.file.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise CommandError(f"cannot read {args.file}: {error.strerror}; check the path") from error
    except UnicodeDecodeError as error:
        raise CommandError(f"{args.file} is not UTF-8 (byte {error.start}); save it as UTF-8 CSV") from error
    try:
        rows = parse(text, source=args.file.name)
    except file_error as error:
        raise CommandError(str(error)) from error
    if args.dry_run:
        print(f"{printable(str(args.file))}: {len(rows)} rows are valid; nothing written (--dry-run)")
        return 0
    from otel_margin import schema
    from otel_margin.cli import storage_config
    from otel_margin.exporters.storage import StorageUnavailable, session

    config = storage_config(database=args.database)
    try:
        with session(config) as client:
            schema.apply_schema(client, database=config.database, ttl_days=config.ttl_days)
            result = write(client, rows, source=args.file.name, database=config.database)
    except StorageUnavailable as error:
        raise CommandError(str(error)) from error
    print(f"{printable(str(args.file))}: {result.new} new, {result.changed} changed, {result.unchanged} unchanged")
    return 0
