"""``otel-margin demo``: a realistic workload through the real SDKs into the margin store."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="run a realistic LLM workload against a local stand-in and print cost and margin",
        description="Start a local stand-in for the OpenAI and Anthropic APIs, run a multi-feature, "
        "multi-customer workload through the real openai and anthropic SDKs instrumented by "
        "otel-margin, and print cost per feature and per customer. Nothing leaves this machine.",
    )
    parser.add_argument("--calls", type=_positive, default=400, help="number of LLM calls to make (default: 400)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the workload (default: 7)")
    parser.add_argument(
        "--no-store", action="store_true",
        help="do not write to ClickHouse; print only the live cost tables",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    from opentelemetry.sdk.trace import TracerProvider
    from rich.console import Console
    from rich.progress import Progress

    from otel_margin.demo import CostTally, run_workload
    from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor
    from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
    from otel_margin.standin import StandInServer, anthropic_client, openai_client

    console = Console()
    tally = CostTally()
    provider = TracerProvider()
    provider.add_span_processor(tally)
    exporter = None if args.no_store else _clickhouse_exporter(provider, console)
    instrumentors = (OpenAIMarginInstrumentor(), AnthropicMarginInstrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
    try:
        with StandInServer() as server:
            console.print(f"stand-in for OpenAI and Anthropic listening on {server.base_url}")
            openai, anthropic = openai_client(server), anthropic_client(server)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("LLM calls", total=args.calls)
                for _feature in run_workload(openai, anthropic, calls=args.calls, seed=args.seed):
                    progress.advance(task)
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
        provider.shutdown()
    console.print(_table("Cost per feature (live, from the spans)", "feature", tally.by_feature))
    console.print(_table("Cost per customer (live, from the spans)", "customer", tally.by_customer))
    if exporter is None:
        return 0
    return _margin_report(exporter, console)


def _clickhouse_exporter(provider: Any, console: Any) -> Any:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_margin.exporters.clickhouse import ClickHouseSpanExporter

    exporter = ClickHouseSpanExporter()
    console.print(f"writing LLM spans to {exporter.config.endpoint} (database {exporter.config.database})")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return exporter


def _margin_report(exporter: Any, console: Any) -> int:
    """Import the demo's subscription revenue, then print the margin report from ClickHouse."""
    import tempfile
    from datetime import datetime, timezone
    from pathlib import Path

    from otel_margin.cli import main
    from otel_margin.demo import revenue_csv

    day = datetime.now(timezone.utc).date().isoformat()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "demo-revenue.csv"
        path.write_text(revenue_csv(day))
        console.print(f"\nimporting the demo's subscription revenue for {day}: otel-margin revenue import FILE")
        status = main(["revenue", "import", str(path)])
    if status:
        return status
    console.print("\nmargin report from ClickHouse: otel-margin report --since 1\n")
    return main(["report", "--since", "1"])


def _table(title: str, key: str, rows: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    table.add_column(key)
    for column in ("calls", "errors", "input tok", "output tok", "cost $", "unpriced", "usage revenue $"):
        table.add_column(column, justify="right")
    for name, row in sorted(rows.items(), key=lambda item: item[1]["cost"], reverse=True):
        table.add_row(
            name,
            str(row["calls"]),
            str(row["errors"]),
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            f"{row['cost']:.4f}",
            str(row["unpriced"]),
            f"{row['revenue']:.2f}",
        )
    return table


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number
