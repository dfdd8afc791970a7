"""``otel-margin costs import FILE``: load fixed costs of goods of a period (see docs/margin.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``costs import``."""
    parser = subparsers.add_parser("costs", help="import fixed costs of goods of a period (GPU hosting, ...)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    importer = actions.add_parser(
        "import", help="import a CSV: period,amount,category[,feature][,customer][,tier] (all or nothing)"
    )
    importer.add_argument("file", type=Path, help="the CSV file")
    importer.add_argument("--database", help="database name (default: OTEL_EXPORTER_CLICKHOUSE_DATABASE)")
    importer.add_argument("--dry-run", action="store_true", help="check the file only; write nothing")
    importer.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    """Parse the whole file first; write only if every row is good."""
    from otel_margin.cli.revenue import run_csv_import
    from otel_margin.analysis.period_costs import CostFileError, import_period_costs, parse_costs_csv

    return run_csv_import(args, parse_costs_csv, CostFileError, import_period_costs)
