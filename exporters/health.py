"""How the ClickHouse exporter tells its user how export is going: a few log lines and metrics.

An outage must be visible without drowning the application's log. So:

* :class:`ExportHealth` logs **one** warning when writing to ClickHouse starts failing (the
  endpoint, the error, the spool and its size, what happens next), folds further failures into
  one summary line at most every :data:`REPEAT_SECONDS`, and logs **one** line when the spool
  has been replayed after the failures (batches and rows replayed, how long the failures lasted
  and how long the replay took). Spans dropped while the spool is full are folded the same way.
* :func:`quiet_third_party` silences the warnings clickhouse-connect and urllib3 log while *our*
  client works (a refused connection logs two of them per attempt; they would repeat on every
  retry and drain). The same libraries used elsewhere in the application keep their logging.
* :func:`observe` publishes the exporter's figures through the OpenTelemetry meter, so the
  user's own backend can alert on them: the spool's bytes and batches (gauges), and spans
  exported, replayed and dropped (counters; names in :mod:`otel_margin.attributes`).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from opentelemetry import metrics

from otel_margin.attributes import (
    METRIC_EXPORT_DROPPED,
    METRIC_EXPORT_EXPORTED,
    METRIC_EXPORT_REPLAYED,
    METRIC_EXPORT_SPOOL_BATCHES,
    METRIC_EXPORT_SPOOL_BYTES,
)

REPEAT_SECONDS = 60.0
"""While export keeps failing (or spans keep being dropped), at most one summary line per this
many seconds."""

THIRD_PARTY_LOGGERS = (
    "clickhouse_connect.driver._backend.http_sync",  # "Unexpected Http Driver Exception"
    "clickhouse_connect.driver.httpclient",
    "clickhouse_connect.driver.httputil",
    "urllib3.connectionpool",  # "Retrying (Retry(total=0, …)) after connection broken by …"
)
"""Loggers whose records are dropped while this thread is inside :func:`quiet_third_party`."""


class ExportHealth:
    """Whether writes to ClickHouse fail, told once per outage. Thread-safe.

    The exporter calls :meth:`failed` for every failed write (direct insert, replay, opening),
    :meth:`replayed` for every spooled batch committed while the failures last, and
    :meth:`succeeded` after every committed write, with whether the spool is now empty.
    """

    def __init__(self, logger: logging.Logger, *, endpoint: str, spool: str, spool_max_mb: float,
                 drain_interval: float, spool_size: Callable[[], tuple[int, int]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._endpoint, self._spool, self._spool_max_mb = endpoint, spool, spool_max_mb
        self._drain_interval = drain_interval
        self._spool_size = spool_size  # () -> (batches, bytes)
        self._clock = clock
        self._lock = threading.Lock()
        self._outage: _Outage | None = None
        self._dropped_unlogged = 0
        self._dropped_logged_at = float("-inf")

    @property
    def failing(self) -> bool:
        """Writes failed and the spool has not been replayed since."""
        return self._outage is not None

    def failed(self, error: BaseException | str) -> None:
        """A write failed: the first failure of an outage is logged, later ones are summarised."""
        now = self._clock()
        with self._lock:
            outage = self._outage
            if outage is None:
                self._outage = _Outage(started=now, logged_at=now, last_error=_summary(error))
            else:
                outage.failures += 1
                outage.unlogged += 1
                outage.last_error = _summary(error)
                outage.replay_started = None  # failing again: the replay starts over
                if now - outage.logged_at < REPEAT_SECONDS:
                    return
                outage.logged_at, unlogged, outage.unlogged = now, outage.unlogged, 0
        batches, size = self._spool_size()
        if outage is None:
            self._logger.warning(
                "otel-margin: cannot write to ClickHouse at %s (%s). Spans are kept in the spool %s (%d batch(es), "
                "%s so far) and replayed in order once it is reachable (tried every %g s); if the spool reaches "
                "%g MiB, new spans are dropped and counted in %s. Further failures are summarised every %g s.",
                self._endpoint, _summary(error), self._spool, batches, _size(size), self._drain_interval,
                self._spool_max_mb, METRIC_EXPORT_DROPPED, REPEAT_SECONDS)
        else:
            self._logger.warning(
                "otel-margin: ClickHouse at %s still failing after %.0f s (%d more failed attempt(s); last: %s); "
                "the spool %s holds %d batch(es), %s.",
                self._endpoint, now - outage.started, unlogged, outage.last_error, self._spool, batches, _size(size))

    def replayed(self, batches: int, spans: int) -> None:
        """Spooled batches committed while failures last (counted toward the recovery line)."""
        now = self._clock()
        with self._lock:
            if self._outage is not None:
                if self._outage.replay_started is None:
                    self._outage.replay_started = now
                self._outage.replayed_batches += batches
                self._outage.replayed_spans += spans

    def succeeded(self, *, spool_empty: bool) -> None:
        """A write committed; once the spool is empty after failures, the recovery is logged."""
        if self._outage is None or not spool_empty:
            return
        now = self._clock()
        with self._lock:
            outage, self._outage = self._outage, None
        if outage is None:
            return
        replay = now - outage.replay_started if outage.replay_started is not None else 0.0
        self._logger.warning(
            "otel-margin: ClickHouse at %s is written to again after %.1f s of failures (%d failed attempt(s)); "
            "replayed %d batch(es), %d span(s) from the spool in %.1f s.",
            self._endpoint, (outage.replay_started or now) - outage.started, outage.failures,
            outage.replayed_batches, outage.replayed_spans, replay)

    def dropped(self, spans: int, reason: str) -> None:
        """Spans dropped for good: the first drop is logged, later ones summarised (the metric counts each)."""
        now = self._clock()
        with self._lock:
            self._dropped_unlogged += spans
            if now - self._dropped_logged_at < REPEAT_SECONDS:
                return
            self._dropped_logged_at, total, self._dropped_unlogged = now, self._dropped_unlogged, 0
        self._logger.warning("otel-margin dropped %d LLM span(s): %s (counted in %s; logged at most every %g s)",
                             total, reason, METRIC_EXPORT_DROPPED, REPEAT_SECONDS)


@dataclass(slots=True)
class _Outage:
    started: float
    logged_at: float
    last_error: str
    failures: int = 1
    unlogged: int = 0
    replay_started: float | None = None
    replayed_batches: int = 0
    replayed_spans: int = 0


def _summary(error: BaseException | str) -> str:
    """One line naming the error (clickhouse-connect's messages run over several lines)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    name = type(error).__name__ if isinstance(error, BaseException) else ""
    line = f"{name}: {first}" if name and first else (name or first or "unknown error")
    return line if len(line) <= 300 else line[:297] + "..."


def _size(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.1f} KiB"


# --- third-party log noise --------------------------------------------------------------------

_quiet = threading.local()
_filter_installed = False
_filter_lock = threading.Lock()


@contextmanager
def quiet_third_party() -> Iterator[None]:
    """While this thread is inside, drop the records of :data:`THIRD_PARTY_LOGGERS` (re-entrant)."""
    _install_filter()
    depth = getattr(_quiet, "depth", 0)
    _quiet.depth = depth + 1
    try:
        yield
    finally:
        _quiet.depth = depth


def _install_filter() -> None:
    global _filter_installed
    if _filter_installed:
        return
    with _filter_lock:
        if not _filter_installed:
            for name in THIRD_PARTY_LOGGERS:
                logging.getLogger(name).addFilter(_outside_our_client)
            _filter_installed = True


def _outside_our_client(record: logging.LogRecord) -> bool:
    return not getattr(_quiet, "depth", 0)


# --- metrics ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """What one exporter reports to the meter."""

    spool: str
    spool_batches: int
    spool_bytes: int
    exported: int
    replayed: int


def observe(meter_provider: metrics.MeterProvider, source: Callable[[], Figures]) -> None:
    """Publish ``source``'s figures through ``meter_provider`` while ``source`` lives.

    The instruments are created once per meter provider and report the sum over the live
    sources registered with it (a spool shared by several exporters counted once). ``source``
    is held weakly when it is a bound method (the exporter's), so publishing keeps nothing alive.
    """
    with _registry_lock:
        published = _published.get(meter_provider)
        if published is None:
            published = _published[meter_provider] = _Published(meter_provider)
        published.add(source)


class _Published:
    def __init__(self, meter_provider: metrics.MeterProvider) -> None:
        meter = meter_provider.get_meter("otel_margin.exporters.clickhouse")
        self._sources: list[Callable[[], Callable[[], Figures] | None]] = []
        self._lock = threading.Lock()
        meter.create_observable_gauge(
            METRIC_EXPORT_SPOOL_BYTES, [self._spool_bytes], unit="By",
            description="Bytes waiting in the ClickHouse exporter's spool (an outage, or rows gathering)")
        meter.create_observable_gauge(
            METRIC_EXPORT_SPOOL_BATCHES, [self._spool_batches], unit="{batch}",
            description="Batches waiting in the ClickHouse exporter's spool")
        meter.create_observable_counter(
            METRIC_EXPORT_EXPORTED, [self._exported], unit="{span}",
            description="LLM spans the ClickHouse exporter wrote (committed)")
        meter.create_observable_counter(
            METRIC_EXPORT_REPLAYED, [self._replayed], unit="{span}",
            description="LLM spans written from the spool after a failed write (server mode)")

    def add(self, source: Callable[[], Figures]) -> None:
        reference: Callable[[], Callable[[], Figures] | None]
        try:
            reference = weakref.WeakMethod(source)  # type: ignore[arg-type]
        except TypeError:
            reference = lambda: source  # noqa: E731 - a plain function: held strongly
        with self._lock:
            self._sources.append(reference)

    def _figures(self) -> list[Figures]:
        with self._lock:
            self._sources = [reference for reference in self._sources if reference() is not None]
            sources = [reference() for reference in self._sources]
        figures = []
        for source in sources:
            if source is None:
                continue
            try:
                figures.append(source())
            except Exception:  # noqa: BLE001 - a metric callback must never raise into the SDK
                logging.getLogger(__name__).debug("otel-margin: exporter figures unavailable", exc_info=True)
        return figures

    def _per_spool(self) -> Iterable[Figures]:
        return {figures.spool: figures for figures in self._figures()}.values()

    def _spool_bytes(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        yield metrics.Observation(sum(f.spool_bytes for f in self._per_spool()))

    def _spool_batches(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        yield metrics.Observation(sum(f.spool_batches for f in self._per_spool()))

    def _exported(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        yield metrics.Observation(sum(f.exported for f in self._figures()))

    def _replayed(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        yield metrics.Observation(sum(f.replayed for f in self._figures()))


_published: "weakref.WeakKeyDictionary[metrics.MeterProvider, _Published]" = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()
