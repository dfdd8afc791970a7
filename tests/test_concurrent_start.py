"""Reports while writers start: several worker processes on one embedded (chDB) store.

Real worker processes (the SDK pipeline and the exporter), real chDB, and ``otel-margin report``
run as a user runs it, in another process, from the workers' first second. What must hold:
a report never fails or blames an upgrade while the service starts (it says there is no data
yet, or shows it); it sees every call spooled before it asked, whichever spool each worker uses;
and chDB's "Cannot lock file … Another server instance" never reaches anyone's stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from otel_margin import attributes as a
from otel_margin.exporters.catchup import SPOOLS_DIR, register_spool, registered_spools
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.exporters.storage import StorageConfig, session
from otel_margin.schema import apply_schema

from test_exporter import finished_span, llm_attributes

TESTS = Path(__file__).parent
LOCK_MESSAGE = "Cannot lock file"


def report(endpoint: str, cwd: Path, database: str = "otel_margin") -> subprocess.CompletedProcess[str]:
    """``otel-margin report --format json`` in another process, as a user in another terminal runs it."""
    return subprocess.run(
        [sys.executable, "-m", "otel_margin.cli", "report", "--since", "1", "--format", "json"],
        capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**os.environ, "OTEL_EXPORTER_CLICKHOUSE_ENDPOINT": endpoint,
             "OTEL_EXPORTER_CLICKHOUSE_DATABASE": database, "OTEL_EXPORTER_CLICKHOUSE_TIMEOUT": "30"})


def calls_in(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    assert LOCK_MESSAGE not in result.stderr and "upgrade" not in result.stderr
    total = json.loads(result.stdout)["total"]
    return total[0]["calls"] if total else 0


def stored(config: StorageConfig) -> tuple[int, int]:
    with session(config) as client:
        return client.query("SELECT count(), uniqExact(span_id) FROM otel_margin.llm_calls").result_rows[0]


# --- one process spools, another reports ------------------------------------------------------


def test_a_report_before_anything_was_exported_says_no_data_yet(tmp_path):
    endpoint = f"chdb://{tmp_path / 'chdb'}"
    result = report(endpoint, tmp_path)
    assert calls_in(result) == 0
    assert "no LLM calls recorded yet" in result.stderr
    nothing_yet = json.loads(result.stdout)
    with session(StorageConfig(endpoint=endpoint)) as client:
        apply_schema(client)  # the schema, still without a row
    empty = json.loads(report(endpoint, tmp_path).stdout)
    assert nothing_yet.keys() == empty.keys() and nothing_yet["range"] == empty["range"]  # the same shape
    assert not _rows_in(nothing_yet) and not _rows_in(empty)  # every table, at any depth, without a row


def _rows_in(value: object) -> int:
    """How many rows any table of a report's JSON holds (tables are lists, at any depth)."""
    if isinstance(value, dict):
        return sum(_rows_in(item) for item in value.values())
    if isinstance(value, list):
        return len(value) + sum(_rows_in(item) for item in value)
    return 0


def test_a_report_sees_every_call_spooled_before_it_asked_by_workers_with_their_own_spools(tmp_path):
    endpoint = f"chdb://{tmp_path / 'chdb'}"
    # Two workers with a spool each; neither has inserted anything yet (rows gather for a minute).
    workers = [ClickHouseSpanExporter(endpoint=endpoint, spool_dir=str(tmp_path / f"spool{k}"), drain_interval=3600)
               for k in range(2)]
    try:
        for k, exporter in enumerate(workers):
            for start in range(0, 30, 10):
                exporter.export([finished_span(llm_attributes(1000 * k + i)) for i in range(start, start + 10)])
        assert [len(list((tmp_path / f"spool{k}").glob("*.batch"))) for k in range(2)] == [3, 3]  # all waiting
        assert calls_in(report(endpoint, tmp_path)) == 60
        assert list((tmp_path / "spool0").glob("*.batch")) == []  # the report inserted them
    finally:
        for exporter in workers:
            exporter.shutdown()
    assert stored(workers[0].config) == (60, 60)  # and nothing twice


def test_a_report_catches_up_only_the_spools_of_its_own_database(tmp_path):
    endpoint = f"chdb://{tmp_path / 'chdb'}"
    other = ClickHouseSpanExporter(endpoint=endpoint, database="other_db", spool_dir=str(tmp_path / "spool"),
                                   drain_interval=3600)
    try:
        other.export([finished_span(llm_attributes(i)) for i in range(5)])
        result = report(endpoint, tmp_path)  # the default database: nothing was exported to it
        assert calls_in(result) == 0 and "no LLM calls recorded yet" in result.stderr
        assert len(list((tmp_path / "spool").glob("*.batch"))) == 1  # left to its own exporter
        assert calls_in(report(endpoint, tmp_path, database="other_db")) == 5
    finally:
        other.shutdown()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.binary(max_size=80), max_size=4))
def test_registrations_of_any_content_never_break_a_reader(tmp_path, entries):
    config = StorageConfig(endpoint=f"chdb://{tmp_path / 'chdb'}", spool_dir=str(tmp_path / "spool"))
    registry = tmp_path / "chdb" / SPOOLS_DIR
    registry.mkdir(parents=True, exist_ok=True)
    for old in registry.iterdir():
        old.unlink()
    for k, content in enumerate(entries):
        (registry / f"junk{k}").write_bytes(content)
    (tmp_path / "spool").mkdir(exist_ok=True)
    register_spool(config)
    assert registered_spools(config) == [config.spool_path]


# --- three workers starting, reports beside them ----------------------------------------------


WORKER = r"""
import os, sys, time
sys.path.insert(0, %r)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from otel_margin import attributes as a
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter

endpoint, spool, acknowledged, offset, stop = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]


class Acknowledging(ClickHouseSpanExporter):
    count = 0

    def export(self, spans):
        result = super().export(spans)
        if result is SpanExportResult.SUCCESS:  # durably spooled: a report asked after this must show it
            self.count += len(spans)
            with open(acknowledged + ".tmp", "w") as out:
                out.write(str(self.count))
            os.replace(acknowledged + ".tmp", acknowledged)
        return result


# The defaults a service gets (drain interval 5 s, rows gathering for up to a minute).
exporter = Acknowledging(endpoint=endpoint, spool_dir=spool)
provider = TracerProvider(resource=Resource.create({"service.name": "worker"}))
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
tracer = provider.get_tracer("worker")
i = offset
while not os.path.exists(stop):
    with tracer.start_as_current_span("chat m", attributes={
            a.GEN_AI_OPERATION_NAME: "chat", a.MARGIN_CUSTOMER: "c%%d" %% i, a.MARGIN_COST_USD: "0.5"}):
        pass
    i += 1
    time.sleep(0.05)
provider.shutdown()
print(i - offset, flush=True)
""" % str(TESTS)


@pytest.mark.parametrize("spools", ["shared", "one per worker"])
def test_reports_while_three_workers_start_see_every_spooled_call_and_no_lock_message(tmp_path, spools):
    endpoint = f"chdb://{tmp_path / 'chdb'}"
    stop = tmp_path / "stop"
    acknowledged = [tmp_path / f"acknowledged{k}" for k in range(3)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, endpoint, str(tmp_path / ("spool" if spools == "shared" else f"spool{k}")),
             str(acknowledged[k]), str(k * 1_000_000), str(stop)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        for k in range(3)
    ]
    try:
        seen = []
        while len(seen) < 4:  # from the workers' first second: the first report starts with them
            asked_after = sum(int(path.read_text()) for path in acknowledged if path.exists())
            seen.append((asked_after, calls_in(report(endpoint, tmp_path))))
    finally:
        stop.touch()
        outputs = [worker.communicate(timeout=120) for worker in workers]
    assert all(calls >= asked_after for asked_after, calls in seen), seen
    assert seen[-1][0] > 0  # the workers did spool while reports ran
    assert [worker.returncode for worker in workers] == [0, 0, 0]
    assert not [err for _, err in outputs if LOCK_MESSAGE in err], [err for _, err in outputs]
    emitted = sum(int(out) for out, _ in outputs)
    assert calls_in(report(endpoint, tmp_path)) == emitted
    assert stored(StorageConfig(endpoint=endpoint, spool_dir=str(tmp_path / "spool"))) == (emitted, emitted)
