"""``ClickHouseSpanExporter``: LLM spans → typed rows in ``otel_margin.llm_calls``.

Registered as the ``clickhouse`` exporter of ``opentelemetry-instrument``
(``OTEL_TRACES_EXPORTER=clickhouse``, alone or beside ``otlp``). Batching is the
``BatchSpanProcessor``'s job; this class turns a batch into rows and makes sure they are
written exactly once, even across outages, retries, restarts and ``kill -9``:

* Every batch gets a deterministic ``insert_deduplication_token`` (a hash of its span ids)
  and is inserted with ``deduplicate_blocks_in_dependent_materialized_views=1``, so a
  batch that is inserted twice (retry after a lost response, replay after a crash) is
  stored once, in the raw table and in the rollups.
* **Embedded chDB** (one process at a time may open the directory): ``export()`` only
  appends the batch to the spool; a background drainer (every ``drain_interval`` seconds,
  sooner once :data:`EAGER_DRAIN_BYTES` wait) takes the spool's file lock and, once rows
  have gathered (:data:`INSERT_MIN_BYTES`, or the oldest waited :data:`GATHER_DRAINS`
  intervals), opens chDB, inserts the spooled batches in order — many at a time, sealed into
  one insert, because each insert and each opening has a fixed cost in this process; those
  that arrive during a drain wait for the next one — and deletes them after the insert
  committed. While spans keep coming it keeps chDB open across drains (a *lease*, which a
  flush's opening also becomes) and closes it after :data:`LEASE_IDLE_DRAINS` drain
  intervals without an insert once nothing waits, after :data:`LEASE_MAX_SECONDS`, on an
  insert error, at shutdown, or as soon as another process asks for the directory
  (``otel-margin report``: see :func:`~otel_margin.exporters.storage.open_client`), inserting
  the rows still gathering before it gives the directory up; it looks for such requests
  every :data:`LEASE_CHECK_SECONDS`. A worker that finds the directory
  held leaves its files to the holder, which drains the shared spool.
* **ClickHouse server**: ``export()`` inserts directly, retrying with jittered exponential
  backoff for at most :data:`DIRECT_INSERT_SECONDS` (so the span processor's queue does not
  overflow behind a blocked export). If the server stays unreachable the batch is spilled to
  the same spool and replayed in order, by the drainer, when it returns; while anything is
  spooled, new batches queue behind it so order is kept.
* The spool is bounded (``spool_max_mb``); a batch that does not fit, or that the disk refuses
  (full), is dropped, logged at warning level and counted in the ``margin.export.dropped``
  metric (unit ``{span}``), as are spans the SDK's span queue drops in front of this exporter
  (:meth:`ClickHouseSpanExporter.count_queue_overflow`).
* A tracer provider's ``force_flush()`` writes the rows, not only the spool, in embedded mode
  (:attr:`ClickHouseSpanExporter.writes_on_flush`, :func:`otel_margin.finisher.flush_storage`),
  and SIGTERM writes them before the process exits (:mod:`otel_margin.termination`).

Rows travel as one ``Native`` block per batch (:data:`~otel_margin.exporters.rows.FORMAT`,
built by :mod:`otel_margin.exporters.rows`); the spool stores the same bytes, and
``raw_insert`` sends them as they are.
``export()`` never raises. The exporter's own ClickHouse traffic is not traced. An outage is
told in a few log lines (one when writes start failing, a summary a minute, one on recovery) and
through metrics (:mod:`otel_margin.exporters.health`).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_margin import termination
from otel_margin.attributes import METRIC_EXPORT_DROPPED
from otel_margin.exporters.rows import (
    COLUMN_NAMES,
    Block,
    FORMAT,
    JSON_INSERT_FORMAT,
    TABLE,
    encode_rows,
    json_insert_block,
    span_to_row,
)
from otel_margin.exporters.catchup import register_spool
from otel_margin.exporters.record_rows import TABLE_COLUMNS, record_row, table_for
from otel_margin.exporters.health import ExportHealth, Figures, observe, quiet_third_party
from otel_margin.exporters.spool import Spool, SpoolCorruption
from otel_margin.exporters.storage import (
    StorageConfig,
    StorageUnavailable,
    open_client,
    release_marker,
    release_requested,
)
from otel_margin.finisher import flush_before_exporters, span_processors
from otel_margin.schema import quote_identifier

logger = logging.getLogger(__name__)

INSERT_SETTINGS = {
    "insert_deduplicate": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "input_format_native_allow_types_conversion": 1,  # String → LowCardinality(String) (rows.py)
}

LEASE_IDLE_DRAINS = 2
"""Embedded mode: close chDB after this many drain intervals in which nothing was inserted, once
nothing waits in the spool (rows gathering for an insert keep it open)."""
LEASE_MAX_SECONDS = 60.0
"""Embedded mode: close chDB after holding it this long (the next drain reopens it), so one
process never keeps the directory from the others for good."""
LEASE_CHECK_SECONDS = 0.2
"""Embedded mode: while holding chDB, look this often for another process asking for it."""
EAGER_DRAIN_BYTES = 4 * 1024 * 1024
"""Embedded mode: wake the drainer before its interval once this many spooled bytes wait."""
INSERT_MIN_BYTES = 256 * 1024
"""Embedded mode: a periodic drain inserts once this many spooled bytes wait (about 700 rows of a
real call's attributes), or once the oldest waiting batch has waited :data:`GATHER_DRAINS` drain
intervals. An insert's CPU is mostly fixed (docs/exporter.md), so a service exporting a few
spans a second pays one insert a minute rather than one per drain."""
GATHER_DRAINS = 12
"""Embedded mode: the longest a batch waits for others to gather, in drain intervals (a minute
at the default interval)."""
INGEST_MAX_ROWS = 65_536
INGEST_MAX_BYTES = 32 * 1024 * 1024
"""At most this much goes into one insert (one ClickHouse block, well below ``max_insert_block_size``)."""
_MAX_INSERTS_PER_DRAIN = 8
"""Bounds how long one drain holds chDB's directory under a steady stream of new batches."""

DIRECT_INSERT_SECONDS = 2.0
"""Server mode: the longest ``export()`` retries a direct insert (within ``timeout``) before it
spools the batch for the drainer. Meanwhile the span processor queues new spans (2,048 by
default): waiting the whole ``timeout`` (10 s) overflowed it at about 200 spans a second; 2 s
holds 1,000 a second."""
QUEUE_OVERFLOW_LOG_SECONDS = 60.0
"""Spans dropped by a full span queue are logged at most once per this many seconds (with the count)."""

_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 2.0
_REJECT_AFTER = 3
"""Refusals (a ClickHouse error about the data itself) before a spooled batch is set aside."""

# ClickHouse error codes that say "this data can never be inserted as is" (not "try later").
_DATA_ERROR_CODES = frozenset({6, 16, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321})

ClientFactory = Callable[[StorageConfig], Any]


@dataclass(frozen=True, slots=True)
class ExportStats:
    """What the exporter did so far in this process (a snapshot)."""

    exported_spans: int = 0
    """LLM spans whose rows committed (directly or from the spool)."""
    skipped_spans: int = 0
    """Spans that are not LLM calls (no ``gen_ai.operation.name``)."""
    spooled_batches: int = 0
    inserts: int = 0
    """ClickHouse inserts that committed (a group of spooled batches counts once)."""
    dropped_spans: int = 0
    replayed_spans: int = 0
    """Server mode: LLM spans written from the spool after a failed write (part of ``exported_spans``)."""
    openings: int = 0
    """Times the drainer opened chDB (embedded mode; a held lease is reused, not counted again)."""
    problems: dict[str, int] = field(default_factory=dict)
    """Coerced or emptied attributes, ``"<column>:coerced"`` / ``"<column>:invalid"`` → count."""


class ClickHouseSpanExporter(SpanExporter):
    """Writes LLM spans to ClickHouse (embedded chDB by default). See the module docstring.

    Every argument defaults to its ``OTEL_EXPORTER_CLICKHOUSE_*`` environment variable
    (see :class:`~otel_margin.exporters.storage.StorageConfig`). ``client_factory`` replaces
    :func:`~otel_margin.exporters.storage.open_client` (tests). ``drain_interval`` is how
    often, in seconds, the background drainer looks at the spool (default
    :data:`~otel_margin.exporters.storage.DEFAULT_DRAIN_INTERVAL`). ``meter_provider``
    receives the ``margin.export.dropped`` counter (default: the global one). ``compress`` is passed to
    clickhouse-connect for HTTP(S) endpoints (``True``, ``"lz4"``, ``"zstd"``, ``False``).
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        database: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ttl_days: int | None = None,
        timeout: float | None = None,
        spool_dir: str | None = None,
        spool_max_mb: float | None = None,
        compress: bool | str | None = None,
        drain_interval: float | None = None,
        client_factory: ClientFactory | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.config = StorageConfig.from_env(
            endpoint=endpoint,
            database=database,
            username=username,
            password=password,
            ttl_days=ttl_days,
            timeout=timeout,
            spool_dir=spool_dir,
            spool_max_mb=spool_max_mb,
            drain_interval=drain_interval,
        )
        self._client_options = {} if self.config.embedded or compress is None else {"compress": compress}
        self._client_factory = client_factory or (lambda config: open_client(config, **self._client_options))
        self._spool = Spool(self.config.spool_path, max_bytes=int(self.config.spool_max_mb * 1024 * 1024))
        register_spool(self.config)  # so a report finds this spool (exporters/catchup.py)
        self._drain_interval = self.config.drain_interval
        self._table = f"{quote_identifier(self.config.database)}.{quote_identifier(TABLE)}"
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(__name__)
        self._dropped_counter = meter.create_counter(
            METRIC_EXPORT_DROPPED, unit="{span}", description="LLM spans the ClickHouse exporter dropped"
        )
        # One line when writes start failing, one when the spool is replayed; metrics for alerting.
        self._health = ExportHealth(logger, endpoint=self.config.endpoint, spool=str(self.config.spool_path),
                                    spool_max_mb=self.config.spool_max_mb, drain_interval=self.config.drain_interval,
                                    spool_size=lambda: (len(self._spool.pending()), self._spool.size_bytes()))
        self._last_error: BaseException | str = "no attempt yet"
        observe(meter_provider or metrics.get_meter_provider(), self._figures)
        self._client: Any = None  # the long-lived HTTP client
        self._lease: _Lease | None = None  # chDB held across drains; only under _drain_mutex
        self._client_lock = threading.Lock()
        self._drain_mutex = threading.Lock()
        self._stats_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._problems: Counter[str] = Counter()
        self._refusals: Counter[str] = Counter()
        self._schema_ready = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._shutdown = False
        self._drainer = threading.Thread(target=self._drain_forever, name="otel-margin-clickhouse-drain", daemon=True)
        self._drainer.start()
        self._attached = False
        self._overflow_logged_at = float("-inf")
        self._overflow_unlogged = 0
        termination.install()  # SIGTERM writes what is in memory first (only where safe)

    # --- SpanExporter ---------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write the LLM spans of one batch; non-LLM spans are skipped and counted.

        Returns SUCCESS once the rows are committed or durably spooled, FAILURE if they
        were dropped (spool full) or the exporter is shut down. Never raises.
        """
        if self._shutdown:
            return SpanExportResult.FAILURE
        if not self._attached:
            self._attach_to_global_provider()
        try:
            with suppress_instrumentation(), quiet_third_party():
                return self._export(spans)
        except Exception:  # noqa: BLE001 - an exporter must never raise into the SDK
            logger.exception("otel-margin ClickHouse exporter failed on a batch of %d spans", len(spans))
            return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write everything spooled so far; True if the spool is empty before the timeout."""
        deadline = time.monotonic() + max(timeout_millis, 0) / 1000
        with suppress_instrumentation(), quiet_third_party():
            while True:
                try:
                    if self._drain(deadline):
                        return True
                except Exception:  # noqa: BLE001 - flushing must not raise into the SDK
                    logger.exception("otel-margin: flushing the spool failed")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(0.05, remaining))

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Stop the drainer, flush within ``timeout_millis`` (default: the export timeout), close."""
        if self._shutdown:
            return
        timeout_s = (timeout_millis / 1000) if timeout_millis is not None else self.config.timeout
        deadline = time.monotonic() + timeout_s
        self._shutdown = True
        self._stop.set()
        self._wake.set()
        self._drainer.join(max(deadline - time.monotonic(), 0))
        if not self.force_flush(int(max(deadline - time.monotonic(), 0) * 1000)):
            pending = len(self._spool.pending())
            if pending:
                logger.warning(
                    "otel-margin: %d batch(es) still spooled in %s at shutdown; they will be written "
                    "by the next process that exports to %s",
                    pending,
                    self.config.spool_path,
                    self.config.endpoint,
                )
        with self._client_lock:
            self._close_client()
        if self._drain_mutex.acquire(timeout=max(deadline - time.monotonic(), 0.1)):
            try:
                self._end_lease("shutdown")
            finally:
                self._drain_mutex.release()

    @property
    def writes_on_flush(self) -> bool:
        """Embedded mode: ``export()`` only spools, so a provider's flush calls :meth:`force_flush`
        too (:func:`otel_margin.finisher.flush_storage`); the SDK's batch processor does not. Over
        HTTP ``export()`` inserts, and only an outage's backlog waits in the spool (a flush would
        wait out the outage)."""
        return self.config.embedded

    def count_queue_overflow(self, spans: int) -> None:
        """Count spans a full span-processor queue in front of this exporter dropped; logged once a minute."""
        self._count("dropped", spans)
        self._dropped_counter.add(spans)
        now = time.monotonic()
        with self._stats_lock:
            self._overflow_unlogged += spans
            if now - self._overflow_logged_at < QUEUE_OVERFLOW_LOG_SECONDS:
                return
            self._overflow_logged_at, dropped, self._overflow_unlogged = now, self._overflow_unlogged, 0
        logger.warning(
            "otel-margin dropped %d span(s): the span processor's queue in front of the ClickHouse exporter "
            "is full (calls end faster than they are exported); raise OTEL_BSP_MAX_QUEUE_SIZE or find what "
            "slows export (counted in %s; logged at most every %.0f s)",
            dropped, METRIC_EXPORT_DROPPED, QUEUE_OVERFLOW_LOG_SECONDS)

    def _attach_to_global_provider(self) -> None:
        # A provider's flush must write this exporter's rows, with or without our instrumentors.
        self._attached = True
        try:
            provider = trace.get_tracer_provider()
            if any(getattr(p, "span_exporter", None) is self for p in span_processors(provider)):
                flush_before_exporters(provider)
        except Exception:  # noqa: BLE001 - never raise into the SDK
            logger.debug("otel-margin: could not attach to the global tracer provider", exc_info=True)

    # --- observability of the exporter itself ---------------------------------------------

    def stats(self) -> ExportStats:
        """A snapshot of what this exporter did in this process."""
        with self._stats_lock:
            return ExportStats(
                exported_spans=self._counts["exported"],
                skipped_spans=self._counts["skipped"],
                spooled_batches=self._counts["spooled"],
                inserts=self._counts["inserts"],
                dropped_spans=self._counts["dropped"],
                replayed_spans=self._counts["replayed"],
                openings=self._counts["openings"],
                problems=dict(self._problems),
            )

    # --- export path ----------------------------------------------------------------------

    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows, skipped, problems, records = _rows_of(spans)
        block = encode_rows(rows, problems) if rows else None
        # Outcomes and cost lines (record spans): a block per table, each exported like the calls.
        blocks = [(block, rows)] if block is not None else []
        for table, table_rows in records.items():
            blocks.append((encode_rows(table_rows, problems, columns=TABLE_COLUMNS[table]), table_rows))
        with self._stats_lock:
            self._counts["skipped"] += skipped
            self._problems.update(problems)
        if problems:
            logger.debug("otel-margin exporter coerced or emptied span attributes: %s", dict(problems))
        result = SpanExportResult.SUCCESS
        for each, each_rows in blocks:
            if self._export_block(each, each_rows) is not SpanExportResult.SUCCESS:
                result = SpanExportResult.FAILURE
        return result

    def _export_block(self, block: Block, rows: list[list[Any]]) -> SpanExportResult:
        token = batch_token(rows)
        # Embedded: never open chDB on the caller's thread. Server: keep order behind a backlog.
        if not self.config.embedded and not self._spool.pending():
            direct = min(self.config.timeout, DIRECT_INSERT_SECONDS)
            if self._insert_with_retries(block.body, token, time.monotonic() + direct, block.columns):
                self._count("exported", len(rows))
                if self._health.failing:
                    self._health.succeeded(spool_empty=not self._spool.pending())
                return SpanExportResult.SUCCESS
            result = self._spool_batch(block, token)
            self._health.failed(self._last_error)  # logged once per outage, with the spool's size
            return result
        return self._spool_batch(block, token)

    def _spool_batch(self, block: Block, token: str) -> SpanExportResult:
        try:
            appended = self._spool.append(token, block)
        except OSError as error:  # a full disk, a quota, a read-only or vanished directory
            self._drop(block.rows, f"the spool {self.config.spool_path} cannot be written ({error}); "
                                   "free space there or point OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR elsewhere")
            return SpanExportResult.FAILURE
        if appended is None:
            self._drop(block.rows, f"the spool {self.config.spool_path} is full ({self.config.spool_max_mb} MiB)")
            return SpanExportResult.FAILURE
        self._count("spooled", 1)
        # Embedded: let batches gather, so one chDB opening and one insert carry many of them.
        if not self.config.embedded or self._spool.pending_bytes() >= EAGER_DRAIN_BYTES:
            self._wake.set()
        return SpanExportResult.SUCCESS

    def _insert_with_retries(self, body: bytes, token: str, deadline: float,
                             columns: Sequence[str] = COLUMN_NAMES) -> bool:
        attempt = 0
        while True:
            try:
                with self._client_lock:
                    client = self._http_client()
                    self._insert(client, columns, body, token)
                return True
            except Exception as error:  # noqa: BLE001 - classified below, never raised
                self._last_error = error
                with self._client_lock:
                    self._close_client()  # a fresh connection for the next attempt
                logger.debug("otel-margin insert attempt %d failed: %s", attempt + 1, error)
            attempt += 1
            delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)
            if time.monotonic() + delay >= deadline or self._stop.wait(delay):
                return False

    def _insert(self, client: Any, columns: Sequence[str], body: bytes, token: str, fmt: str = FORMAT) -> None:
        self._ensure_schema(client)
        if fmt == FORMAT:
            block = body
        else:  # a batch an earlier release spooled as JSON rows
            block, fmt = json_insert_block(columns, body), JSON_INSERT_FORMAT
        # Over HTTP the block is compressed as clickhouse-connect would compress its own inserts.
        compression = getattr(client, "write_compression", None)
        if self.config.embedded or compression not in ("lz4", "zstd"):
            compression = None
        else:
            from clickhouse_connect.driver.compression import get_compressor

            block = get_compressor(compression).compress_block(block)
        table = table_for(columns)
        client.raw_insert(
            self._table if table == TABLE else f"{quote_identifier(self.config.database)}.{quote_identifier(table)}",
            insert_block=block,
            fmt=fmt,
            compression=compression,
            settings={**INSERT_SETTINGS, "insert_deduplication_token": token},
        )
        self._count("inserts", 1)

    def _ensure_schema(self, client: Any) -> None:
        if self._schema_ready:
            return
        try:
            from otel_margin.schema import apply_schema
        except ImportError:
            logger.debug("otel_margin.schema is not available; assuming the schema exists")
        else:
            # Same meaning on both sides: 0 keeps raw rows forever.
            apply_schema(client, database=self.config.database, ttl_days=self.config.ttl_days)
        self._schema_ready = True

    # --- the spool drainer ----------------------------------------------------------------

    def _drain_forever(self) -> None:
        with suppress_instrumentation(), quiet_third_party():
            while not self._stop.is_set():
                try:
                    self._drain(time.monotonic() + self.config.timeout, periodic=True)
                except Exception:  # noqa: BLE001 - the drainer must survive anything
                    logger.exception("otel-margin spool drainer failed; retrying")
                self._wait_for_next_drain()
            with self._drain_mutex:
                self._end_lease("shutdown")

    def _wait_for_next_drain(self) -> None:
        # While chDB is held, wake often: another process may be waiting for the directory. (A
        # flush that keeps its opening as the lease wakes this thread, so it starts looking.)
        until = time.monotonic() + self._drain_interval
        while (remaining := until - time.monotonic()) > 0:
            if self._lease is None:
                woken = self._wake.wait(remaining)
            else:
                woken = self._wake.wait(min(remaining, LEASE_CHECK_SECONDS))
                try:
                    self._review_lease()
                except Exception:  # noqa: BLE001 - the drainer must survive anything
                    logger.exception("otel-margin: checking the chDB lease failed")
            if woken:
                break
        self._wake.clear()

    def _drain(self, deadline: float, *, periodic: bool = False) -> bool:
        """Insert spooled batches in order; True if the spool is empty afterwards.

        ``periodic`` (the drainer thread's drains): insert only what waited when the drain
        began. Otherwise (a flush) insert until the spool is empty.
        """
        with self._drain_mutex, self._spool.drain_lock() as acquired:
            if not acquired:
                return False  # another process is draining
            self._spool.clean_stale_tmp()
            if not self._spool.pending():
                return True
            if self.config.embedded:
                return self._drain_embedded(deadline, periodic=periodic)
            with self._client_lock:
                try:
                    client = self._http_client()
                    empty = self._drain_files(client, deadline)
                except Exception as error:  # noqa: BLE001 - the spool waits; told once per outage
                    self._close_client()
                    logger.debug("otel-margin: replaying the spool to %s failed", self.config.endpoint, exc_info=True)
                    self._health.failed(error)
                    return False
            self._health.succeeded(spool_empty=empty)
            return empty

    def _gathering(self) -> bool:
        """Rows wait in the spool (gathering for an insert, which will need chDB)."""
        return self._spool.pending_bytes() > 0

    def _worth_an_insert(self) -> bool:
        """Embedded mode: enough rows wait (:data:`INSERT_MIN_BYTES`), or the oldest waited long enough."""
        if self._spool.pending_bytes() >= INSERT_MIN_BYTES:
            return True
        since = self._spool.waiting_since_ns()
        return since is not None and time.time_ns() - since >= GATHER_DRAINS * self._drain_interval * 1e9

    def _drain_embedded(self, deadline: float, *, periodic: bool) -> bool:
        opened_by_a_flush = self._lease is None and not periodic
        if self._lease is None:
            asked_since = time.time_ns()  # a request made while we open counts too
            try:
                client = self._client_factory(self.config)
            except StorageUnavailable as error:
                # Never asks: a worker holding the directory drains the shared spool anyway.
                logger.debug("otel-margin: chDB busy, spool waits: %s", error)
                return False
            self._count("openings", 1)
            now = time.monotonic()
            self._lease = _Lease(client=client, opened=now, asked_since_ns=asked_since, last_insert=now,
                                 marker=release_marker(self.config))
        # The lease is held while rows gather (a flush's opening too), so that an asker gets them
        # (see _review_lease); the drainer reviews and ends it.
        lease = self._lease
        if periodic and not self._worth_an_insert():
            return False  # let rows gather: the next drains look again
        inserts = self._counts["inserts"]
        try:
            empty = self._drain_files(lease.client, deadline, settle=periodic)
        except Exception as error:
            # As over HTTP: the next drain starts on a fresh client.
            self._end_lease(f"an insert failed ({error})")
            self._health.failed(error)
            if isinstance(error, _NotWritten):
                return False
            raise
        if self._counts["inserts"] > inserts:
            lease.last_insert = time.monotonic()
            self._health.succeeded(spool_empty=empty)
        if self._stop.is_set():
            self._end_lease("shutdown")
        elif opened_by_a_flush:
            self._wake.set()  # so the drainer starts looking for requests to give it up
        return empty

    def _review_lease(self) -> None:
        """End the held chDB lease if someone asked for the directory, it idled, or it is too old."""
        with self._drain_mutex:
            lease = self._lease
            if lease is None:
                return
            now = time.monotonic()
            if release_requested(lease.marker, lease.asked_since_ns):
                self._insert_gathered_rows(lease)  # the asker (a report) sees every row spooled so far
                self._end_lease("another process asked for the directory")
            elif now - lease.last_insert >= LEASE_IDLE_DRAINS * self._drain_interval and not self._gathering():
                self._end_lease("idle")
            elif now - lease.opened >= LEASE_MAX_SECONDS:
                self._insert_gathered_rows(lease)
                self._end_lease(f"held for {LEASE_MAX_SECONDS:g} s")

    def _insert_gathered_rows(self, lease: _Lease) -> None:
        """Before giving chDB up: insert the rows gathering in the spool (bounded; never raises)."""
        if not self._gathering():
            return
        try:
            with self._spool.drain_lock() as acquired:
                if acquired:
                    self._drain_files(lease.client, time.monotonic() + min(self.config.timeout, 5.0))
        except Exception as error:  # noqa: BLE001 - the directory is given up anyway; the rows wait
            logger.debug("otel-margin: inserting the gathered rows before closing chDB failed: %s", error)

    def _end_lease(self, reason: str) -> None:
        # Callers hold _drain_mutex.
        if self._lease is not None:
            logger.debug("otel-margin: closing chDB (%s)", reason)
            _close_quietly(self._lease.client)
            self._lease = None

    def _drain_files(self, client: Any, deadline: float, *, settle: bool = False) -> bool:
        # Over HTTP a spooled batch may already be stored: its direct insert can have committed
        # before the response was lost. Only its own token makes the replay a no-op, so batches
        # go one by one. Embedded batches were never inserted before the spool: they may gather.
        one_at_a_time = not self.config.embedded
        # settle (the drainer's periodic drains): insert what waited when the drain began.
        # Batches arriving meanwhile wait for the next drain, to go in together, instead of
        # each paying an insert of its own while a backlog is being exported.
        newest = None
        if settle:
            waiting = self._spool.pending()
            newest = waiting[-1].name if waiting else ""  # "" sorts before every batch: take none
        for _ in range(_MAX_INSERTS_PER_DRAIN):
            if time.monotonic() > deadline:
                return False
            try:
                batch = self._spool.next_ingest(
                    max_rows=1 if one_at_a_time else INGEST_MAX_ROWS, max_bytes=INGEST_MAX_BYTES, newest=newest)
            except SpoolCorruption as error:
                self._reject(error.path, 0, str(error))
                continue
            if batch is None:
                break
            try:
                self._insert(client, batch.columns, batch.body, batch.token, batch.format)
            except Exception as error:  # noqa: BLE001 - classified: refuse or wait
                if _is_data_error(error):
                    if len(batch.members) > 1:
                        # Nothing of a refused insert committed: retry its batches one by one,
                        # so one bad batch cannot hold back the others.
                        self._spool.dissolve(batch)
                        one_at_a_time = True
                        continue
                    self._refusals[batch.token] += 1
                    if self._refusals[batch.token] >= _REJECT_AFTER:
                        self._reject(batch.path, batch.rows, str(error))
                        continue
                logger.debug("otel-margin: spooled batch %s not written yet: %s", batch.path.name, error)
                if not self.config.embedded:
                    raise
                raise _NotWritten(str(error)) from error
            self._spool.remove(batch)
            self._count("exported", batch.rows)
            if not self.config.embedded:  # spooled because a write failed: a replay
                self._count("replayed", batch.rows)
                self._health.replayed(len(batch.members), batch.rows)
        return not self._spool.pending()

    def _reject(self, path: Any, spans: int, reason: str) -> None:
        target = self._spool.reject(path)
        self._drop(spans, f"ClickHouse refused the batch ({reason}); it was moved to {target}")

    # --- helpers --------------------------------------------------------------------------

    def _http_client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory(self.config)
        return self._client

    def _close_client(self) -> None:
        if self._client is not None:
            _close_quietly(self._client)
            self._client = None

    def _count(self, name: str, amount: int) -> None:
        with self._stats_lock:
            self._counts[name] += amount

    def _drop(self, spans: int, reason: str) -> None:
        self._count("dropped", spans)
        if spans:
            self._dropped_counter.add(spans)
        self._health.dropped(spans, reason)  # the first drop logged, later ones summarised

    def _figures(self) -> Figures:
        """This exporter's figures for the meter (:func:`~otel_margin.exporters.health.observe`)."""
        with self._stats_lock:
            exported, replayed = self._counts["exported"], self._counts["replayed"]
        return Figures(spool=str(self.config.spool_path), spool_batches=len(self._spool.pending()),
                       spool_bytes=self._spool.size_bytes(), exported=exported, replayed=replayed)


@dataclass(slots=True)
class _Lease:
    """chDB held across drains (embedded mode)."""

    client: Any
    opened: float
    """``time.monotonic()`` when it was opened."""
    asked_since_ns: int
    """Release requests touched at or after this ``time.time_ns()`` are honoured; older ones are stale."""
    last_insert: float
    marker: Path
    """Where another process asks for the directory (:func:`~otel_margin.exporters.storage.release_marker`)."""


class _NotWritten(Exception):
    """An embedded insert failed; the spooled files wait for a later drain."""


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail too
        pass


def batch_token(rows: Sequence[Sequence[Any]]) -> str:
    """The batch's ``insert_deduplication_token``: a hash of its span ids, in order."""
    ids = "".join(f"{row[_TRACE_ID]}:{row[_SPAN_ID]};" for row in rows)
    return hashlib.sha256(ids.encode()).hexdigest()


_TRACE_ID, _SPAN_ID = COLUMN_NAMES.index("trace_id"), COLUMN_NAMES.index("span_id")


def _rows_of(
    spans: Sequence[ReadableSpan],
) -> tuple[list[list[Any]], int, Counter[str], dict[str, list[list[Any]]]]:
    rows: list[list[Any]] = []
    records: dict[str, list[list[Any]]] = {}
    problems: Counter[str] = Counter()
    skipped = 0
    resource: Any = _rows_of  # no span has this resource: the first span looks its service up
    service = ""
    for span in spans:
        if getattr(span, "resource", None) is not resource:
            resource = getattr(span, "resource", None)
            service = str((resource.attributes if resource else {}).get("service.name", "unknown_service"))
        row = span_to_row(span, service_name=service, problems=problems)
        if row is not None:
            rows.append(row)
        elif (record := record_row(span, service_name=service, problems=problems)) is not None:
            records.setdefault(record[0], []).append(record[1])
        else:
            skipped += 1
    return rows, skipped, problems, records


def _is_data_error(error: BaseException) -> bool:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    code = getattr(error, "code", None)
    if isinstance(error, OperationalError) or not isinstance(error, DatabaseError):
        return False
    return code is not None and int(code) in _DATA_ERROR_CODES
