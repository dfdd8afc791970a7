"""On SIGTERM, the calls and spans still in memory are written before the process exits.

SIGTERM is how systemd, Docker and Kubernetes stop a service, and Python's default for it ends
the process at once: no ``atexit`` hooks, no provider shutdown, so the finisher's pending calls
and the span processor's last seconds of spans were lost (issue 18). :func:`install` puts a
handler in front of whatever handled SIGTERM before. On the signal it:

* flushes, on a helper thread, for at most :data:`TERM_FLUSH_SECONDS`: the finisher, then every
  tracer provider otel-margin knows of (the ones it instruments or exports from, and the global
  one), whose flush exports the span queues and writes the ClickHouse exporter's rows. Another
  thread, because the signal interrupts the main thread wherever it was, possibly holding a lock
  the flush needs: a flush stuck on it ends at the deadline instead of hanging the exit;
* hands the signal on: to the previous Python handler (the application's, or a server's graceful
  shutdown, such as uvicorn's), which then decides when the process exits. When the previous
  handler was the default, the providers are shut down (chDB closed) instead of flushed, the
  default is restored and SIGTERM raised again, so the process still dies of SIGTERM (exit status
  143 in a shell, -15 from ``subprocess``);
* counts and logs, at warning level, what was still in memory at the deadline (finished calls
  and queued spans): those are lost. Rows durably spooled but not yet inserted are not lost: the
  next process exporting to the same spool writes them.

Installed once, and only when it is safe: from the main thread (Python sets handlers only
there), when SIGTERM is not ignored, when its handler was set from Python (so it can be
chained), and unless ``OTEL_MARGIN_HANDLE_SIGTERM=false``. A handler set after ours replaces it
(gunicorn's workers install their own): such servers exit through ``sys.exit``, where the
finisher's ``atexit`` flush and the SDK's provider shutdown write everything.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from otel_margin import environment_variables as env
from otel_margin.finisher import FINISHER, known_providers, queued_spans

logger = logging.getLogger(__name__)

TERM_FLUSH_SECONDS = 5.0
"""The longest the handler spends writing before it hands the signal on (Docker waits 10 s and
Kubernetes 30 s between SIGTERM and SIGKILL)."""


@dataclass(frozen=True, slots=True)
class TermStats:
    """What the SIGTERM handler did in this process (a snapshot)."""

    signals: int = 0
    """SIGTERMs handled."""
    lost_calls: int = 0
    """Finished LLM calls still waiting for the finisher at a flush's deadline."""
    lost_spans: int = 0
    """Spans still queued in a batch span processor at a flush's deadline."""


_lock = threading.Lock()
_previous: Any = None
_installed = False
_handling = False
_counts = {"signals": 0, "lost_calls": 0, "lost_spans": 0}


def install() -> bool:
    """Chain otel-margin's SIGTERM handler in front of the current one, if safe; True if it is in place."""
    global _previous, _installed
    with _lock:
        if _installed:
            return True
        if not _enabled() or threading.current_thread() is not threading.main_thread():
            return False
        try:
            previous = signal.getsignal(signal.SIGTERM)
            if previous is None or previous is signal.SIG_IGN:
                return False  # set outside Python (cannot be chained), or the application ignores SIGTERM
            signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError, AttributeError) as error:  # no SIGTERM here, or not settable
            logger.debug("otel-margin: SIGTERM handler not installed: %s", error)
            return False
        _previous, _installed = previous, True
        return True


def stats() -> TermStats:
    """A snapshot of :class:`TermStats`."""
    with _lock:
        return TermStats(**_counts)


def _enabled() -> bool:
    value = os.environ.get(env.OTEL_MARGIN_HANDLE_SIGTERM, "true").strip().lower()
    if value in ("", "true", "1", "yes", "on"):
        return True
    if value not in ("false", "0", "no", "off"):
        logger.warning("otel-margin: %s=%r is not true or false; using true", env.OTEL_MARGIN_HANDLE_SIGTERM, value)
        return True
    return False


def _on_sigterm(signum: int, frame: Any) -> None:
    global _handling
    previous = _previous
    final = previous is signal.SIG_DFL
    if not _handling:  # a second SIGTERM during the flush is handed on at once
        _handling = True
        try:
            _write_before_exit(shutdown=final)
        except Exception:  # noqa: BLE001 - the signal is handed on whatever happened
            logger.debug("otel-margin: writing at SIGTERM failed", exc_info=True)
        finally:
            _handling = False
    if final:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
    elif callable(previous):
        previous(signum, frame)


def _write_before_exit(*, shutdown: bool) -> None:
    started = time.monotonic()
    providers = _providers()
    done = threading.Event()

    def write() -> None:
        try:
            FINISHER.flush(TERM_FLUSH_SECONDS)
            for provider in providers:
                remaining = max(started + TERM_FLUSH_SECONDS - time.monotonic(), 0.0)
                try:
                    if shutdown:
                        provider.shutdown()
                    else:
                        provider.force_flush(int(remaining * 1000))
                except Exception:  # noqa: BLE001 - one provider's failure must not stop the others
                    logger.debug("otel-margin: flushing %r at SIGTERM failed", provider, exc_info=True)
        finally:
            done.set()

    thread = threading.Thread(target=write, name="otel-margin-sigterm", daemon=True)
    thread.start()
    done.wait(TERM_FLUSH_SECONDS)
    lost_calls = FINISHER.pending()
    lost_spans = sum(queued_spans(provider) for provider in providers)
    with _lock:
        _counts["signals"] += 1
        _counts["lost_calls"] += lost_calls
        _counts["lost_spans"] += lost_spans
    if lost_calls or lost_spans:
        logger.warning(
            "otel-margin: SIGTERM: %d finished LLM call(s) and %d queued span(s) were not written within "
            "%.0f s and are lost; the provider's flush or the ClickHouse exporter is stuck or too slow",
            lost_calls, lost_spans, TERM_FLUSH_SECONDS)
    else:
        logger.debug("otel-margin: SIGTERM: pending calls and spans written in %.3f s", time.monotonic() - started)


def _providers() -> list[Any]:
    providers = known_providers()
    current = trace.get_tracer_provider()
    if hasattr(current, "force_flush") and all(current is not known for known in providers):
        providers.append(current)
    return providers
