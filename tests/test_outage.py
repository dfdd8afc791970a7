"""Outages are visible, and quiet: a few lines a person can act on, and metrics a backend can alert on.

The server is the loopback ClickHouse (``tests/clickhouse_http.py``: real chDB behind the HTTP
interface), stopped and started, or made to lose insert responses; the exporter is the real
one, and its log records are counted as the application would see them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import clickhouse_connect
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_margin import attributes as a
from otel_margin.exporters.health import ExportHealth

from test_exporter import counts, faulty, finished_span, http, llm_attributes, server  # noqa: F401 - fixtures

OURS = "otel_margin"


def batch(start: int, size: int = 5) -> list:
    return [finished_span(llm_attributes(i)) for i in range(start, start + size)]


def records_of(caplog, since: int = 0) -> tuple[list[logging.LogRecord], list[logging.LogRecord]]:
    """(otel-margin's records, everyone else's) at warning level or above, from ``since`` on."""
    records = [r for r in caplog.records[since:] if r.levelno >= logging.WARNING]
    return [r for r in records if r.name.startswith(OURS)], [r for r in records if not r.name.startswith(OURS)]


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_stopped_server_logs_one_line_when_export_fails_and_one_when_the_spool_is_replayed(http, faulty, caplog):
    caplog.set_level(logging.DEBUG)  # everything a user's most verbose configuration would show
    exporter = http(timeout=2.0, drain_interval=0.05)
    assert exporter.export(batch(0)) is SpanExportResult.SUCCESS  # schema and connection in place
    faulty.down()
    try:
        for start in range(5, 45, 5):
            assert exporter.export(batch(start)) is SpanExportResult.SUCCESS  # spooled
        spooled = len(list(Path(exporter.config.spool_dir).glob("*.batch")))
        # The drainer keeps trying while the server is down (it cannot connect each time).
        wait_until(lambda: caplog.text.count("replaying the spool") >= 5)
    finally:
        faulty.up()
    ours, theirs = records_of(caplog)
    assert len(ours) == 1 and theirs == []  # no retry warnings of urllib3 or clickhouse-connect
    failing = ours[0].getMessage()
    assert exporter.config.endpoint in failing and exporter.config.spool_dir in failing
    assert "1 batch(es)" in failing and "replayed in order" in failing  # the spool's size, what happens next
    assert exporter.force_flush(20_000)
    wait_until(lambda: "written to again" in caplog.text)  # the recovery line
    ours, theirs = records_of(caplog)
    assert theirs == [] and not any(r.exc_info for r in ours)
    assert f"replayed {spooled} batch(es), 40 span(s)" in ours[1].getMessage()
    assert counts(http.reader, http.database) == (45, 45)
    assert exporter.stats().replayed_spans == 40


def test_a_replay_whose_responses_are_lost_logs_no_traceback_and_stores_each_row_once(http, faulty, caplog):
    caplog.set_level(logging.WARNING)
    exporter = http(timeout=2.0, drain_interval=0.05)
    assert exporter.export(batch(0)) is SpanExportResult.SUCCESS
    faulty.down()
    try:
        assert exporter.export(batch(5)) is SpanExportResult.SUCCESS  # spooled
    finally:
        faulty.reset_log()
        faulty.lose_insert_responses(4, seconds=0.1)  # each replay commits; its response never comes
        faulty.up()
    assert exporter.force_flush(30_000)
    wait_until(lambda: "written to again" in caplog.text)  # the recovery line
    inserts = [r for r in faulty.requests() if r["settings"].get("insert_deduplication_token")]
    assert len(inserts) == 5  # four replays whose responses were lost, then the one that answered
    ours, theirs = records_of(caplog)
    assert theirs == [] and not any(r.exc_info for r in ours)  # was: a traceback on every drain
    assert "cannot write to ClickHouse" in ours[0].getMessage() and "written to again" in ours[1].getMessage()
    assert counts(http.reader, http.database) == (10, 10)


def test_our_client_is_quiet_but_the_applications_own_clickhouse_client_keeps_its_warnings(http, faulty, caplog):
    caplog.set_level(logging.WARNING)
    exporter = http(timeout=2.0)
    exporter.export(batch(0))
    faulty.down()
    try:
        exporter.export(batch(5))
        assert records_of(caplog)[1] == []
        with pytest.raises(Exception):
            client = clickhouse_connect.get_client(dsn=exporter.config.endpoint, connect_timeout=1)
            client.command("SELECT 1")
    finally:
        faulty.up()
    assert records_of(caplog)[1]  # the application's client: its libraries' warnings are its own to see


def test_repeated_failures_are_summarised_once_a_minute_and_drops_too(caplog):
    caplog.set_level(logging.WARNING)
    now = [0.0]
    spool = (3, 2048)
    tracker = ExportHealth(logging.getLogger("otel_margin.test"), endpoint="http://ch:8123", spool="/s",
                           spool_max_mb=1.0, drain_interval=5.0, spool_size=lambda: spool, clock=lambda: now[0])
    for second in range(0, 150, 5):  # 2.5 minutes of failures, one every 5 s
        now[0] = float(second)
        tracker.failed(ConnectionRefusedError(111, "Connection refused"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 + 2  # the first failure, then at 60 s and 120 s
    assert "ConnectionRefusedError" in lines[0] and "3 batch(es), 2.0 KiB" in lines[0]
    assert "still failing after 60 s (12 more failed attempt(s)" in lines[1]
    assert "still failing after 120 s (12 more" in lines[2]
    now[0] = 150.0
    tracker.replayed(2, 40)
    tracker.succeeded(spool_empty=False)  # the backlog is not written yet: not recovered
    assert len(caplog.records) == 3 and tracker.failing
    now[0] = 152.5
    tracker.replayed(1, 10)
    tracker.succeeded(spool_empty=True)
    assert not tracker.failing
    assert caplog.records[-1].getMessage().endswith(
        "after 150.0 s of failures (30 failed attempt(s)); replayed 3 batch(es), 50 span(s) from the spool in 2.5 s.")
    for second in range(0, 130, 10):
        now[0] = 200.0 + second
        tracker.dropped(7, "the spool /s is full (1.0 MiB)")
    drops = [r.getMessage() for r in caplog.records[4:]]
    assert len(drops) == 3 and drops[0].startswith("otel-margin dropped 7 LLM span(s)")
    assert drops[1].startswith("otel-margin dropped 42 LLM span(s)")  # the six drops since the first line


def metric_points(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    return {metric.name: point.value for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics for metric in sm.metrics for point in metric.data.data_points}


def test_exporter_metrics_show_the_spool_during_an_outage_and_the_replay_after(http, faulty):
    reader = InMemoryMetricReader()
    exporter = http(timeout=2.0, drain_interval=3600, meter_provider=MeterProvider(metric_readers=[reader]))
    exporter.export(batch(0))
    points = metric_points(reader)
    assert points[a.METRIC_EXPORT_EXPORTED] == 5 and points[a.METRIC_EXPORT_SPOOL_BATCHES] == 0
    assert points[a.METRIC_EXPORT_SPOOL_BYTES] == 0 and points[a.METRIC_EXPORT_REPLAYED] == 0
    faulty.down()
    try:
        for start in (5, 10, 15):
            exporter.export(batch(start))
        files = list(Path(exporter.config.spool_dir).glob("*.batch"))
        points = metric_points(reader)
        assert points[a.METRIC_EXPORT_SPOOL_BATCHES] == len(files) == 3
        assert points[a.METRIC_EXPORT_SPOOL_BYTES] == sum(f.stat().st_size for f in files) > 0
        assert points[a.METRIC_EXPORT_EXPORTED] == 5
    finally:
        faulty.up()
    assert exporter.force_flush(20_000)
    points = metric_points(reader)
    assert points[a.METRIC_EXPORT_EXPORTED] == 20 and points[a.METRIC_EXPORT_REPLAYED] == 15
    assert points[a.METRIC_EXPORT_SPOOL_BATCHES] == 0 and points[a.METRIC_EXPORT_SPOOL_BYTES] == 0
    assert counts(http.reader, http.database) == (20, 20)


def test_two_exporters_on_one_meter_provider_are_both_counted(tmp_path):
    from otel_margin.exporters.clickhouse import ClickHouseSpanExporter

    class Client:
        def raw_insert(self, *args, **kwargs):
            return None

        def command(self, *args, **kwargs):
            return None

        def close(self):
            return None

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exporters = [ClickHouseSpanExporter(endpoint="http://127.0.0.1:9", spool_dir=str(tmp_path / f"s{k}"),
                                        client_factory=lambda config: Client(), meter_provider=provider)
                 for k in range(2)]
    exporters[0].export(batch(0, 3))
    exporters[1].export(batch(3, 4))
    assert metric_points(reader)[a.METRIC_EXPORT_EXPORTED] == 7
    for exporter in exporters:
        exporter.shutdown()



def test_embedded_metrics_show_rows_gathering_then_written_and_nothing_replayed(tmp_path):
    from otel_margin.exporters.clickhouse import ClickHouseSpanExporter

    reader = InMemoryMetricReader()
    exporter = ClickHouseSpanExporter(endpoint=f"chdb://{tmp_path / 'chdb'}", spool_dir=str(tmp_path / "spool"),
                                      drain_interval=3600, meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        exporter.export(batch(0, 4))
        exporter.export(batch(4, 6))
        files = list((tmp_path / "spool").glob("*.batch"))
        points = metric_points(reader)
        assert points[a.METRIC_EXPORT_SPOOL_BATCHES] == len(files) == 2
        assert points[a.METRIC_EXPORT_SPOOL_BYTES] == sum(f.stat().st_size for f in files)
        assert points[a.METRIC_EXPORT_EXPORTED] == 0
        assert exporter.force_flush(20_000)
        points = metric_points(reader)
        assert points[a.METRIC_EXPORT_EXPORTED] == 10 and points[a.METRIC_EXPORT_REPLAYED] == 0
        assert points[a.METRIC_EXPORT_SPOOL_BATCHES] == 0 and points[a.METRIC_EXPORT_SPOOL_BYTES] == 0
    finally:
        exporter.shutdown()
