"""Export throughput and CPU cost of the ClickHouse span exporter.

For each target (embedded chDB, and a ClickHouse-HTTP server: the loopback server from
``tests/clickhouse_http.py``, or ``--url`` for a real one; and for comparison the SDK's own
OTLP/HTTP protobuf exporter into a sink in another process) and each source of spans, it
runs a real ``TracerProvider`` + ``BatchSpanProcessor`` into the exporter and reports:

* sustained spans/second from the first span's end until every row is committed
  (``force_flush`` returned; ``count()``, checked afterwards, is printed), and the inserts that took;
* the exporter's CPU per span: the process CPU spent outside the producing threads (the
  main thread while it produces, and otel-margin's finisher thread), less the same figure
  for a run into a no-op exporter (the span processor's own batching), divided by the
  spans. Thread CPU clocks are used because a difference of two whole-process totals drowns
  in the noise of a shared machine. In chDB mode the engine runs in-process, so its insert
  work (and any opening of chDB during the run, shown in its own column) counts; over HTTP
  the server is another process and does not count;
* that cost as a share of three readings of the issue's "CPU cost of producing the spans":
  (a) producing the span alone (the exact attribute set of a real instrumented call, copied
  once from one), (b) the whole instrumented ``openai`` chat call through the in-process
  stand-in (SDK, instrumentation, guardrails, span), and (c) what otel-margin itself spends
  producing a call's span: (b) less the same call bare, paired in alternating rounds.

Sources: ``spans`` emits ``--spans`` spans with that attribute set as fast as it can (or
``--rate`` a second); ``calls`` makes ``--calls`` real instrumented calls, each ending its LLM
span. Each target is warmed up first (schema created, chDB opened and kept open as the
exporter keeps it while spans flow), so the figures are steady state. As fast as it can, a
run spreads the exporter's fixed costs (an insert per drain, the open engine) over the most
spans; ``--rate`` shows them at the pace of a real service.
The span processor is the SDK's ``BatchSpanProcessor`` with its default batch size (512) and
delay (5 s). Prints figures only; no thresholds. ``python benchmarks/export.py --spans 20000 --calls 10000``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
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
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter  # noqa: E402
from otel_margin.exporters.storage import DEFAULT_DRAIN_INTERVAL, StorageConfig, session  # noqa: E402
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
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=max(queue + 1, 2048)))
    return provider


def paced(count: int, rate: float | None) -> Iterator[int]:
    """``range(count)``, yielding at most ``rate`` items a second (sleeping between them) if ``rate`` is set."""
    if not rate:
        yield from range(count)
        return
    start = time.monotonic()
    for i in range(count):
        if (wait := start + i / rate - time.monotonic()) > 0:
            time.sleep(wait)
        yield i


def emit_spans(provider: TracerProvider, count: int, template: dict[str, Any], rate: float | None = None) -> None:
    """``count`` spans with the real attribute set (customer, feature, response id varied), at most
    ``rate`` a second."""
    tracer = provider.get_tracer("bench")
    for i in paced(count, rate):
        attrs = dict(template)
        attrs[a.MARGIN_CUSTOMER] = f"customer-{i % CUSTOMERS}"
        attrs[a.MARGIN_FEATURE] = f"feature-{i % FEATURES}"
        attrs[a.GEN_AI_RESPONSE_ID] = f"chatcmpl-{i:029d}"
        with tracer.start_as_current_span(f"chat {MODEL}", attributes=attrs):
            pass


def make_calls(provider: TracerProvider, count: int, instrument: bool = True, rate: float | None = None) -> None:
    """``count`` real chat calls through the in-process stand-in, instrumented unless told not to,
    at most ``rate`` a second."""
    with instrumented(provider) if instrument else contextlib.nullcontext():
        client = openai_client(in_process_transport())
        for i in paced(count, rate):
            with attribute(feature=f"feature-{i % FEATURES}", customer=f"customer-{i % CUSTOMERS}", tier="pro"):
                client.chat.completions.create(model=MODEL, messages=MESSAGES)


def instrumentation_cpu(count: int, rate: float | None = None, rounds: int = 5) -> float:
    """(c) µs: what otel-margin itself spends on a call, span included (an instrumented call's
    producing CPU less a bare call's, both at most ``rate`` a second): the median over
    ``rounds`` alternating pairs of runs."""
    per_round = max(count // rounds, 1)
    differences = []
    for _ in range(rounds):
        bare = run(_NoOpExporter(), lambda p: make_calls(p, per_round, instrument=False, rate=rate),
                   per_round)["produce"]
        ours = run(_NoOpExporter(), lambda p: make_calls(p, per_round, rate=rate), per_round)["produce"]
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


def open_target(target: str, source: str, tmp: Path, servers: dict[str, Any], drain_interval: float
                ) -> tuple[str, SpanExporter, Callable[[], tuple[int, int, int]], Callable[[], None]]:
    """The exporter for one run: its label, the exporter, a reading of what it delivered so far
    (rows or spans, inserts or requests, chDB openings), and a cleanup for after the run.
    ``servers``: the OTLP sink and the ClickHouse URL, by target."""
    if target == "otlp":
        sink = servers["otlp"]
        exporter = OTLPSpanExporter(endpoint=f"{sink.url}/v1/traces")
        return "OTLP/HTTP (the SDK's exporter)", exporter, lambda: (*sink.received(), 0), lambda: None
    tag = f"{target}-{source}"
    if target == "chdb":
        config = StorageConfig(endpoint=f"chdb://{tmp}/chdb-{tag}", spool_dir=f"{tmp}/spool-{tag}", timeout=30)
        label = "chDB (embedded)"
    else:
        url, label = servers["http"]
        config = StorageConfig(endpoint=url, database=f"bench_{source}_{int(time.time())}",
                               spool_dir=f"{tmp}/spool-{tag}", timeout=30)
    exporter = ClickHouseSpanExporter(
        endpoint=config.endpoint, database=config.database, spool_dir=config.spool_dir, timeout=30,
        drain_interval=drain_interval, **({} if target == "chdb" else {"compress": "lz4"}))

    def delivered() -> tuple[int, int, int]:
        with session(StorageConfig(endpoint=config.endpoint, timeout=30)) as client:
            rows = int(client.command(f"SELECT count() FROM `{config.database}`.llm_calls"))
        stats = exporter.stats()
        return rows, stats.inserts, stats.openings

    def cleanup() -> None:
        if target == "http":
            with session(StorageConfig(endpoint=config.endpoint, timeout=30)) as client:
                client.command(f"DROP DATABASE IF EXISTS `{config.database}`")

    return label, exporter, delivered, cleanup


OTLP_SINK = r"""
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

lock, received = threading.Lock(), [0, 0]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector allows

    def do_POST(self):
        request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
        with lock:
            received[0] += sum(len(scope.spans) for spans in request.resource_spans for scope in spans.scope_spans)
            received[1] += 1
        self.reply(b"", "application/x-protobuf")

    def do_GET(self):
        with lock:
            self.reply(("%d %d" % tuple(received)).encode(), "text/plain")

    def reply(self, body, kind):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class OtlpSink:
    """An OTLP/HTTP receiver in another process (like a collector, its CPU is not this process's):
    it decodes each request and counts the spans and requests."""

    def __enter__(self) -> "OtlpSink":
        self.process = subprocess.Popen([sys.executable, "-c", OTLP_SINK], stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"
        return self

    def received(self) -> tuple[int, int]:
        """Spans and requests received so far."""
        with urllib.request.urlopen(self.url, timeout=30) as response:
            spans, requests = response.read().split()
        return int(spans), int(requests)

    def __exit__(self, *exc: Any) -> None:
        self.process.kill()
        self.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000, help="spans per target from the 'spans' source (default 20000)")
    parser.add_argument("--calls", type=int, default=10_000,
                        help="instrumented calls per target from the 'calls' source (default 10000)")
    parser.add_argument("--sources", nargs="+", choices=("spans", "calls"), default=["spans", "calls"],
                        help="which span sources to run (default both)")
    parser.add_argument("--targets", nargs="+", choices=("chdb", "http", "otlp"), default=["chdb", "http", "otlp"],
                        help="which exporters to run (default all three): chdb and http are otel-margin's; otlp "
                             "is the SDK's OTLP/HTTP protobuf exporter into a sink in another process, the cost "
                             "every service that sends its traces to a collector already pays, for comparison")
    parser.add_argument("--rate", type=float, metavar="PER_SECOND",
                        help="produce at most this many spans (calls) a second, as a service under steady load "
                             "does, instead of as fast as possible; the exporter's fixed costs (an insert per "
                             "drain, the open engine) then weigh on fewer spans. Baselines are paced alike")
    parser.add_argument("--url", help="a real ClickHouse server instead of the loopback one")
    parser.add_argument("--drain-interval", type=float, default=DEFAULT_DRAIN_INTERVAL,
                        help=f"the exporter's drain_interval in seconds (default {DEFAULT_DRAIN_INTERVAL:g}); in chDB "
                             "mode each drain inserts (and opens chDB when it holds no lease), so this trades "
                             "freshness for CPU")
    args = parser.parse_args(argv)
    console = Console(width=160)
    template = real_attributes()
    sources = {
        "spans": (args.spans, lambda provider: emit_spans(provider, args.spans, template, args.rate)),
        "calls": (args.calls, lambda provider: make_calls(provider, args.calls, rate=args.rate)),
    }
    # The denominators: the same production into a span-discarding exporter. (a) is always
    # the span alone, (b) always the whole call, whatever sources are chosen for the runs.
    run(_NoOpExporter(), lambda p: (emit_spans(p, 2000, template), make_calls(p, 200)), 2200)  # warm-up
    baseline = {source: run(_NoOpExporter(), produce, count) for source, (count, produce) in sources.items()}
    per_span = baseline["spans"]["produce"] / args.spans * 1e6
    per_call = baseline["calls"]["produce"] / args.calls * 1e6
    own = instrumentation_cpu(args.calls, args.rate)
    memory = InMemorySpanExporter()
    warm_provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    warm_provider.add_span_processor(SimpleSpanProcessor(memory))
    emit_spans(warm_provider, 500, template)
    warm_spans = memory.get_finished_spans()

    results = []
    with tempfile.TemporaryDirectory(prefix="otel-margin-bench-") as tmp, contextlib.ExitStack() as stack:
        servers: dict[str, Any] = {}
        if "otlp" in args.targets:
            servers["otlp"] = stack.enter_context(OtlpSink())
        if "http" in args.targets:
            if args.url:
                servers["http"] = (args.url, "ClickHouse HTTP")
            else:
                loopback = LoopbackClickHouse(Path(tmp) / "http")
                stack.callback(loopback.stop)
                servers["http"] = (loopback.url, "ClickHouse HTTP (loopback)")
        for target in args.targets:
            for source in args.sources:
                count, produce = sources[source]
                label, exporter, delivered, cleanup = open_target(target, source, Path(tmp), servers,
                                                                  args.drain_interval)
                # Warm-up: schema, connection pool, and in chDB mode the opening, kept as the
                # lease as under a steady stream of spans (the run shows any later opening). Not timed.
                exporter.export(warm_spans)
                exporter.force_flush(60_000)
                before = delivered()
                result = run(exporter, produce, count, lambda: delivered()[0] - before[0])
                after = delivered()
                # The rest of the CPU, less what the same run had into a no-op exporter
                # (the span processor's own batching).
                exporter_cpu = result["rest"] - baseline[source]["rest"]
                results.append({"target": label, "source": source, "count": count,
                                "inserts": after[1] - before[1], "openings": None if target != "chdb" else
                                exporter.stats().openings - before[2],
                                "exporter_us": exporter_cpu / count * 1e6, **result})
                cleanup()

    pace = f", paced at {args.rate:g}/s" if args.rate else ""
    table = Table(title=f"otel-margin ClickHouse exporter: throughput and CPU per span "
                        f"(drain_interval {args.drain_interval:g} s{pace})")
    for column in ("target", "source", "rows committed (OTLP: spans received)", "spans/s (end → committed)",
                   "inserts (OTLP: requests)", "chDB openings",
                   "process CPU s", "exporter CPU µs/span", "vs (a) span production", "vs (b) instrumented call",
                   "vs (c) otel-margin per call"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r["target"], f"{r['source']} ×{r['count']}", str(r["rows"]), f"{r['rows'] / r['wall']:,.0f}",
                      str(r["inserts"]), "–" if r["openings"] is None else str(r["openings"]), f"{r['cpu']:.2f}",
                      f"{r['exporter_us']:.1f}", f"{r['exporter_us'] / per_span:.0%}",
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
