"""Export throughput and CPU cost of the ClickHouse span exporter.

For each target (embedded chDB, and a ClickHouse-HTTP server: the loopback server from
``tests/clickhouse_http.py``, or ``--url`` for a real one) it produces ``--spans`` LLM spans
through a real ``TracerProvider`` + ``BatchSpanProcessor`` and reports:

* sustained spans/second from the first span's end until every row is committed
  (``force_flush`` returned and ``count()`` matches);
* process CPU seconds, against a baseline run with a no-op exporter, and the exporter's
  share of the process's CPU. In chDB mode the engine runs in-process, so its insert work
  is included in the exporter's share (an upper bound); over HTTP the server is another
  process and is not counted.

Prints figures only; no thresholds. ``python benchmarks/export.py --spans 20000``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from clickhouse_http import LoopbackClickHouse, ensure_otel_margin_exporters  # noqa: E402

ensure_otel_margin_exporters()

from otel_margin import attributes as a  # noqa: E402
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter  # noqa: E402
from otel_margin.exporters.storage import StorageConfig, session  # noqa: E402


class _NoOpExporter(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


def produce(exporter: SpanExporter, spans: int) -> tuple[float, float, TracerProvider]:
    """Emit ``spans`` LLM spans; (wall seconds, process CPU seconds) until the SDK is flushed."""
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=spans + 1, max_export_batch_size=512, schedule_delay_millis=200)
    )
    tracer = provider.get_tracer("bench")
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(spans):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            a.GEN_AI_OPERATION_NAME: "chat", a.GEN_AI_PROVIDER_NAME: "openai",
            a.GEN_AI_REQUEST_MODEL: "gpt-4o-mini", a.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
            a.GEN_AI_USAGE_INPUT_TOKENS: 1200, a.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
            a.MARGIN_FEATURE: f"feature-{i % 7}", a.MARGIN_CUSTOMER: f"customer-{i % 500}", a.MARGIN_TIER: "pro",
            a.MARGIN_COST_USD: "0.000360000000", a.MARGIN_COST_INPUT_USD: "0.000180000000",
            a.MARGIN_COST_OUTPUT_USD: "0.000180000000", a.MARGIN_COST_STATUS: "priced",
        }):
            pass
    provider.force_flush(120_000)
    return time.perf_counter() - wall, time.process_time() - cpu, provider


def run_target(name: str, exporter: ClickHouseSpanExporter, spans: int, count_rows) -> dict:
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    _, _, provider = produce(exporter, spans)
    exporter.force_flush(120_000)
    rows = count_rows()
    wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
    provider.shutdown()
    return {"target": name, "rows": rows, "wall": wall, "cpu": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000, help="spans per target (default 20000)")
    parser.add_argument("--url", help="a real ClickHouse server instead of the loopback one")
    args = parser.parse_args(argv)
    console = Console(width=150)
    results = []
    with tempfile.TemporaryDirectory(prefix="otel-margin-bench-") as tmp:
        base_wall, base_cpu, provider = produce(_NoOpExporter(), args.spans)
        provider.shutdown()

        config = StorageConfig(endpoint=f"chdb://{tmp}/chdb", spool_dir=f"{tmp}/spool-chdb", timeout=30)
        exporter = ClickHouseSpanExporter(endpoint=config.endpoint, spool_dir=config.spool_dir, timeout=30)

        def chdb_rows() -> int:
            with session(config) as client:
                return client.command("SELECT count() FROM otel_margin.llm_calls")

        results.append(run_target("chDB (embedded)", exporter, args.spans, chdb_rows))

        server = None if args.url else LoopbackClickHouse(Path(tmp) / "http")
        url = args.url or server.url
        try:
            database = f"bench_{int(time.time())}"
            exporter = ClickHouseSpanExporter(
                endpoint=url, database=database, spool_dir=f"{tmp}/spool-http", timeout=30, compress="lz4")

            def http_rows() -> int:
                with session(StorageConfig(endpoint=url, timeout=30)) as client:
                    return client.command(f"SELECT count() FROM `{database}`.llm_calls")

            label = "ClickHouse HTTP" + (" (loopback over chDB)" if server else "")
            results.append(run_target(label, exporter, args.spans, http_rows))
            with session(StorageConfig(endpoint=url, timeout=30)) as client:
                client.command(f"DROP DATABASE IF EXISTS `{database}`")
        finally:
            if server:
                server.stop()

    table = Table(title=f"otel-margin ClickHouse exporter, {args.spans} LLM spans per target")
    for column in ("target", "rows committed", "spans/s (end → committed)", "process CPU s",
                   "baseline CPU s (no-op exporter)", "exporter share of CPU"):
        table.add_column(column, justify="right")
    for r in results:
        share = max(r["cpu"] - base_cpu, 0.0) / r["cpu"] if r["cpu"] else 0.0
        table.add_row(r["target"], str(r["rows"]), f"{r['rows'] / r['wall']:,.0f}", f"{r['cpu']:.2f}",
                      f"{base_cpu:.2f}", f"{share:.0%}")
    console.print(table)
    console.print(f"baseline: producing the spans alone took {base_wall:.2f}s wall, {base_cpu:.2f}s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
