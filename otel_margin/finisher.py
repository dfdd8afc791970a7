"""Finish calls off the caller's thread: pricing, record hooks, span attributes and end, metrics.

The caller gets its result as soon as the provider answered and the call's facts are
captured (end time, duration, the response or the stream's chunks). Everything that only
turns those facts into telemetry runs here, on one daemon thread per process, in the order
the calls ended — the way the SDK's ``BatchSpanProcessor`` keeps export off the caller's
thread. Nothing is dropped: when more than :data:`MAX_PENDING` finishes wait (a burst the
thread cannot keep up with), the caller finishes its own call inline.

Pending work is flushed, in this order, before telemetry leaves the process:

* by ``TracerProvider.force_flush()`` / ``shutdown()``: a span processor placed first on the
  SDK tracer provider flushes the finisher before the other processors flush
  (:func:`flush_before_exporters`);
* at interpreter exit, before the SDK providers shut down (an ``atexit`` hook registered
  when the thread starts, so it runs before the providers' own hooks);
* by :func:`otel_margin.flush`, for code that shuts providers down some other way;
* on SIGTERM (:mod:`otel_margin.termination`).

A provider's flush also writes the rows of exporters that only spool on ``export()`` (the
ClickHouse exporter in embedded mode): the SDK's ``BatchSpanProcessor`` exports its queue on
``force_flush()`` but never calls its exporter's ``force_flush()``, so without this a flushed
provider's calls would reach the table up to a minute later (:func:`flush_storage`).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

from opentelemetry.sdk.trace import SpanProcessor

logger = logging.getLogger(__name__)

MAX_PENDING = 2_048
"""Finishes allowed to wait; beyond it callers finish their own calls (back-pressure).

A waiting finish holds its call's record, response or stream text and request parameters:
7 KB for a short chat call, 12 KB for a 21-chunk stream (measured with ``tracemalloc``), more
with long prompts. The thread falls behind when a caller keeps the interpreter busy and
gives it up only for instants (a tight loop of calls that never wait on a socket: each
instant goes back to the caller before this thread gets in, so it waits for the switch
interval again); this bounds what that backlog holds. 2,048 is what the SDK's
``BatchSpanProcessor`` queues by default."""

EXIT_FLUSH_SECONDS = 10.0

GATHER_SECONDS = 0.02
"""How long the thread, once woken, lets jobs gather before running them (telemetry delay)."""


class Finisher:
    """A FIFO of finishing jobs and the daemon thread that runs them, a batch at a time.

    Submitting only appends to a deque: the thread is woken by the first job after it went
    idle, then gathers jobs for :data:`GATHER_SECONDS` and runs them together. A call does
    not pay for waking a thread, and the jobs run back to back instead of each contending
    with the caller for the interpreter.
    """

    def __init__(self) -> None:
        self._new_state()
        self._exit_hook = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._new_state)

    def _new_state(self) -> None:
        # Also a forked child's start: it has the parent's objects but not its thread.
        self._jobs: deque[Callable[[], None]] = deque()
        self._wake = threading.Event()  # set: jobs are waiting
        self._hurry = threading.Event()  # set: a flush waits; stop gathering
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the finisher thread (inline when the thread is unavailable or behind)."""
        if self._thread is None and not self._start():
            _run(job)
        elif len(self._jobs) >= MAX_PENDING:
            _run(job)
        else:
            self._jobs.append(job)
            if not self._wake.is_set():
                self._wake.set()

    def pending(self) -> int:
        """Jobs (finished calls) waiting for the thread."""
        return len(self._jobs)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every job submitted so far has run; False if ``timeout_s`` passed first."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        if threading.current_thread() is thread:
            return True  # a job flushing its own queue would wait for itself
        done = threading.Event()
        self._jobs.append(done.set)
        self._hurry.set()
        self._wake.set()
        return done.wait(timeout_s)

    def _start(self) -> bool:
        with self._lock:
            if self._thread is None:
                try:
                    thread = threading.Thread(target=self._work, name="otel-margin-finisher", daemon=True)
                    thread.start()
                except RuntimeError:  # interpreter shutting down: no new threads
                    return False
                self._thread = thread
                if not self._exit_hook:
                    atexit.register(self.flush, EXIT_FLUSH_SECONDS)
                    self._exit_hook = True
        return True

    def _work(self) -> None:
        jobs, wake, hurry = self._jobs, self._wake, self._hurry
        while True:
            wake.wait()
            hurry.wait(GATHER_SECONDS)
            # Cleared before the drain: a job appended from here on sets ``wake`` again.
            hurry.clear()
            wake.clear()
            while jobs:
                _run(jobs.popleft())


def _run(job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:  # noqa: BLE001 - jobs guard themselves; this is the last line
        logger.debug("otel-margin: a finishing job failed", exc_info=True)


FINISHER = Finisher()


def flush(timeout_s: float | None = 30.0) -> bool:
    """Finish every LLM call that has returned so far (spans ended, metrics recorded).

    Tracer-provider flushes and interpreter exit do this already; call it before shutting
    providers down by other means. Returns False if ``timeout_s`` passed first.
    """
    return FINISHER.flush(timeout_s)


class _FlushFinisher(SpanProcessor):
    """First span processor of a provider: its flush and shutdown finish pending calls first.

    Its flush then exports the provider's span queues and writes the rows of the exporters
    that only spool on ``export()`` (:func:`flush_storage`); the processors after it find
    their queues empty.
    """

    def __init__(self, tracer_provider: Any) -> None:
        self._provider = weakref.ref(tracer_provider)
        self._chain: tuple[Any, ...] | None = None
        self._queues: list[tuple[Any, Any]] = []

    def on_end(self, span: Any) -> None:
        # The processors after this one get the span next: a full queue of theirs drops a span
        # (the oldest), which the SDK only logs once. The exporter counts it (issue 18).
        provider = self._provider()
        chain = span_processors(provider) if provider is not None else ()
        if chain is not self._chain:
            self._chain, self._queues = chain, _watched_queues(chain)
        for queue, exporter in self._queues:
            if len(queue) >= queue.maxlen:
                exporter.count_queue_overflow(1)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        if not FINISHER.flush(timeout_millis / 1000):
            return False
        provider = self._provider()
        return provider is None or flush_storage(provider, deadline)

    def shutdown(self) -> None:
        FINISHER.flush(EXIT_FLUSH_SECONDS)


_flushing_providers: weakref.WeakSet[Any] = weakref.WeakSet()  # not ids: a collected provider's id is reused


def flush_before_exporters(tracer_provider: Any) -> None:
    """Make ``tracer_provider``'s flush and shutdown finish pending calls before exporting.

    The processor is moved to the front of the SDK's processor chain (processors flush in
    order); on a provider without that chain it is appended, and exit still flushes first.
    """
    from otel_margin import termination  # here, not at import: it imports this module

    termination.install()
    if not hasattr(tracer_provider, "add_span_processor") or tracer_provider in _flushing_providers:
        return
    processor = _FlushFinisher(tracer_provider)
    tracer_provider.add_span_processor(processor)
    _flushing_providers.add(tracer_provider)
    chain = getattr(tracer_provider, "_active_span_processor", None)
    processors = getattr(chain, "_span_processors", None)
    if isinstance(processors, tuple) and processors and processors[-1] is processor:
        with getattr(chain, "_lock", threading.Lock()):
            chain._span_processors = (processor, *processors[:-1])


def known_providers() -> list[Any]:
    """The tracer providers whose flush finishes pending calls first (:func:`flush_before_exporters`)."""
    return list(_flushing_providers)


def span_processors(tracer_provider: Any) -> tuple[Any, ...]:
    """The SDK provider's span processors, in order (``()`` for a provider without that chain)."""
    chain = getattr(tracer_provider, "_active_span_processor", None)
    processors = getattr(chain, "_span_processors", ())
    return processors if isinstance(processors, tuple) else ()


def flush_storage(tracer_provider: Any, deadline: float) -> bool:
    """Export the provider's queued spans to exporters that spool first, and write their rows.

    For each span processor whose ``span_exporter`` sets ``writes_on_flush`` (the ClickHouse
    exporter): the processor's ``force_flush()``, then the exporter's. False if ``deadline``
    (``time.monotonic()``) passed or a flush failed.
    """
    done = True
    for processor in span_processors(tracer_provider):
        exporter = getattr(processor, "span_exporter", None)
        if not getattr(exporter, "writes_on_flush", False):
            continue
        remaining_ms = int(max(deadline - time.monotonic(), 0) * 1000)
        try:
            done = processor.force_flush(remaining_ms) is not False and done
            remaining_ms = int(max(deadline - time.monotonic(), 0) * 1000)
            done = bool(exporter.force_flush(remaining_ms)) and done
        except Exception:  # noqa: BLE001 - a flush never raises into the SDK or the app
            logger.debug("otel-margin: flushing %r failed", exporter, exc_info=True)
            done = False
    return done


def queued_spans(tracer_provider: Any) -> int:
    """Spans waiting in the queues of the provider's batch span processors (not yet exported)."""
    total = 0
    for processor in span_processors(tracer_provider):
        queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
        if queue is not None:
            total += len(queue)
    return total


def _watched_queues(processors: tuple[Any, ...]) -> list[tuple[Any, Any]]:
    """(queue, exporter) of each batch processor whose exporter counts the queue's overflow."""
    watched = []
    for processor in processors:
        exporter = getattr(processor, "span_exporter", None)
        queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
        if hasattr(exporter, "count_queue_overflow") and getattr(queue, "maxlen", None):
            watched.append((queue, exporter))
    return watched
