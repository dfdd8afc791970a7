"""The ClickHouse span exporter end to end: real SDK pipeline, real engine (chDB), real HTTP.

Every fault test ends with the same check: each span is in ``llm_calls`` exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path


import clickhouse_connect
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from opentelemetry.context import get_value
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import StatusCode

from clickhouse_http import LoopbackClickHouse, RealClickHouse

from otel_margin import attributes as a
from otel_margin.exporters import clickhouse
from otel_margin.exporters.clickhouse import (
    INSERT_SETTINGS,
    METRIC_EXPORT_DROPPED,
    ClickHouseSpanExporter,
    batch_token,
)
from otel_margin.exporters.rows import COLUMN_NAMES, COLUMNS, FORMAT, encode_rows, span_to_row
from otel_margin.exporters.spool import Spool
from otel_margin.exporters.storage import RELEASE_MARKER, StorageConfig, StorageUnavailable, open_client, session
from otel_margin.schema import apply_schema

from reference_rows import reference_row

TESTS = Path(__file__).parent


def llm_attributes(i: int, **extra) -> dict:
    attrs = {
        a.GEN_AI_OPERATION_NAME: "chat",
        a.GEN_AI_PROVIDER_NAME: "openai",
        a.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        a.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        a.GEN_AI_USAGE_INPUT_TOKENS: 100 + i,
        a.GEN_AI_USAGE_OUTPUT_TOKENS: 20,
        a.MARGIN_FEATURE: "summarize",
        a.MARGIN_CUSTOMER: f"c{i}",
        a.MARGIN_TIER: "pro",
        a.MARGIN_COST_USD: "0.000123456789",
        a.MARGIN_COST_INPUT_USD: "0.000100000000",
        a.MARGIN_COST_OUTPUT_USD: "0.000023456789",
        a.MARGIN_COST_STATUS: "priced",
    }
    attrs.update(extra)
    return attrs


def pipeline(exporter: ClickHouseSpanExporter, *, batch: int = 50) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=50, max_export_batch_size=batch, max_queue_size=100_000)
    )
    return provider


def emit(provider: TracerProvider, start: int, count: int, **extra) -> None:
    tracer = provider.get_tracer("test")
    for i in range(start, start + count):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes=llm_attributes(i, **extra)):
            pass


def counts(client, database: str) -> tuple[int, int]:
    """(rows, distinct span ids) in llm_calls."""
    rows, distinct = client.query(f"SELECT count(), uniqExact(span_id) FROM `{database}`.llm_calls").result_rows[0]
    return rows, distinct


@pytest.fixture
def chdb_config(tmp_path):
    return StorageConfig(
        endpoint=f"chdb://{tmp_path / 'chdb'}", database="otel_margin", spool_dir=str(tmp_path / "spool"), timeout=5
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = os.environ.get("OTEL_MARGIN_TEST_CLICKHOUSE_URL")
    handle = RealClickHouse(url) if url else LoopbackClickHouse(tmp_path_factory.mktemp("chdb-http"))
    yield handle
    handle.stop()


@pytest.fixture
def faulty(server):
    if not server.faults_supported:
        pytest.skip("fault injection needs the loopback server")
    return server


@pytest.fixture
def http(server, tmp_path):
    """An exporter factory on a fresh database of the HTTP server, and a reader client."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    exporters: list[ClickHouseSpanExporter] = []

    def make(**kwargs) -> ClickHouseSpanExporter:
        options = dict(endpoint=server.url, database=database, spool_dir=str(tmp_path / "spool"),
                       timeout=1.0, drain_interval=0.1)
        options.update(kwargs)
        exporter = ClickHouseSpanExporter(**options)
        exporters.append(exporter)
        return exporter

    reader = clickhouse_connect.get_client(dsn=server.url, autogenerate_session_id=False)
    make.reader, make.database = reader, database
    yield make
    for exporter in exporters:
        exporter.shutdown(timeout_millis=2000)
    reader.command(f"DROP DATABASE IF EXISTS `{database}`")
    reader.close()


# --- rows ------------------------------------------------------------------------------------


def finished_span(attributes: dict, *, error: bool = False):
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    span = provider.get_tracer("t").start_span("chat x", attributes=attributes)
    if error:
        span.set_status(StatusCode.ERROR)
    span.end()
    return span


def row_of(span, problems=None) -> dict | None:
    row = span_to_row(span, service_name="svc", problems=problems)
    return None if row is None else dict(zip(COLUMN_NAMES, row, strict=True))


def test_an_llm_span_becomes_one_row_of_wire_values():
    span = finished_span(llm_attributes(7, **{a.GEN_AI_REQUEST_STREAM: True}))
    row = row_of(span)
    assert row["span_id"] == format(span.context.span_id, "016x") and len(row["trace_id"]) == 32
    assert (row["feature"], row["customer"], row["tier"], row["cohort"]) == ("summarize", "c7", "pro", "")
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (107, 20, 0)
    assert row["cost_usd"] == "0.000123456789" and row["cost_other_usd"] == "0"  # exact text, never a float
    assert row["revenue_usd"] is None and row["stream"] is True and row["usage_source"] == "provider"
    assert row["timestamp"] == span.start_time // 1000  # DateTime64(6): Unix microseconds
    assert row["duration_ms"] == (span.end_time - span.start_time) / 1e6


def test_non_llm_span_is_skipped_and_unattributed_unpriced_defaults_apply():
    assert row_of(finished_span({"http.method": "GET"})) is None
    row = row_of(finished_span({a.GEN_AI_OPERATION_NAME: "chat"}))
    assert row["feature"] == a.UNATTRIBUTED and row["cost_usd"] is None and row["cost_status"] == "unpriced"


def test_wrong_types_are_coerced_or_emptied_and_counted():
    problems: Counter[str] = Counter()
    span = finished_span(llm_attributes(
        1, **{a.GEN_AI_USAGE_INPUT_TOKENS: "12", a.GEN_AI_USAGE_OUTPUT_TOKENS: -3, a.MARGIN_COST_USD: "twelve",
              a.MARGIN_REVENUE_USD: 0.25, a.MARGIN_CUSTOMER: 42, a.MARGIN_SAVED_USD: "NaN",
              a.MARGIN_COST_INPUT_USD: "0.0000000000015"}))
    row = row_of(span, problems)
    assert (row["input_tokens"], row["output_tokens"], row["customer"]) == (12, 0, "42")
    assert row["cost_usd"] is None and row["revenue_usd"] == "0.250000000000" and row["saved_usd"] == "0"
    # -3 output tokens cannot be stored: the row is stored as invalid, no cost priced from the count.
    assert row["cost_status"] == "invalid" and row["cost_input_usd"] == "0"
    assert problems == Counter({"input_tokens:coerced": 1, "output_tokens:invalid": 1, "cost_usd:invalid": 1,
                                "revenue_usd:coerced": 1, "customer:coerced": 1, "saved_usd:invalid": 1})
    row = row_of(finished_span(llm_attributes(1, **{a.MARGIN_COST_INPUT_USD: "0.0000000000015"})))
    assert row["cost_input_usd"] == "0.000000000002"  # 13 decimals: rounded half-even to the column's 12


def test_a_string_utf8_cannot_carry_is_repaired_and_counted():
    problems: Counter[str] = Counter()
    row = span_to_row(finished_span(llm_attributes(1, **{a.MARGIN_CUSTOMER: "bad\ud800name"})),
                      service_name="svc", problems=problems)
    body = encode_rows([row], problems).body
    assert "bad\ufffdname".encode() in body and problems == Counter({"customer:coerced": 1})


# The round trip: any attribute values → our row text → ClickHouse, compared with the row
# built the reference way (typed Python values: Decimal, datetime) and inserted by
# clickhouse-connect's own typed Native insert, into the same engine.

_money_text = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.decimals(min_value=-(10**27), max_value=10**27, places=14).map(str),
    st.sampled_from(["1e-5", " 12.5 ", "+3", ".5", "5.", "-0", "0" * 30 + "1", "1" * 26, "1" * 27, "１２"]),
)
_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["tab\there", "line\nbreak", 'quote"s', "back\\slash", "nul\x00", "€ ünïcödé 😀", "[1,2]", "null"])
_attribute_values = st.one_of(
    st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), _text, _money_text,
    st.lists(st.text(max_size=5), max_size=3), st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
)
_keys = st.sampled_from([
    a.GEN_AI_USAGE_INPUT_TOKENS, a.GEN_AI_USAGE_OUTPUT_TOKENS, a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    a.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, a.MARGIN_COST_USD, a.MARGIN_COST_INPUT_USD, a.MARGIN_COST_OTHER_USD,
    a.MARGIN_REVENUE_USD, a.MARGIN_SAVED_USD, a.MARGIN_FEATURE, a.MARGIN_CUSTOMER, a.MARGIN_COST_STATUS,
    a.MARGIN_USAGE_SOURCE, a.GEN_AI_REQUEST_STREAM, a.ERROR_TYPE, a.GEN_AI_RESPONSE_MODEL, a.MARGIN_UNIT_ID,
    a.MARGIN_REQUEST_HASH,
])


@pytest.fixture
def twin_tables(tmp_path):
    """Two tables of llm_calls' columns in one chDB: ours and the reference insert's.

    Function-scoped because chDB hosts one directory per process at a time (hypothesis
    runs every example inside one call of the test, so it is still made once).
    """
    client = clickhouse_connect.get_client(interface="chdb", path=str(tmp_path / "twins"))
    columns = ", ".join(f"`{name}` {kind}" for name, kind in COLUMNS)
    for table in ("ours", "reference"):
        client.command(f"CREATE TABLE {table} ({columns}) ENGINE = Memory")
    yield client
    client.close()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(attrs=st.dictionaries(_keys, _attribute_values, max_size=10), error=st.booleans())
def test_any_attribute_values_round_trip_through_chdb_like_the_typed_reference(twin_tables, attrs, error):
    client = twin_tables
    span = finished_span({a.GEN_AI_OPERATION_NAME: "chat", **attrs}, error=error)
    ours: Counter[str] = Counter()
    theirs: Counter[str] = Counter()
    row = span_to_row(span, service_name="svc", problems=ours)
    expected = reference_row(span, service_name="svc", problems=theirs)
    client.raw_insert("ours", column_names=list(COLUMN_NAMES), insert_block=encode_rows([row], ours).body,
                      fmt=FORMAT)
    client.insert("reference", [[expected[name] for name in COLUMN_NAMES]], column_names=list(COLUMN_NAMES),
                  column_type_names=[kind for _, kind in COLUMNS])
    try:
        stored = client.query("SELECT * FROM ours").result_rows
        assert stored == client.query("SELECT * FROM reference").result_rows and len(stored) == 1
        assert ours == theirs
    finally:
        client.command("TRUNCATE TABLE ours")
        client.command("TRUNCATE TABLE reference")


# --- embedded chDB ---------------------------------------------------------------------------


def test_pipeline_into_chdb_writes_every_span_once_with_exact_money(chdb_config):
    exporter = ClickHouseSpanExporter(
        endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir, drain_interval=0.1)
    provider = pipeline(exporter)
    emit(provider, 0, 120)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /health"):
        pass
    provider.shutdown()
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (120, 120)
        total, services = client.query(
            "SELECT sum(cost_usd), any(service_name) FROM otel_margin.llm_calls").result_rows[0]
        assert total == Decimal("0.000123456789") * 120 and services == "checkout"
        assert client.command("SELECT sum(calls) FROM otel_margin.llm_calls_hourly") == 120
    assert exporter.stats().skipped_spans == 1 and exporter.stats().exported_spans == 120
    assert list(Path(chdb_config.spool_dir).glob("*.batch")) == []


def test_same_batch_twice_is_stored_once_in_raw_and_rollup(chdb_config):
    exporter = ClickHouseSpanExporter(
        endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir, drain_interval=30)
    spans = [finished_span(llm_attributes(i)) for i in range(10)]
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.force_flush(10_000)
    assert exporter.export(spans) is SpanExportResult.SUCCESS  # e.g. the replay after a crash
    assert exporter.force_flush(10_000)
    exporter.shutdown()
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (10, 10)
        assert client.command("SELECT sum(calls) FROM otel_margin.llm_calls_hourly") == 10


def test_kill_9_mid_export_then_a_new_exporter_replays_the_spool_exactly_once(chdb_config, tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, chdb_config.endpoint, chdb_config.spool_dir, "100000", "0.05"],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    acknowledged = 0
    deadline = time.monotonic() + 30
    while acknowledged < 1000 and time.monotonic() < deadline:
        acknowledged = int(child.stdout.readline().split()[1])
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # What a writer killed inside write() leaves behind: a half-written temporary file.
    half = Path(chdb_config.spool_dir) / ".99999999999999999999-00000001-000001.batch.tmp"
    half.write_text('{"v": 1, "token": "x", "columns": ["span_id"], "rows": 5}\n["a"]')
    os.utime(half, (time.time() - 3600, time.time() - 3600))

    exporter = ClickHouseSpanExporter(
        endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir, drain_interval=30)
    assert exporter.force_flush(20_000)
    exporter.shutdown()
    with session(chdb_config) as client:
        rows, distinct = counts(client, "otel_margin")
        customers = client.command("SELECT uniqExact(customer) FROM otel_margin.llm_calls "
                                   "WHERE toUInt64(substring(customer, 2)) < {n:UInt64}", parameters={"n": acknowledged})
    assert rows == distinct >= acknowledged  # no duplicate; nothing acknowledged is missing
    assert customers == acknowledged
    assert not half.exists()


def test_spooled_batches_gather_into_one_insert_with_exact_money(chdb_config):
    exporter = ClickHouseSpanExporter(
        endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir, drain_interval=30)
    for start in range(0, 1000, 50):
        assert exporter.export([finished_span(llm_attributes(i)) for i in range(start, start + 50)]) \
            is SpanExportResult.SUCCESS
    assert exporter.force_flush(20_000)
    exporter.shutdown()
    assert (exporter.stats().spooled_batches, exporter.stats().inserts, exporter.stats().exported_spans) == (20, 1, 1000)
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (1000, 1000)
        total, tokens = client.query(
            "SELECT sum(cost_usd), sum(input_tokens) FROM otel_margin.llm_calls").result_rows[0]
        assert total == Decimal("0.000123456789") * 1000 and tokens == sum(100 + i for i in range(1000))


def test_a_periodic_drain_inserts_what_waited_and_leaves_arrivals_for_the_next(chdb_config, monkeypatch):
    monkeypatch.setattr(clickhouse, "INSERT_MIN_BYTES", 0)  # no gathering: a drain inserts what waits
    exporter = None

    class ArrivalPerInsert:
        """chDB, and one more batch exported while each insert runs (a backlog being exported)."""

        def __init__(self, client):
            self.client, self.arrived = client, 0

        def raw_insert(self, *args, **kwargs):
            if self.arrived < 5:
                start = 100 + 20 * self.arrived
                self.arrived += 1
                exporter.export([finished_span(llm_attributes(i)) for i in range(start, start + 20)])
            return self.client.raw_insert(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.client, name)

    exporter = ClickHouseSpanExporter(endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir,
                                      drain_interval=600, client_factory=lambda c: ArrivalPerInsert(open_client(c)))
    # The drainer's first look, at start, found nothing; the next is 600 s away.
    wait_until(lambda: any(frame.f_code.co_name == "_wait_for_next_drain"
                           for frame, _ in traceback.walk_stack(sys._current_frames()[exporter._drainer.ident])))
    for start in (0, 50):
        exporter.export([finished_span(llm_attributes(i)) for i in range(start, start + 50)])
    # The drainer's periodic drain: both waiting batches in one insert; the one that arrived
    # during it waits (without the bound, the drain went on with an insert per arrival).
    assert exporter._drain(time.monotonic() + 20, periodic=True) is False
    assert (exporter.stats().inserts, exporter.stats().exported_spans) == (1, 100)
    assert exporter.force_flush(20_000)  # a flush empties the spool, arrivals included
    exporter.shutdown()
    assert exporter.stats().exported_spans == 200
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (200, 200)


def test_periodic_drains_let_few_rows_gather_until_enough_wait_or_the_oldest_waited_long_enough(
        chdb_config, monkeypatch):
    exporter = ClickHouseSpanExporter(endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir,
                                      drain_interval=600)  # the drainer sleeps; this test drains
    exporter.export([finished_span(llm_attributes(i)) for i in range(20)])
    assert exporter._drain(time.monotonic() + 20, periodic=True) is False  # a few rows, just spooled: they wait
    assert exporter.stats().inserts == 0 and held(chdb_config)  # chDB held for them, should someone ask
    monkeypatch.setattr(clickhouse, "INSERT_MIN_BYTES", 1)  # enough bytes wait
    assert exporter._drain(time.monotonic() + 20, periodic=True) is True
    exporter.export([finished_span(llm_attributes(i)) for i in range(20, 40)])
    monkeypatch.setattr(clickhouse, "INSERT_MIN_BYTES", 10**9)
    assert exporter._drain(time.monotonic() + 20, periodic=True) is False
    monkeypatch.setattr(clickhouse, "GATHER_DRAINS", 0)  # the oldest batch has waited long enough
    assert exporter._drain(time.monotonic() + 20, periodic=True) is True
    assert exporter.stats().inserts == 2
    exporter.shutdown()
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (40, 40)


def test_a_group_committed_before_the_drainer_died_is_not_stored_twice(chdb_config):
    spool = Spool(chdb_config.spool_path, max_bytes=10**8)
    for start in range(0, 60, 20):
        spans = [finished_span(llm_attributes(i)) for i in range(start, start + 20)]
        rows = [span_to_row(span, service_name="svc") for span in spans]
        spool.append(batch_token(rows), encode_rows(rows))
    group = spool.next_ingest(max_rows=1000, max_bytes=10**8)
    assert len(group.members) == 3
    with session(chdb_config) as client:  # the drainer's insert commits ...
        apply_schema(client, database="otel_margin")
        client.raw_insert("otel_margin.llm_calls", insert_block=group.body,
                          fmt=FORMAT, settings={**INSERT_SETTINGS, "insert_deduplication_token": group.token})
    group.members[0].unlink()  # ... and it dies after removing one member of three
    exporter = ClickHouseSpanExporter(endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir,
                                      drain_interval=30)
    assert exporter.force_flush(20_000)
    exporter.shutdown()
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (60, 60)
        assert client.command("SELECT sum(calls) FROM otel_margin.llm_calls_hourly") == 60
    assert spool.pending() == [] and not group.path.exists()


def test_a_batch_spooled_by_the_previous_release_is_replayed_exactly(chdb_config):
    """Version-1 spool files: JSON lines of the old column order, timestamps in Unix µs."""
    now_us = time.time_ns() // 1000
    columns = ["timestamp", "trace_id", "span_id", "service_name", "feature", "customer", "operation",
               "input_tokens", "cost_usd", "revenue_usd", "saved_usd", "duration_ms", "stream"]
    rows = [[now_us + i, f"{i:032x}", f"{i:016x}", "old", "summarize", f"c{i}", "chat", 7, "0.000000000123",
             None, "0E-12", 1.5, False] for i in range(4)]
    header = {"v": 1, "token": "v1-token", "columns": columns, "rows": len(rows)}
    write_old_batch(chdb_config, header, "\n".join(json.dumps(row) for row in rows).encode() + b"\n")
    replay_spool(chdb_config)
    with session(chdb_config) as client:
        stored = client.query("SELECT toUnixTimestamp64Micro(timestamp), span_id, customer, cost_usd, revenue_usd,"
                              " saved_usd, cost_status FROM otel_margin.llm_calls ORDER BY span_id").result_rows
    assert stored == [(now_us + i, f"{i:016x}", f"c{i}", Decimal("0.000000000123"), None, Decimal(0), "")
                      for i in range(4)]


def test_a_json_batch_spooled_by_the_previous_release_is_inserted_beside_native_ones(chdb_config):
    """Version-2 spool files: JSONCompactEachRow rows, timestamps as text; inserted as they are."""
    now_us = time.time_ns() // 1000
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now_us // 1_000_000)) + f".{now_us % 1_000_000:06d}"
    rows = [[text, f"{i:032x}", f"{i:016x}", "old", 1.5, "summarize", f"c{i}", "chat",
             7, "0.000000000123", None] for i in range(3)]
    columns = ["timestamp", "trace_id", "span_id", "service_name", "duration_ms", "feature", "customer",
               "operation", "input_tokens", "cost_usd", "revenue_usd"]
    body = ",".join(json.dumps(row) for row in rows).encode()
    header = {"v": 2, "token": "v2-token", "format": "JSONCompactEachRow", "columns": columns, "rows": 3,
              "bytes": len(body)}
    write_old_batch(chdb_config, header, body)
    Spool(chdb_config.spool_path, max_bytes=10**8).append(
        "native", encode_rows([span_to_row(finished_span(llm_attributes(9)), service_name="svc")]))
    replay_spool(chdb_config)
    with session(chdb_config) as client:
        stored = client.query("SELECT customer, cost_usd, toUnixTimestamp64Micro(timestamp) = {t:Int64}"
                              " FROM otel_margin.llm_calls ORDER BY customer", parameters={"t": now_us}).result_rows
    assert stored == [("c0", Decimal("0.000000000123"), 1), ("c1", Decimal("0.000000000123"), 1),
                      ("c2", Decimal("0.000000000123"), 1), ("c9", Decimal("0.000123456789"), 0)]


def write_old_batch(config, header: dict, body: bytes) -> None:
    """A batch file as an earlier release wrote it: a JSON header line, then ``body``."""
    path = Path(config.spool_dir) / "00000000000000000001-00000001-000001.batch"
    path.parent.mkdir(parents=True)
    path.write_bytes(json.dumps(header).encode() + b"\n" + body)


def replay_spool(config) -> None:
    exporter = ClickHouseSpanExporter(endpoint=config.endpoint, spool_dir=config.spool_dir, drain_interval=30)
    assert exporter.force_flush(20_000)
    exporter.shutdown()


def test_two_processes_and_a_reader_share_one_chdb_directory(chdb_config, tmp_path):
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, chdb_config.endpoint, chdb_config.spool_dir, "400", "0.05",
                          str(offset)], stdout=subprocess.DEVNULL, cwd=tmp_path)
        for offset in (0, 1_000_000)
    ]
    reads = 0
    while any(child.poll() is None for child in children):
        try:
            with session(chdb_config) as client:  # the reader: `otel-margin report` in another terminal
                client.query("SELECT count() FROM system.one")
                reads += 1
        except Exception:  # noqa: BLE001 - the directory is busy while a writer drains
            pass
        time.sleep(0.05)
    assert [child.returncode for child in children] == [0, 0]
    exporter = ClickHouseSpanExporter(endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir)
    assert exporter.force_flush(20_000)
    exporter.shutdown()
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (800, 800)
    assert reads > 0


CHILD = r"""
import sys, time
sys.path.insert(0, %r)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from otel_margin import attributes as a
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter

endpoint, spool, total, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
offset = int(sys.argv[5]) if len(sys.argv) > 5 else 0


class Acknowledging(ClickHouseSpanExporter):
    acknowledged = 0

    def export(self, spans):
        result = super().export(spans)
        if result is SpanExportResult.SUCCESS:  # durably spooled: it must survive kill -9
            self.acknowledged += len(spans)
            print("acknowledged", self.acknowledged, flush=True)
        return result


exporter = Acknowledging(endpoint=endpoint, spool_dir=spool, drain_interval=interval)
provider = TracerProvider(resource=Resource.create({"service.name": "worker"}))
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=20, max_export_batch_size=50))
tracer = provider.get_tracer("child")
for i in range(offset, offset + total):
    with tracer.start_as_current_span("chat m", attributes={
        a.GEN_AI_OPERATION_NAME: "chat", a.MARGIN_CUSTOMER: "c%%d" %% i, a.MARGIN_COST_USD: "0.5"}):
        pass
    if i %% 50 == 0:
        time.sleep(0.005)  # a steady producer, not one burst
provider.shutdown()
""" % str(TESTS)


# --- the chDB lease: held across drains, given up when asked ----------------------------------


def held(config: StorageConfig) -> bool:
    """Some process has the chDB directory open (its lock file is flock'ed)."""
    from otel_margin.exporters.storage import _held_by_a_process

    return _held_by_a_process(config.chdb_path)


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def lease_child(chdb_config, tmp_path):
    """Starts :class:`LeaseChild` workers; kills any left running when the test ends."""
    children: list[LeaseChild] = []

    def start() -> LeaseChild:
        children.append(LeaseChild(chdb_config, tmp_path))
        return children[-1]

    yield start
    for child in children:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


class LeaseChild:
    """A worker process exporting a steady stream into chDB until told to pause or stop."""

    def __init__(self, config: StorageConfig, tmp_path: Path, drain_interval: float = 0.1) -> None:
        self.pause, self.stop = tmp_path / "pause", tmp_path / "stop"
        self.process = subprocess.Popen(
            [sys.executable, "-c", LEASE_CHILD, config.endpoint, config.spool_dir, str(self.pause), str(self.stop),
             str(drain_interval)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
        self.openings = self.emitted = self.exported = 0

    def read_until(self, condition) -> None:
        """Read the child's progress lines until ``condition(self)`` holds."""
        deadline = time.monotonic() + 30
        while not condition(self):
            assert time.monotonic() < deadline and self.process.poll() is None, "the child stalled"
            _, emitted, openings, exported = self.process.stdout.readline().split()
            self.emitted, self.openings, self.exported = int(emitted), int(openings), int(exported)

    def finish(self) -> int:
        """Stop it; the spans it emitted (all flushed at its shutdown)."""
        self.stop.touch()
        out, _ = self.process.communicate(timeout=60)
        assert self.process.returncode == 0
        _, emitted, openings, exported = out.splitlines()[-1].split()
        self.emitted, self.openings, self.exported = int(emitted), int(openings), int(exported)
        return self.emitted


def report_in_another_process(config: StorageConfig, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``otel-margin report --format json`` on ``config``'s chDB, run as another process would."""
    return subprocess.run(
        [sys.executable, "-m", "otel_margin.cli", "report", "--since", "1", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=cwd,
        env={**os.environ, "OTEL_EXPORTER_CLICKHOUSE_ENDPOINT": config.endpoint,
             "OTEL_EXPORTER_CLICKHOUSE_TIMEOUT": "10"})


def test_drains_reuse_one_chdb_opening_and_a_stale_release_request_is_ignored(chdb_config, monkeypatch):
    monkeypatch.setattr(clickhouse, "INSERT_MIN_BYTES", 0)  # each small batch gets a drain of its own
    stale = chdb_config.chdb_path / RELEASE_MARKER
    stale.parent.mkdir(parents=True)
    stale.touch()
    os.utime(stale, (time.time() - 3600, time.time() - 3600))  # left by an asker that died
    exporter = ClickHouseSpanExporter(endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir,
                                      drain_interval=0.1)
    for start in range(0, 100, 20):
        exporter.export([finished_span(llm_attributes(i)) for i in range(start, start + 20)])
        wait_until(lambda: exporter.stats().exported_spans == start + 20)  # a drain of its own
    stats = exporter.stats()
    exporter.shutdown()
    assert stats.inserts == 5 and stats.openings < stats.inserts  # drains reused the opening
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (100, 100)


def test_a_flush_keeps_its_chdb_opening_for_the_next_flush_and_the_drainer_ends_it(chdb_config):
    exporter = ClickHouseSpanExporter(endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir,
                                      drain_interval=0.5)
    for start in (0, 20):  # a service that flushes after each request
        exporter.export([finished_span(llm_attributes(i)) for i in range(start, start + 20)])
        assert exporter.force_flush(20_000)
    assert exporter.stats().openings == 1 and held(chdb_config)  # the second flush reused the first's
    wait_until(lambda: not held(chdb_config))  # idle for two drain intervals: the drainer closed it
    exporter.shutdown()
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (40, 40)


def test_an_insert_error_closes_the_held_client_and_the_next_drain_reopens(tmp_path):
    opened: list[object] = []

    class Client:
        def __init__(self):
            self.closed = False
            self.fail = not opened  # the first client's insert fails once

        def raw_insert(self, *args, **kwargs):
            if self.fail:
                self.fail = False
                raise ConnectionError("engine hiccup")

        def command(self, *args, **kwargs):
            return None

        def query(self, *args, **kwargs):
            raise AssertionError("not expected")

        def close(self):
            self.closed = True

    def factory(config):
        opened.append(Client())
        return opened[-1]

    exporter = ClickHouseSpanExporter(endpoint=f"chdb://{tmp_path / 'db'}", spool_dir=str(tmp_path / "s"),
                                      drain_interval=0.05, client_factory=factory)
    exporter._schema_ready = True  # the fake client has no schema to apply
    assert exporter.export([finished_span(llm_attributes(0))]) is SpanExportResult.SUCCESS
    wait_until(lambda: exporter.stats().exported_spans == 1)
    assert len(opened) == 2 and opened[0].closed and not opened[1].closed  # held after the good drain
    exporter.shutdown()
    assert opened[1].closed


def test_the_lease_is_kept_while_rows_gather_for_an_insert(chdb_config, monkeypatch):
    monkeypatch.setattr(clickhouse, "INSERT_MIN_BYTES", 10**9)
    monkeypatch.setattr(clickhouse, "GATHER_DRAINS", 10**6)  # rows gather until flushed
    exporter = ClickHouseSpanExporter(endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir,
                                      drain_interval=0.05)
    exporter.export([finished_span(llm_attributes(i)) for i in range(10)])
    assert exporter.force_flush(20_000) and held(chdb_config)
    exporter.export([finished_span(llm_attributes(i)) for i in range(10, 20)])  # gathering
    time.sleep(1.0)  # 20 drain intervals without an insert: idle, but rows wait
    assert held(chdb_config) and exporter.stats().openings == 1
    assert exporter.force_flush(20_000)
    wait_until(lambda: not held(chdb_config))  # nothing waits any more: closed once idle
    exporter.shutdown()
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (20, 20)


def test_a_report_in_another_process_gets_the_directory_a_flush_kept_open(chdb_config, tmp_path):
    exporter = ClickHouseSpanExporter(endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir,
                                      drain_interval=600)  # the drainer's own drains are far away
    exporter.export([finished_span(llm_attributes(i)) for i in range(10)])
    assert exporter.force_flush(20_000) and held(chdb_config)
    report = report_in_another_process(chdb_config, tmp_path)
    assert report.returncode == 0, report.stderr  # the drainer looked, and gave the flush's opening up
    assert json.loads(report.stdout)["total"][0]["calls"] == 10
    exporter.shutdown()


def test_a_report_in_another_process_sees_the_rows_still_gathering(chdb_config, tmp_path, monkeypatch):
    monkeypatch.setattr(clickhouse, "INSERT_MIN_BYTES", 10**9)
    monkeypatch.setattr(clickhouse, "GATHER_DRAINS", 10**6)  # rows gather until flushed, or asked for
    exporter = ClickHouseSpanExporter(endpoint=chdb_config.endpoint, spool_dir=chdb_config.spool_dir,
                                      drain_interval=0.05)
    exporter.export([finished_span(llm_attributes(i)) for i in range(10)])
    assert exporter.force_flush(20_000)
    exporter.export([finished_span(llm_attributes(i)) for i in range(10, 25)])  # gathering, lease held
    report = report_in_another_process(chdb_config, tmp_path)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["total"][0]["calls"] == 25  # the holder inserted them before giving up
    exporter.shutdown()


def test_the_drain_interval_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_DRAIN_INTERVAL", "0.05")
    inserted = threading.Event()

    class Client:
        def raw_insert(self, *args, **kwargs):
            inserted.set()

        def close(self):
            pass

    exporter = ClickHouseSpanExporter(endpoint=f"chdb://{tmp_path / 'db'}", spool_dir=str(tmp_path / "s"),
                                      client_factory=lambda config: Client())
    exporter._schema_ready = True  # the fake client has no schema to apply
    assert exporter.config.drain_interval == 0.05
    exporter.export([finished_span(llm_attributes(0))])
    assert inserted.wait(4)  # the default interval (5 s) would not have drained yet
    exporter.shutdown()


def test_a_report_in_another_process_gets_the_directory_from_the_holder(chdb_config, tmp_path, lease_child):
    child = lease_child()
    child.read_until(lambda c: c.exported >= 300)
    assert held(chdb_config)  # spans flow: the exporter keeps chDB open between drains
    with pytest.raises(StorageUnavailable):
        open_client(chdb_config)  # an exporter's own drain does not ask; it waits its turn
    report = report_in_another_process(chdb_config, tmp_path)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["total"][0]["calls"] > 0
    assert "Cannot lock file" not in report.stderr  # it asked, and never tried the held directory
    assert not (chdb_config.chdb_path / RELEASE_MARKER).exists()
    openings = child.openings
    child.read_until(lambda c: c.openings > openings)  # it gave chDB up, and opened it again to go on
    emitted = child.finish()
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (emitted, emitted)


def test_the_holder_closes_chdb_once_spans_stop(chdb_config, tmp_path, lease_child):
    child = lease_child()
    child.read_until(lambda c: c.exported >= 300)
    assert held(chdb_config)
    child.pause.touch()
    wait_until(lambda: not held(chdb_config))  # idle for two drain intervals: closed
    assert child.process.poll() is None
    client = open_client(chdb_config)  # without asking
    client.close()
    assert not (chdb_config.chdb_path / RELEASE_MARKER).exists()
    emitted = child.finish()
    with session(chdb_config) as client:
        assert counts(client, "otel_margin") == (emitted, emitted)


def test_kill_9_of_the_holder_frees_the_directory(chdb_config, tmp_path, lease_child):
    child = lease_child()
    child.read_until(lambda c: c.exported >= 100)
    assert held(chdb_config)
    os.kill(child.process.pid, signal.SIGKILL)
    child.process.wait()
    assert not held(chdb_config)  # chDB's lock is an flock: the kernel dropped it with the process
    with session(chdb_config) as client:
        rows, distinct = counts(client, "otel_margin")
    assert rows == distinct >= 100


LEASE_CHILD = r"""
import os, sys, time
sys.path.insert(0, %r)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otel_margin import attributes as a
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter

endpoint, spool, pause, stop, interval = sys.argv[1:6]
exporter = ClickHouseSpanExporter(endpoint=endpoint, spool_dir=spool, drain_interval=float(interval))
provider = TracerProvider(resource=Resource.create({"service.name": "worker"}))
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=20, max_export_batch_size=50))
tracer = provider.get_tracer("child")
i = 0
while not os.path.exists(stop):
    if os.path.exists(pause):
        time.sleep(0.02)
        continue
    for _ in range(10):  # about 1,000 spans a second
        with tracer.start_as_current_span("chat m", attributes={
                a.GEN_AI_OPERATION_NAME: "chat", a.MARGIN_CUSTOMER: "c%%d" %% i, a.MARGIN_COST_USD: "0.5"}):
            pass
        i += 1
    time.sleep(0.01)
    if i %% 100 == 0:
        stats = exporter.stats()
        print("progress", i, stats.openings, stats.exported_spans, flush=True)
provider.shutdown()
stats = exporter.stats()
print("done", i, stats.openings, stats.exported_spans, flush=True)
""" % str(TESTS)


# --- ClickHouse over HTTP --------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, "lz4", "zstd"])
def test_pipeline_over_http_writes_every_span_once(http, compress):
    exporter = http(compress=compress)
    provider = pipeline(exporter)
    emit(provider, 0, 60)
    provider.shutdown()
    assert counts(http.reader, http.database) == (60, 60)
    total = http.reader.query(f"SELECT sum(cost_usd) FROM `{http.database}`.llm_calls").result_rows[0][0]
    assert total == Decimal("0.000123456789") * 60


def test_http_errors_are_retried_within_the_deadline(http, faulty):
    exporter = http(timeout=5.0)
    faulty.fail_next(3)
    spans = [finished_span(llm_attributes(i)) for i in range(5)]
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert counts(http.reader, http.database) == (5, 5)
    assert list(Path(exporter.config.spool_dir).glob("*.batch")) == []  # written directly, not spooled


def test_insert_committed_but_response_lost_is_stored_once(http, faulty):
    exporter = http(timeout=1.0)
    exporter.export([finished_span(llm_attributes(0))])  # schema and connection in place
    faulty.reset_log()
    faulty.lose_insert_responses(1, seconds=1.5)
    spans = [finished_span(llm_attributes(i)) for i in range(1, 8)]
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.force_flush(10_000)
    assert counts(http.reader, http.database) == (8, 8)
    tokens = [r["settings"].get("insert_deduplication_token") for r in faulty.requests()
              if r["settings"].get("insert_deduplication_token")]
    assert len(tokens) >= 2 and len(set(tokens)) == 1  # sent again, same token, stored once


def test_server_down_under_steady_load_then_back_every_span_once(http, faulty):
    exporter = http(timeout=0.5)
    provider = pipeline(exporter, batch=20)
    produced = 0

    def load():
        nonlocal produced
        for start in range(0, 300, 10):
            emit(provider, start, 10)
            produced = start + 10
            time.sleep(0.02)

    writer = threading.Thread(target=load)
    writer.start()
    time.sleep(0.2)
    faulty.down()
    time.sleep(1.5)
    faulty.up()
    writer.join()
    provider.shutdown()
    assert counts(http.reader, http.database) == (300, 300)
    assert exporter.stats().spooled_batches > 0  # the outage really went through the spool


def test_spool_replays_after_a_restart(http, faulty):
    first = http(timeout=0.3)
    faulty.down()
    try:
        assert first.export([finished_span(llm_attributes(i)) for i in range(6)]) is SpanExportResult.SUCCESS
        first.shutdown(timeout_millis=300)  # cannot flush: the server is down
    finally:
        faulty.up()
    assert len(list(Path(first.config.spool_dir).glob("*.batch"))) == 1
    second = http()
    assert second.force_flush(10_000)
    assert counts(http.reader, http.database) == (6, 6)


def test_spool_full_drops_and_counts_in_the_metric(http, faulty, caplog):
    reader = InMemoryMetricReader()
    exporter = http(timeout=0.2, spool_max_mb=0.0005, meter_provider=MeterProvider(metric_readers=[reader]))
    faulty.down()
    try:
        results = [exporter.export([finished_span(llm_attributes(i))]) for i in range(8)]
    finally:
        faulty.up()
    dropped = exporter.stats().dropped_spans
    assert SpanExportResult.FAILURE in results and dropped == results.count(SpanExportResult.FAILURE)
    points = [
        point.value
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics for metric in sm.metrics if metric.name == METRIC_EXPORT_DROPPED
        for point in metric.data.data_points
    ]
    assert points == [dropped]
    assert "dropped" in caplog.text


def test_exporter_traffic_is_not_traced(tmp_path):
    seen: list[object] = []

    class Client:
        def raw_insert(self, *args, **kwargs):
            seen.append(get_value("suppress_instrumentation"))

        def command(self, *args, **kwargs):
            return None

        def close(self):
            return None

    exporter = ClickHouseSpanExporter(endpoint="http://127.0.0.1:9", spool_dir=str(tmp_path / "s"),
                                      client_factory=lambda config: Client())
    assert exporter.export([finished_span(llm_attributes(0))]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert seen == [True]
