"""Spans that record something other than an LLM call: a unit's outcome, a cost line.

They travel the way LLM spans do — through the application's tracer provider, the batch span
processor and the ClickHouse exporter (which turns them into ``outcomes`` / ``cost_lines`` rows),
or OTLP to a collector (whose ``otel_traces`` rows the collector views turn into the same rows).
A record span is an INTERNAL span, started and ended at once, whose ``margin.*`` attributes are
the whole record; it never carries ``gen_ai.operation.name``, so nothing counts it as a call.

The tracer provider is the one the otel-margin instrumentors were given (the global one under
``opentelemetry-instrument``), so records and calls go to the same place.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from otel_margin import __version__

logger = logging.getLogger(__name__)

SCOPE = "otel_margin.records"
_provider: Any = None


def use_tracer_provider(provider: Any) -> None:
    """Send record spans to ``provider`` (``None``: the global tracer provider)."""
    global _provider
    _provider = provider


def emit(name: str, attributes: Mapping[str, Any]) -> bool:
    """Record one span ``name`` with ``attributes``, now; ``False`` when it could not be (logged, never raised)."""
    try:
        tracer = trace.get_tracer(SCOPE, __version__, _provider)
        span = tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=dict(attributes))
        span.end()
        return True
    except Exception:  # noqa: BLE001 - a record lost is logged; the application goes on
        logger.warning("otel-margin: the record %r could not be written", name, exc_info=True)
        return False
