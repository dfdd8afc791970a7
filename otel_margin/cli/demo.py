"""``otel-margin demo``: a realistic workload through the real SDKs into the margin store."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


DEMO_DATABASE = "otel_margin_demo"
"""The demo's own database at the configured endpoint: emptying it never touches real data."""


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="run a realistic LLM workload against a local stand-in and print cost and margin",
        description="Start a local stand-in for the OpenAI and Anthropic APIs, run a multi-feature, "
        "multi-customer workload through the real openai and anthropic SDKs instrumented by "
        "otel-margin, and print cost per feature and per customer. Nothing leaves this machine. "
        f"The spans go to the database {DEMO_DATABASE!r} at OTEL_EXPORTER_CLICKHOUSE_ENDPOINT "
        "(embedded chDB in ./.otel-margin by default), emptied first unless --keep.",
    )
    parser.add_argument("--requests", "--calls", dest="calls", type=_positive, default=400, metavar="N",
                        help="user requests the demo product serves (default: 400); most are one LLM call, "
                        "a support ticket takes one to three")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the workload (default: 7)")
    parser.add_argument(
        "--no-store", action="store_true",
        help="do not write to ClickHouse; print only the live cost tables",
    )
    parser.add_argument(
        "--keep", action="store_true",
        help=f"add this run to the demo database {DEMO_DATABASE!r} instead of emptying it first",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    from opentelemetry.sdk.trace import TracerProvider
    from rich.console import Console
    from rich.progress import Progress

    from otel_margin.demo import POLICY as DEMO_POLICY
    from otel_margin.pluginhost import configure
    from otel_margin.policy import load_policy
    from otel_margin.demo import CostTally, run_workload
    from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor
    from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
    from otel_margin.standin import StandInServer, anthropic_client, openai_client

    console = Console()
    config = None if args.no_store else _demo_store(keep=args.keep, console=console)
    tally = CostTally()
    provider = TracerProvider()
    provider.add_span_processor(tally)
    exporter = None if config is None else _clickhouse_exporter(provider, config)
    # The SDKs imported first, so instrumenting patches them (and loads the plugins) now and the
    # demo's policy configures the plugins after that.
    for sdk in ("openai", "anthropic"):
        importlib.import_module(sdk)
    with _demo_policy(DEMO_POLICY) as policy_file:
        instrumentors = (OpenAIMarginInstrumentor(), AnthropicMarginInstrumentor())
        for instrumentor in instrumentors:
            instrumentor.instrument(tracer_provider=provider)
        # Plugins load and configure once per process: a process that loaded them before (a second
        # demo in one test run) reconfigures them for this policy, with empty stores.
        configure(load_policy(policy_file))
        console.print(f"policy: {policy_file} (a resolved ticket earns $0.04, an analysed document $0.01; guardrails: the exact "
                      "response cache on the 'faq' feature, docs/cache.md)")
        try:
            with StandInServer() as server:
                console.print(f"stand-in for OpenAI and Anthropic listening on {server.base_url}")
                openai, anthropic = openai_client(server), anthropic_client(server)
                with Progress(console=console, transient=True) as progress:
                    task = progress.add_task("requests", total=args.calls)
                    for _feature in run_workload(openai, anthropic, calls=args.calls, seed=args.seed):
                        progress.advance(task)
        finally:
            for instrumentor in instrumentors:
                instrumentor.uninstrument()
            provider.shutdown()
        console.print(_table("Cost per feature (live, from the spans)", "feature", tally.by_feature))
        console.print(_table("Cost per customer (live, from the spans)", "customer", tally.by_customer))
        return 0 if config is None else _margin_report(config, console)


@contextlib.contextmanager
def _demo_policy(text: str) -> Iterator[Path]:
    """The demo's policy, read as an application's is (the file ``OTEL_MARGIN_POLICY`` names),
    for the demo's calls and its report; the variable is put back afterwards."""
    from otel_margin.environment_variables import OTEL_MARGIN_POLICY

    previous = os.environ.get(OTEL_MARGIN_POLICY)
    with tempfile.TemporaryDirectory(prefix="otel-margin-demo-") as folder:
        policy_file = Path(folder) / "otel-margin.toml"
        policy_file.write_text(text)
        os.environ[OTEL_MARGIN_POLICY] = str(policy_file)
        try:
            yield policy_file
        finally:
            if previous is None:
                os.environ.pop(OTEL_MARGIN_POLICY, None)
            else:
                os.environ[OTEL_MARGIN_POLICY] = previous


def _demo_store(*, keep: bool, console: Any) -> Any:
    """The demo's storage settings: its own database and spool at the configured endpoint, emptied
    first unless ``keep`` (a second run must not be added to the first against the same revenue)."""
    import dataclasses
    import shutil

    from rich.markup import escape as markup_escape

    from otel_margin import schema
    from otel_margin.cli import CommandError, storage_config
    from otel_margin.display import printable
    from otel_margin.exporters.storage import StorageUnavailable, session

    configured = storage_config()
    # Its own spool too: a spooled batch names no database, and an application's exporter
    # draining the same spool would write demo rows into the application's database.
    spool = Path(configured.spool_dir)
    demo_spool = str(spool.with_name(f"{spool.name}-demo"))
    config = dataclasses.replace(configured, database=DEMO_DATABASE, spool_dir=demo_spool)
    where = f"{config.endpoint} ({config.chdb_path})" if config.embedded else config.endpoint
    where = markup_escape(printable(where))  # a setting from outside, printed inside rich markup
    if keep:
        console.print(f"writing LLM spans to {where}, database {DEMO_DATABASE!r}, added to earlier demo runs (--keep)")
        return config
    try:
        with session(config) as client:
            client.command(f"DROP DATABASE IF EXISTS {schema.quote_identifier(DEMO_DATABASE)} SYNC")
    except StorageUnavailable as error:
        raise CommandError(str(error)) from error
    # Batches an interrupted run left would be inserted into the new run.
    shutil.rmtree(config.spool_path, ignore_errors=True)
    console.print(f"writing LLM spans to {where}, database {DEMO_DATABASE!r}, emptied first "
                  "(--keep adds runs up instead)")
    return config


def _clickhouse_exporter(provider: Any, config: Any) -> Any:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_margin.exporters.clickhouse import ClickHouseSpanExporter

    exporter = ClickHouseSpanExporter(
        **{name: getattr(config, name) for name in (
            "endpoint", "database", "username", "password", "ttl_days", "timeout", "spool_dir", "spool_max_mb",
            "drain_interval")},
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return exporter


def _margin_report(config: Any, console: Any) -> int:
    """Import the demo's subscription revenue and fixed costs, print the margin report from
    ClickHouse, then the commands that look at the same store."""
    from datetime import datetime, timezone

    from otel_margin.cli import main
    from otel_margin.demo import costs_csv, revenue_csv

    day = datetime.now(timezone.utc).date().isoformat()
    database = ["--database", config.database]
    with tempfile.TemporaryDirectory() as folder:
        for command, what, text in (("revenue", "subscription revenue", revenue_csv(day)),
                                    ("costs", "fixed hosting and review costs", costs_csv(day))):
            path = Path(folder) / f"demo-{command}.csv"
            path.write_text(text)
            console.print(f"\nimporting the demo's {what} for {day}: "
                          f"otel-margin {command} import FILE --database {config.database}")
            status = main([command, "import", str(path), *database])
            if status:
                return status
    console.print(f"\nmargin report from ClickHouse: otel-margin report --since 1 --database {config.database}\n")
    status = main(["report", "--since", "1", *database])
    if status == 0:
        name = config.database
        year, week, _ = datetime.now(timezone.utc).isocalendar()
        console.print(
            "\nnext, over the same store:\n"
            f"  otel-margin dashboard --database {name}              the margin dashboard in your browser\n"
            f"  otel-margin dashboard --database {name} --output margin.html   a snapshot to share\n"
            f"  otel-margin alerts run --database {name}             the alert rules (docs/alerts.md)\n"
            f"  otel-margin review weekly --week {year}-W{week:02d} --database {name}   this week's margin review",
            markup=False, highlight=False, soft_wrap=True,
        )
    return status


def _table(title: str, key: str, rows: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    from otel_margin.cli.report import usd_text
    from otel_margin.display import rich_text

    table = Table(title=title)
    table.add_column(key)
    for column in ("calls", "errors", "input tok", "output tok", "cost $", "unpriced", "usage revenue $"):
        table.add_column(column, justify="right")
    for name, row in sorted(rows.items(), key=lambda item: item[1]["cost"], reverse=True):
        table.add_row(
            rich_text(name),  # a name from the spans: shown printable, never as markup
            str(row["calls"]),
            str(row["errors"]),
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            usd_text(row["cost"]),
            str(row["unpriced"]),
            usd_text(row["revenue"]),
        )
    return table


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number
