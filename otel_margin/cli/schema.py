"""``otel-margin schema apply|print``: create the margin tables, or print their DDL for a DBA."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from otel_margin import schema
from otel_margin.display import printable


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``schema`` with its ``apply`` and ``print`` actions."""
    parser = subparsers.add_parser("schema", help="apply or print the margin schema (ClickHouse DDL)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    apply_parser = actions.add_parser("apply", help="create missing tables and views at the configured endpoint")
    apply_parser.add_argument("--database", help="database name (default: OTEL_EXPORTER_CLICKHOUSE_DATABASE)")
    apply_parser.set_defaults(func=apply)
    backfill_parser = actions.add_parser(
        "backfill", help="fill a rollup made by an upgrade with the rows stored before it",
        description="Fill ROLLUP with the calls (and cost lines) stored before its materialized views were "
                    "created: once, after `schema apply` added the rollup to a database that already held "
                    "rows. It runs the views' own SELECT over the older rows, so the rollup then reads as "
                    "if it had always existed. Single node (chDB or one server); on a cluster, see "
                    "docs/schema.md.",
    )
    backfill_parser.add_argument("rollup", choices=sorted(schema.ROLLUP_VIEWS), metavar="ROLLUP",
                                 help="one of: " + ", ".join(sorted(schema.ROLLUP_VIEWS)))
    backfill_parser.add_argument("--before", type=_moment, metavar="TIME",
                                 help="fill rows older than this (ISO 8601; UTC unless it says otherwise); "
                                      "default: when the rollup's views were created")
    backfill_parser.add_argument("--database", help="database name (default: OTEL_EXPORTER_CLICKHOUSE_DATABASE)")
    backfill_parser.set_defaults(func=backfill)
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
            existing = _tables(client, config.database)
            schema.apply_schema(client, database=config.database, ttl_days=config.ttl_days)
            added = [rollup for rollup in schema.ROLLUP_VIEWS if existing and rollup not in existing]
            older = client.command(
                f"SELECT count() FROM {schema.quote_identifier(config.database)}.llm_calls") if added else 0
    except StorageUnavailable as error:
        raise CommandError(str(error)) from error
    print(f"schema applied to database {config.database!r} at {printable(config.endpoint)}")
    for rollup in added if older else ():
        print(f"  {rollup} is new: it holds none of the {older:,} call{'s' * (older != 1)} stored before it; "
              f"fill it once with `otel-margin schema backfill {rollup}`")
    return 0


def _tables(client: Any, database: str) -> set[str]:
    return {row[0] for row in client.query(
        "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": database}).result_rows}


def backfill(args: argparse.Namespace) -> int:
    """Fill a rollup with the rows stored before its views, refusing to count any of them twice."""
    from otel_margin.exporters.storage import StorageUnavailable, session

    from otel_margin.cli import CommandError, storage_config

    config = storage_config(database=args.database)
    try:
        with session(config) as client:
            database = {"db": config.database}
            columns = [row[0] for row in client.query(
                "SELECT name FROM system.columns WHERE database = {db:String} AND table = {table:String} "
                "ORDER BY position", parameters={**database, "table": args.rollup}).result_rows]
            plan = schema.backfill(args.rollup, columns, database=config.database)
            created = dict(client.query(
                "SELECT name, toUnixTimestamp(metadata_modification_time) FROM system.tables "
                "WHERE database = {db:String} AND name IN {views:Array(String)}",
                parameters={**database, "views": list(plan.views)}).result_rows)
            if not columns or len(created) < len(plan.views):
                raise CommandError(f"{args.rollup}: the rollup or its views are missing in database "
                                   f"{config.database!r}; run `otel-margin schema apply` first")
            before = args.before or datetime.fromtimestamp(min(created.values()), timezone.utc)
            bound = {"before": before}
            already = client.query(plan.rows_before, parameters=bound).result_rows[0][0]
            if already:
                raise CommandError(
                    f"{args.rollup} already holds {already:,} rows from before {_utc(before)}: it was filled "
                    "already, or made before those rows; filling it again would count them twice. "
                    "Give an earlier --before, or leave it as it is")
            for insert in plan.inserts:
                client.command(insert, parameters=bound)
            filled = client.query(plan.rows_before, parameters=bound).result_rows[0][0]
    except StorageUnavailable as error:
        raise CommandError(str(error)) from error
    print(f"filled {args.rollup} with the rows stored before {_utc(before)}: {filled:,} rows from before that "
          f"{'hour' if args.rollup.endswith('hourly') else 'day'} in database {config.database!r}")
    return 0


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; give ISO 8601, e.g. 2026-12-07T11:00:00Z") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


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
