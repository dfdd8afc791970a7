"""Export throughput and CPU cost of the ClickHouse span exporter.

For each target (embedded chDB, and a ClickHouse-HTTP server: the loopback server from
``tests/clickhouse_http.py``, or ``--url`` for a real one) and each source of spans, it runs
a real ``TracerProvider`` + ``BatchSpanProcessor`` into the exporter and reports:

* sustained spans/second from the first span's end until every row is committed
  (``force_flush`` returned; ``count()``, checked afterwards, is printed), and the inserts that took;
* the exporter's CPU per span: the process CPU spent outside the producing threads (the
  main thread while it produces, and otel-margin's finisher thread), less the same figure
  for a run into a no-op exporter (the span processor's own batching), divided by the
  spans. Thread CPU clocks are used because a difference of two whole-process totals drowns
  in the noise of a shared machine. In chDB mode the engine runs in-process, so its insert
  work (and opening chDB for each drain) counts; over HTTP the server is another process
  and does not count;
* that cost as a share of three readings of the issue's "CPU cost of producing the spans":
  (a) producing the span alone (the exact attribute set of a real instrumented call, copied
  once from one), (b) the whole instrumented ``openai`` chat call through the in-process
  stand-in (SDK, instrumentation, guardrails, span), and (c) what otel-margin itself spends
  producing a call's span: (b) less the same call bare, paired in alternating rounds.

Sources: ``spans`` emits ``--spans`` spans with that attribute set as fast as it can;
``calls`` makes ``--calls`` real instrumented calls, each ending its LLM span. Each target
is warmed up first (schema created, chDB opened once), so the figures are steady state.
The span processor is the SDK's ``BatchSpanProcessor`` with its default batch size (512) and
delay (5 s). Prints figures only; no thresholds. ``python benchmarks/export.py --spans 20000 --calls 10000``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from clickhouse_http import LoopbackClickHouse  # noqa: E402

from otel_margin import attribute  # noqa: E402
from otel_margin import attributes as a  # noqa: E402
from otel_margin.exporters.clickhouse import DEFAULT_DRAIN_INTERVAL, ClickHouseSpanExporter  # noqa: E402
from otel_margin.exporters.storage import StorageConfig, session  # noqa: E402
from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor  # noqa: E402
from otel_margin.standin import in_process_transport, openai_client  # noqa: E402

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Summarize the quarterly report in three sentences."}]
CUSTOMERS, FEATURES = 500, 7


class _NoOpExporter(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


def real_attributes() -> dict[str, Any]:
    """The attributes of the LLM span of one real instrumented chat call."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with instrumented(provider):
        with attribute(feature="feature-0", customer="customer-0", tier="pro", cohort="2026-10"):
            openai_client(in_process_transport()).chat.completions.create(model=MODEL, messages=MESSAGES)
        provider.force_flush()  # calls are finished (priced, span ended) on a finisher thread
    (span,) = [s for s in memory.get_finished_spans() if a.GEN_AI_OPERATION_NAME in (s.attributes or {})]
    return dict(span.attributes)


class instrumented:
    """otel-margin's openai instrumentation on ``provider`` for the block."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.instrumentor = OpenAIMarginInstrumentor()

    def __enter__(self) -> None:
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        self.instrumentor.instrument(tracer_provider=self.provider, meter_provider=meter_provider)

    def __exit__(self, *exc: Any) -> None:
        self.instrumentor.uninstrument()


def pipeline(exporter: SpanExporter, queue: int) -> TracerProvider:
    """The SDK's batch processor with its default batch size and delay; a queue that never drops."""
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue + 1))
    return provider


def emit_spans(provider: TracerProvider, count: int, template: dict[str, Any]) -> None:
    """``count`` spans with the real attribute set (customer, feature, response id varied)."""
    tracer = provider.get_tracer("bench")
    for i in range(count):
        attrs = dict(template)
        attrs[a.MARGIN_CUSTOMER] = f"customer-{i % CUSTOMERS}"
        attrs[a.MARGIN_FEATURE] = f"feature-{i % FEATURES}"
        attrs[a.GEN_AI_RESPONSE_ID] = f"chatcmpl-{i:029d}"
        with tracer.start_as_current_span(f"chat {MODEL}", attributes=attrs):
            pass


def make_calls(provider: TracerProvider, count: int, instrument: bool = True) -> None:
    """``count`` real chat calls through the in-process stand-in, instrumented unless told not to."""
    with instrumented(provider) if instrument else contextlib.nullcontext():
        client = openai_client(in_process_transport())
        for i in range(count):
            with attribute(feature=f"feature-{i % FEATURES}", customer=f"customer-{i % CUSTOMERS}", tier="pro"):
                client.chat.completions.create(model=MODEL, messages=MESSAGES)


def instrumentation_cpu(count: int, rounds: int = 5) -> float:
    """(c) µs: what otel-margin itself spends on a call, span included (an instrumented call's
    producing CPU less a bare call's): the median over ``rounds`` alternating pairs of runs."""
    per_round = max(count // rounds, 1)
    differences = []
    for _ in range(rounds):
        bare = run(_NoOpExporter(), lambda p: make_calls(p, per_round, instrument=False), per_round)["produce"]
        ours = run(_NoOpExporter(), lambda p: make_calls(p, per_round), per_round)["produce"]
        differences.append((ours - bare) / per_round * 1e6)
    return statistics.median(differences)


def producer_cpu() -> float:
    """CPU seconds so far of the threads that produce spans: this (main) thread and otel-margin's finisher."""
    total = time.thread_time()
    for thread in threading.enumerate():
        if thread.name == "otel-margin-finisher" and thread.ident is not None:
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


def run(exporter: SpanExporter, produce: Callable[[TracerProvider], None], queue: int,
        committed: Callable[[], int] | None = None) -> dict[str, float]:
    """Produce, flush, count: wall seconds, and process CPU seconds split into producing and the rest.

    ``produce`` is the main thread's CPU while it produces, plus the finisher thread's
    (which prices calls and ends their spans). Everything else — the span processor's
    worker, the exporter's drainer, chDB's own threads, and the flushes — is ``rest``.
    """
    provider = pipeline(exporter, queue)
    wall, cpu, finisher = time.perf_counter(), time.process_time(), producer_cpu() - time.thread_time()
    main = time.thread_time()
    produce(provider)
    main = time.thread_time() - main
    provider.force_flush(600_000)
    if isinstance(exporter, ClickHouseSpanExporter):
        exporter.force_flush(600_000)  # True once every row is committed
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    producing = main + (producer_cpu() - time.thread_time()) - finisher
    rows = committed() if committed else 0  # the check, not timed: it opens its own client
    provider.shutdown()  # also shuts the exporter down; not timed
    return {"wall": wall, "cpu": cpu, "produce": producing, "rest": cpu - producing, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000, help="spans per target from the 'spans' source (default 20000)")
    parser.add_argument("--calls", type=int, default=10_000,
                        help="instrumented calls per target from the 'calls' source (default 10000)")
    parser.add_argument("--sources", nargs="+", choices=("spans", "calls"), default=["spans", "calls"],
                        help="which span sources to run (default both)")
    parser.add_argument("--targets", nargs="+", choices=("chdb", "http"), default=["chdb", "http"],
                        help="which exporter targets to run (default both)")
    parser.add_argument("--url", help="a real ClickHouse server instead of the loopback one")
    parser.add_argument("--drain-interval", type=float, default=DEFAULT_DRAIN_INTERVAL,
                        help=f"the exporter's drain_interval in seconds (default {DEFAULT_DRAIN_INTERVAL:g}); in chDB "
                             "mode each drain inserts (and opens chDB when it holds no lease), so this trades "
                             "freshness for CPU")
    args = parser.parse_args(argv)
    console = Console(width=160)
    template = real_attributes()
    sources = {
        "spans": (args.spans, lambda provider: emit_spans(provider, args.spans, template)),
        "calls": (args.calls, lambda provider: make_calls(provider, args.calls)),
    }
    # The denominators: the same production into a span-discarding exporter. (a) is always
    # the span alone, (b) always the whole call, whatever sources are chosen for the runs.
    run(_NoOpExporter(), lambda p: (emit_spans(p, 2000, template), make_calls(p, 200)), 2200)  # warm-up
    baseline = {source: run(_NoOpExporter(), produce, count) for source, (count, produce) in sources.items()}
    per_span = baseline["spans"]["produce"] / args.spans * 1e6
    per_call = baseline["calls"]["produce"] / args.calls * 1e6
    own = instrumentation_cpu(args.calls)
    memory = InMemorySpanExporter()
    warm_provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    warm_provider.add_span_processor(SimpleSpanProcessor(memory))
    emit_spans(warm_provider, 500, template)
    warm_spans = memory.get_finished_spans()

    results = []
    with tempfile.TemporaryDirectory(prefix="otel-margin-bench-") as tmp:
        server = None
        try:
            for target in args.targets:
                for source in args.sources:
                    count, produce = sources[source]
                    tag = f"{target}-{source}"
                    if target == "chdb":
                        config = StorageConfig(endpoint=f"chdb://{tmp}/chdb-{tag}", spool_dir=f"{tmp}/spool-{tag}",
                                               timeout=30)
                        table = "otel_margin.llm_calls"
                        label = "chDB (embedded)"
                    else:
                        if server is None and not args.url:
                            server = LoopbackClickHouse(Path(tmp) / "http")
                        url = args.url or server.url
                        database = f"bench_{source}_{int(time.time())}"
                        config = StorageConfig(endpoint=url, database=database, spool_dir=f"{tmp}/spool-{tag}",
                                               timeout=30)
                        table = f"`{database}`.llm_calls"
                        label = "ClickHouse HTTP" + (" (loopback)" if server else "")

                    def committed(config=config, table=table) -> int:
                        with session(StorageConfig(endpoint=config.endpoint, timeout=30)) as client:
                            return int(client.command(f"SELECT count() FROM {table}"))

                    exporter = ClickHouseSpanExporter(
                        endpoint=config.endpoint, database=config.database, spool_dir=config.spool_dir, timeout=30,
                        drain_interval=args.drain_interval, **({} if target == "chdb" else {"compress": "lz4"}))
                    # Warm-up: schema, first chDB opening, connection pool. Not timed.
                    exporter.export(warm_spans)
                    exporter.force_flush(60_000)
                    before = committed()
                    stats_before = exporter.stats()
                    result = run(exporter, produce, count, lambda: committed() - before)
                    inserts = exporter.stats().inserts - stats_before.inserts
                    # The rest of the CPU, less what the same run had into a no-op exporter
                    # (the span processor's own batching).
                    exporter_cpu = result["rest"] - baseline[source]["rest"]
                    results.append({"target": label, "source": source, "count": count, "inserts": inserts,
                                    "exporter_us": exporter_cpu / count * 1e6, **result})
                    if target == "http":
                        with session(StorageConfig(endpoint=config.endpoint, timeout=30)) as client:
                            client.command(f"DROP DATABASE IF EXISTS `{config.database}`")
        finally:
            if server:
                server.stop()

    table = Table(title=f"otel-margin ClickHouse exporter: throughput and CPU per span "
                        f"(drain_interval {args.drain_interval:g} s)")
    for column in ("target", "source", "rows committed", "spans/s (end → committed)", "inserts",
                   "process CPU s", "exporter CPU µs/span", "vs (a) span production", "vs (b) instrumented call",
                   "vs (c) otel-margin per call"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r["target"], f"{r['source']} ×{r['count']}", str(r["rows"]), f"{r['rows'] / r['wall']:,.0f}",
                      str(r["inserts"]), f"{r['cpu']:.2f}", f"{r['exporter_us']:.1f}", f"{r['exporter_us'] / per_span:.0%}",
                      f"{r['exporter_us'] / per_call:.1%}", f"{r['exporter_us'] / own:.0%}")
    console.print(table)
    console.print(f"(a) producing one LLM span ({len(template)} attributes, as a real call sets them): "
                  f"{per_span:.1f} µs CPU")
    console.print(f"(b) one instrumented openai chat call through the in-process stand-in (SDK, instrumentation, "
                  f"finisher): {per_call:.1f} µs CPU")
    console.print(f"(c) what otel-margin itself spends producing one call's span (an instrumented call less a bare "
                  f"one, median of 5 alternating rounds): {own:.1f} µs CPU")
    console.print("exporter CPU = process CPU outside the producing threads (main while producing, finisher), "
                  "less the same in the run into a no-op exporter: "
                  f"spans {baseline['spans']['rest'] / args.spans * 1e6:.1f} µs/span, "
                  f"calls {baseline['calls']['rest'] / args.calls * 1e6:.1f} µs/span")
    return 0


if __name__ == "__main__":
    sys.exit(main())
