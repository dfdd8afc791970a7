"""``otel-margin schema apply|print``: create the margin tables, or print their DDL for a DBA."""

from __future__ import annotations

import argparse

from otel_margin import schema
from otel_margin.display import printable


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``schema`` with its ``apply`` and ``print`` actions."""
    parser = subparsers.add_parser("schema", help="apply or print the margin schema (ClickHouse DDL)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    apply_parser = actions.add_parser("apply", help="create missing tables and views at the configured endpoint")
    apply_parser.add_argument("--database", help="database name (default: OTEL_EXPORTER_CLICKHOUSE_DATABASE)")
    apply_parser.set_defaults(func=apply)
    print_parser = actions.add_parser("print", help="print the DDL, one statement after another")
    print_parser.add_argument("--database", default=schema.DEFAULT_DATABASE, help="database name")
    print_parser.add_argument("--cluster", help="render ON CLUSTER with Replicated* and Distributed tables")
    print_parser.add_argument("--ttl-days", type=int, help=f"raw-row TTL in days (default {schema.DEFAULT_TTL_DAYS}; 0: none)")
    print_parser.add_argument(
        "--collector", action="store_true", help="also print the view that reads the OTel Collector's otel_traces"
    )
    print_parser.add_argument("--traces-database", default="otel", help="the collector's database (default otel)")
    print_parser.set_defaults(func=print_schema)


def apply(args: argparse.Namespace) -> int:
    """Apply the schema through a short storage session."""
    from otel_margin.exporters.storage import StorageUnavailable, session

    from otel_margin.cli import CommandError, storage_config

    config = storage_config(database=args.database)
    try:
        with session(config) as client:
            schema.apply_schema(client, database=config.database, ttl_days=config.ttl_days)
    except StorageUnavailable as error:
        raise CommandError(str(error)) from error
    print(f"schema applied to database {config.database!r} at {printable(config.endpoint)}")
    return 0


def print_schema(args: argparse.Namespace) -> int:
    """Print every statement, ``;``-terminated, ready for clickhouse-client --multiquery."""
    from otel_margin.cli import CommandError

    try:
        statements = schema.statements(database=args.database, cluster=args.cluster, ttl_days=args.ttl_days)
        if args.collector:
            statements += schema.collector_statements(
                database=args.database, traces_database=args.traces_database, cluster=args.cluster
            )
    except ValueError as error:
        raise CommandError(str(error)) from error
    print(render_script(statements), end="")
    return 0


def render_script(statements: list[str]) -> str:
    """Statements as one SQL script."""
    return "".join(f"{statement};\n\n" for statement in statements)
