"""Record spans (an outcome, a cost line: :mod:`otel_margin.record_spans`) → rows of ``outcomes`` / ``cost_lines``.

The exporter sends these rows the way it sends ``llm_calls`` rows: one Native block per table
and batch, spooled and retried with its own deduplication token. A batch's columns say which
table it is for (:func:`table_for`), so spooled batches need no other marker and batches of an
earlier release (``llm_calls`` columns only) still go to ``llm_calls``. Values are coerced as
:mod:`~otel_margin.exporters.rows` coerces a call's; nothing here raises.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from otel_margin import attributes as a
from otel_margin.exporters import rows

OUTCOMES, COST_LINES = "outcomes", "cost_lines"

_HEAD: tuple[tuple[str, str], ...] = (
    ("timestamp", "DateTime64(6, 'UTC')"),
    ("trace_id", "String"),
    ("span_id", "String"),
    ("service_name", "LowCardinality(String)"),
)
_WHO: tuple[tuple[str, str, str], ...] = (  # column, type, attribute
    ("unit_id", "String", a.MARGIN_UNIT_ID),
    ("unit_kind", "LowCardinality(String)", a.MARGIN_UNIT_KIND),
    ("feature", "LowCardinality(String)", a.MARGIN_FEATURE),
    ("customer", "String", a.MARGIN_CUSTOMER),
    ("tier", "LowCardinality(String)", a.MARGIN_TIER),
    ("cohort", "LowCardinality(String)", a.MARGIN_COHORT),
)
OUTCOME_COLUMNS: tuple[tuple[str, str], ...] = _HEAD + tuple((c, t) for c, t, _ in _WHO) + (
    ("status", "LowCardinality(String)"),
    ("revenue_usd", "Nullable(Decimal(38, 12))"),
    ("quality", "Nullable(Decimal(38, 12))"),
)
COST_LINE_COLUMNS: tuple[tuple[str, str], ...] = _HEAD + tuple((c, t) for c, t, _ in _WHO) + (
    ("category", "LowCardinality(String)"),
    ("amount_usd", "Decimal(38, 12)"),
    ("description", "String"),
)
TABLE_COLUMNS = {OUTCOMES: tuple(c for c, _ in OUTCOME_COLUMNS), COST_LINES: tuple(c for c, _ in COST_LINE_COLUMNS)}
rows.register_columns(OUTCOME_COLUMNS + COST_LINE_COLUMNS)
_MAX_NS = 2**63


def table_for(columns: tuple[str, ...] | list[str]) -> str:
    """The table a batch of ``columns`` is for: ``outcomes``, ``cost_lines`` or ``llm_calls``."""
    if "status" in columns:
        return OUTCOMES
    if "category" in columns:
        return COST_LINES
    return rows.TABLE


def record_row(span: ReadableSpan, *, service_name: str, problems: Counter[str]) -> tuple[str, list[Any]] | None:
    """``(table, row)`` for an outcome or cost-line span, else ``None`` (not a record span)."""
    attrs = span.attributes or {}
    if a.MARGIN_OUTCOME_STATUS in attrs:
        table = OUTCOMES
    elif a.MARGIN_COST_LINE_CATEGORY in attrs:
        table = COST_LINES
    else:
        return None
    context = span.context
    start = span.start_time
    if type(start) is not int or not 0 <= start < _MAX_NS:
        problems["timestamp:invalid"] += 1
        start = time.time_ns()
    span_id = format(context.span_id, "016x") if context else ""
    row: list[Any] = [start // 1000, format(context.trace_id, "032x") if context else "", span_id, service_name]
    row += [rows._string(attrs.get(key), column, problems) for column, _, key in _WHO]
    if not row[4]:
        row[4] = span_id  # recorded outside any unit: its own unit
    if not row[6]:
        row[6] = a.UNATTRIBUTED
    if table == OUTCOMES:
        row += [
            rows._string(attrs.get(a.MARGIN_OUTCOME_STATUS), "status", problems),
            rows._money(attrs.get(a.MARGIN_OUTCOME_REVENUE_USD), "revenue_usd", problems),
            rows._money(attrs.get(a.MARGIN_OUTCOME_QUALITY), "quality", problems),
        ]
    else:
        row += [
            rows._string(attrs.get(a.MARGIN_COST_LINE_CATEGORY), "category", problems),
            rows._money(attrs.get(a.MARGIN_COST_LINE_USD), "amount_usd", problems) or "0",
            rows._string(attrs.get(a.MARGIN_COST_LINE_DESCRIPTION), "description", problems),
        ]
    return table, row
