"""Lose nothing on the way out (issue 18): SIGTERM, a provider's flush, a full span queue, a full disk.

Each process test runs a child that makes real ``openai`` SDK calls against the stand-in server,
instrumented by otel-margin, through a real ``TracerProvider`` + ``BatchSpanProcessor`` into the
ClickHouse exporter (embedded chDB); the parent then stops it the way operations does and counts
rows in chDB. The span processor's delay is 30 s in the children, so without the code under test
nothing would be written before the signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_margin import attributes as a
from otel_margin.distro import CLICKHOUSE_SCHEDULE_DELAY_MILLIS, MarginDistro
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.exporters.spool import Spool
from otel_margin.exporters.storage import StorageConfig, session
from otel_margin.finisher import flush_before_exporters

CHILD = r"""
import os, signal, sys, time
mode, endpoint, spool, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if mode == "app-handler":
    def app_handler(signum, frame):  # an application that exits hard, skipping atexit
        print("app-handler", flush=True)
        os._exit(3)
    signal.signal(signal.SIGTERM, app_handler)
if mode == "ignored":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
from otel_margin.standin import StandInServer, openai_client

exporter = ClickHouseSpanExporter(endpoint=endpoint, spool_dir=spool, drain_interval=3600)
provider = TracerProvider(resource=Resource.create({"service.name": "worker"}))
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=30_000))
OpenAIMarginInstrumentor().instrument(tracer_provider=provider)
print("handler", signal.getsignal(signal.SIGTERM).__name__ if callable(signal.getsignal(signal.SIGTERM))
      else signal.getsignal(signal.SIGTERM), flush=True)
with StandInServer() as server:
    client = openai_client(server)
    for i in range(calls):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi %d" % i}])
    if mode == "flush":
        print("flushed", provider.force_flush(30_000), flush=True)
    print("done", calls, flush=True)
    time.sleep(120)  # stopped by the parent
"""


def start_child(mode: str, config: StorageConfig, calls: int, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, config.endpoint, config.spool_dir, str(calls)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ, **env})


def read_until(child: subprocess.Popen[str], word: str) -> list[str]:
    """The child's stdout lines up to and including the first that starts with ``word``."""
    lines: list[str] = []
    while not lines or not lines[-1].startswith(word):
        line = child.stdout.readline()
        assert line, f"the child ended before {word!r}: {lines} {child.stderr.read()}"
        lines.append(line.strip())
    return lines


def rows(config: StorageConfig) -> tuple[int, int]:
    """(rows, distinct span ids) in llm_calls; (0, 0) when nothing was ever written."""
    if not config.chdb_path.exists():
        return 0, 0
    with session(config) as client:
        if not client.command("EXISTS TABLE otel_margin.llm_calls"):
            return 0, 0
        return tuple(client.query("SELECT count(), uniqExact(span_id) FROM otel_margin.llm_calls").result_rows[0])


@pytest.fixture
def config(tmp_path) -> StorageConfig:
    return StorageConfig(endpoint=f"chdb://{tmp_path / 'chdb'}", spool_dir=str(tmp_path / "spool"), timeout=10)


# --- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_writes_every_finished_call_and_the_process_still_dies_of_sigterm(config, tmp_path):
    child = start_child("default", config, 25, tmp_path)
    assert read_until(child, "done")[0] == "handler _on_sigterm"
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == -signal.SIGTERM  # exit status 143 in a shell, as without otel-margin
    assert rows(config) == (25, 25)
    assert not Spool(config.spool_path, max_bytes=1).pending()  # written, not only spooled


def test_sigterm_writes_first_then_runs_the_applications_own_handler(config, tmp_path):
    child = start_child("app-handler", config, 12, tmp_path)
    read_until(child, "done")
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 3  # the application's handler ran, and decided how the process exits
    assert child.stdout.read().strip() == "app-handler"
    assert rows(config) == (12, 12)


UVICORN_CHILD = r"""
import sys
import uvicorn
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
from otel_margin.standin import in_process_transport, openai_client

endpoint, spool = sys.argv[1], sys.argv[2]
exporter = ClickHouseSpanExporter(endpoint=endpoint, spool_dir=spool, drain_interval=3600)
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=30_000))
OpenAIMarginInstrumentor().instrument(tracer_provider=provider)
client = openai_client(in_process_transport())


def call(n):
    for _ in range(n):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                call(7)  # calls served before the stop
                await send({"type": "lifespan.startup.complete"})
                print("serving", flush=True)
            elif message["type"] == "lifespan.shutdown":
                call(3)  # calls made during uvicorn's graceful shutdown
                await send({"type": "lifespan.shutdown.complete"})
                return


uvicorn.run(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
"""


def test_under_uvicorn_its_graceful_shutdown_runs_then_every_call_is_written(config, tmp_path):
    pytest.importorskip("uvicorn")
    child = subprocess.Popen([sys.executable, "-c", UVICORN_CHILD, config.endpoint, config.spool_dir],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    read_until(child, "serving")
    child.send_signal(signal.SIGTERM)  # uvicorn's handler (installed over ours) shuts down, then re-raises
    assert child.wait(60) == -signal.SIGTERM
    assert rows(config) == (10, 10)


def test_an_ignored_sigterm_stays_ignored(config, tmp_path):
    child = start_child("ignored", config, 1, tmp_path)
    assert read_until(child, "done")[0] == f"handler {int(signal.SIG_IGN)}"
    child.kill()
    child.wait(60)


def test_sigterm_handling_can_be_turned_off(config, tmp_path):
    child = start_child("default", config, 1, tmp_path, OTEL_MARGIN_HANDLE_SIGTERM="false")
    assert read_until(child, "done")[0] == f"handler {int(signal.SIG_DFL)}"
    child.kill()
    child.wait(60)


def test_the_handler_is_not_installed_from_another_thread():
    code = ("import signal, threading\n"
            "from otel_margin import termination\n"
            "got = []\n"
            "thread = threading.Thread(target=lambda: got.append(termination.install()))\n"
            "thread.start(); thread.join()\n"
            "print(got[0], signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, termination.install())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "True", "True"], done.stderr  # the main thread may


# --- a provider's flush ----------------------------------------------------------------------


def test_a_flushed_providers_calls_are_in_the_table_for_another_process(config, tmp_path):
    child = start_child("flush", config, 9, tmp_path)
    assert "flushed True" in read_until(child, "flushed")
    child.kill()  # nothing the child does after its flush returned counts
    child.wait(60)
    assert not Spool(config.spool_path, max_bytes=1).pending()
    assert rows(config) == (9, 9)


# --- the span processor's queue --------------------------------------------------------------


class Gated(ClickHouseSpanExporter):
    """Blocks in ``export()`` until the gate opens: an export stuck on a slow disk or server."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gate, self.inside = threading.Event(), threading.Event()

    def export(self, spans):
        self.inside.set()
        self.gate.wait(30)
        return super().export(spans)


def llm_span(tracer, i: int) -> None:
    with tracer.start_as_current_span("chat m", attributes={
            a.GEN_AI_OPERATION_NAME: "chat", a.MARGIN_CUSTOMER: f"c{i}", a.MARGIN_COST_USD: "0.5"}):
        pass


@given(queue=st.integers(2, 40), flood=st.integers(0, 120))
@settings(max_examples=6, deadline=None)
def test_spans_a_full_queue_drops_are_counted_and_everything_else_is_written(tmp_path_factory, queue, flood):
    directory = tmp_path_factory.mktemp("queue")
    config = StorageConfig(endpoint=f"chdb://{directory / 'chdb'}", spool_dir=str(directory / "spool"))
    exporter = Gated(endpoint=config.endpoint, spool_dir=config.spool_dir, drain_interval=3600)
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=queue, max_export_batch_size=queue, schedule_delay_millis=30_000))
    flush_before_exporters(provider)
    tracer = provider.get_tracer("t")
    try:
        for i in range(queue):  # a full batch wakes the processor, which gets stuck exporting it
            llm_span(tracer, i)
        assert exporter.inside.wait(30)
        for i in range(queue, queue + queue + flood):  # the queue fills, then each span drops one
            llm_span(tracer, i)
        exporter.gate.set()
        assert provider.force_flush(30_000)
        assert exporter.stats().dropped_spans == flood
        assert rows(config) == (queue + queue, queue + queue)
    finally:
        exporter.gate.set()
        provider.shutdown()


# --- a full disk under the spool -------------------------------------------------------------

DISK_CHILD = r"""
import os, resource, signal, sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from otel_margin import attributes as a
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter

endpoint, spool, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
exporter = ClickHouseSpanExporter(endpoint=endpoint, spool_dir=spool, drain_interval=3600)
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("t")
sizes = [int(size) for size in sys.argv[4:]]
for i, size in enumerate(sizes):
    with tracer.start_as_current_span("chat m", attributes={
            a.GEN_AI_OPERATION_NAME: "chat", a.MARGIN_CUSTOMER: "c%d-" % i + "x" * size}):
        pass
stats = exporter.stats()
print(len(sizes), stats.spooled_batches, stats.dropped_spans, flush=True)
os._exit(0)  # leave the spool as it is (exit would insert it)
"""


@given(sizes=st.lists(st.sampled_from([10, 100, 6_000, 50_000]), min_size=1, max_size=8))
@settings(max_examples=5, deadline=None)
def test_a_disk_that_refuses_the_spool_write_is_counted_and_leaves_no_partial_file(tmp_path_factory, sizes):
    directory = tmp_path_factory.mktemp("disk")
    spool = directory / "spool"
    done = subprocess.run(
        [sys.executable, "-c", DISK_CHILD, f"chdb://{directory / 'chdb'}", str(spool), "8192",
         *map(str, sizes)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # the application kept running
    emitted, spooled, dropped = map(int, done.stdout.split())
    assert (emitted, spooled + dropped) == (len(sizes), len(sizes))
    assert dropped == sum(size > 6_000 for size in sizes)  # the batches that do not fit in 8 KiB
    assert len(Spool(spool, max_bytes=1).pending()) == spooled
    assert not [p for p in spool.iterdir() if p.name.endswith(".tmp")]


# --- a crash: how long a finished call stays in memory ---------------------------------------


def unset(monkeypatch, *names: str) -> None:
    """Unset, and restore after the test even those that were unset (the distro sets them)."""
    for name in (*names, "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_the_distro_keeps_the_span_processors_delay_short_for_our_exporter(monkeypatch):
    unset(monkeypatch, "OTEL_TRACES_EXPORTER", "OTEL_BSP_SCHEDULE_DELAY")
    MarginDistro()._configure()
    assert os.environ["OTEL_BSP_SCHEDULE_DELAY"] == str(CLICKHOUSE_SCHEDULE_DELAY_MILLIS)
    assert BatchSpanProcessor._default_schedule_delay_millis() == CLICKHOUSE_SCHEDULE_DELAY_MILLIS


@pytest.mark.parametrize("traces, preset, expected", [
    ("otlp", None, None),  # not our exporter: the SDK's default
    ("otlp,clickhouse", "5000", "5000"),  # the user's value wins
])
def test_the_distro_leaves_the_delay_alone_without_our_exporter_or_when_set(monkeypatch, traces, preset, expected):
    unset(monkeypatch, "OTEL_BSP_SCHEDULE_DELAY")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", traces)
    if preset is not None:
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", preset)
    MarginDistro()._configure()
    assert os.environ.get("OTEL_BSP_SCHEDULE_DELAY") == expected
