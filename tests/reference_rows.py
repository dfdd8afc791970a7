"""The test oracle for ``otel_margin.exporters.rows``: an LLM span → a typed row, built the slow, obvious way.

This is the exporter's row builder as it was before rows were built as wire text: every
money value a ``Decimal`` quantized to 12 places (half-even), the timestamp a ``datetime``,
meant for clickhouse-connect's typed Native insert. The round-trip test stores both in
chDB and requires identical rows and identical problem counts.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any, Mapping

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otel_margin import attributes as a

_STRING_COLUMNS = {
    "feature": a.MARGIN_FEATURE,
    "tier": a.MARGIN_TIER,
    "cohort": a.MARGIN_COHORT,
    "customer": a.MARGIN_CUSTOMER,
    "provider": a.GEN_AI_PROVIDER_NAME,
    "operation": a.GEN_AI_OPERATION_NAME,
    "request_model": a.GEN_AI_REQUEST_MODEL,
    "response_model": a.GEN_AI_RESPONSE_MODEL,
    "usage_source": a.MARGIN_USAGE_SOURCE,
    "cost_status": a.MARGIN_COST_STATUS,
    "price_version": a.MARGIN_PRICE_VERSION,
    "cache_result": a.MARGIN_CACHE_RESULT,
    "route_from_model": a.MARGIN_ROUTE_FROM_MODEL,
    "limit_action": a.MARGIN_LIMIT_ACTION,
    "error_type": a.ERROR_TYPE,
    "unit_id": a.MARGIN_UNIT_ID,
    "unit_kind": a.MARGIN_UNIT_KIND,
}
_TOKEN_COLUMNS = {
    "input_tokens": a.GEN_AI_USAGE_INPUT_TOKENS,
    "output_tokens": a.GEN_AI_USAGE_OUTPUT_TOKENS,
    "cache_read_tokens": a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "cache_write_tokens": a.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    "reasoning_tokens": a.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
}
_NULLABLE_MONEY_COLUMNS = {"cost_usd": a.MARGIN_COST_USD, "revenue_usd": a.MARGIN_REVENUE_USD}
_MONEY_COLUMNS = {
    "cost_input_usd": a.MARGIN_COST_INPUT_USD,
    "cost_cache_read_usd": a.MARGIN_COST_CACHE_READ_USD,
    "cost_cache_write_usd": a.MARGIN_COST_CACHE_WRITE_USD,
    "cost_output_usd": a.MARGIN_COST_OUTPUT_USD,
    "cost_other_usd": a.MARGIN_COST_OTHER_USD,
    "saved_usd": a.MARGIN_SAVED_USD,
    "cache_cost_usd": a.MARGIN_CACHE_COST_USD,
}

_SCALE = Decimal(1).scaleb(-12)  # Decimal(38, 12)
_MAX_MONEY = Decimal(10) ** 26  # 38 digits, 12 after the point
_MAX_UINT64 = 2**64 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def reference_row(
    span: ReadableSpan, *, service_name: str, problems: Counter[str] | None = None
) -> dict[str, Any] | None:
    """The ``llm_calls`` row for ``span`` as typed Python values, or ``None`` if it is not an LLM span.

    An LLM span is one with ``gen_ai.operation.name``. ``problems`` (optional) counts
    what had to be coerced or emptied, keyed ``"<column>:coerced"`` / ``"<column>:invalid"``.
    """
    attrs: Mapping[str, Any] = span.attributes or {}
    if a.GEN_AI_OPERATION_NAME not in attrs:
        return None
    counter: Counter[str] = problems if problems is not None else Counter()
    context = span.context
    start = span.start_time or 0
    end = span.end_time or start
    row: dict[str, Any] = {
        "timestamp": _EPOCH + timedelta(microseconds=start // 1000),
        "trace_id": format(context.trace_id, "032x") if context else "",
        "span_id": format(context.span_id, "016x") if context else "",
        "service_name": service_name,
        "duration_ms": max(end - start, 0) / 1e6,
    }
    for column, key in _STRING_COLUMNS.items():
        row[column] = _string(attrs.get(key), column, counter)
    usage_invalid = False
    for column, key in _TOKEN_COLUMNS.items():
        before = counter[f"{column}:invalid"]
        row[column] = _tokens(attrs.get(key), column, counter)
        usage_invalid = usage_invalid or counter[f"{column}:invalid"] > before
    for column, key in _NULLABLE_MONEY_COLUMNS.items():
        row[column] = _money(attrs.get(key), column, counter)
    for column, key in _MONEY_COLUMNS.items():
        row[column] = _money(attrs.get(key), column, counter) or Decimal(0)
    row["stream"] = _flag(attrs.get(a.GEN_AI_REQUEST_STREAM), "stream", counter)
    row["request_hash"] = _request_hash(attrs.get(a.MARGIN_REQUEST_HASH), counter)

    if not row["feature"]:
        row["feature"] = a.UNATTRIBUTED
    if not row["usage_source"]:
        row["usage_source"] = "provider"
    if not row["unit_id"]:
        row["unit_id"] = row["span_id"]  # a call outside any unit is its own unit
    if usage_invalid:
        # A token count the column cannot hold is stored as 0, never under a cost priced from it.
        row["cost_status"], row["cost_usd"] = "invalid", None
        for column in ("cost_input_usd", "cost_cache_read_usd", "cost_cache_write_usd", "cost_output_usd",
                       "cost_other_usd"):
            row[column] = Decimal(0)
    elif not row["cost_status"]:
        # An unpriced call is never $0: no cost attribute means NULL and "unpriced".
        row["cost_status"] = "unpriced" if row["cost_usd"] is None else "priced"
    elif row["cost_usd"] is None and row["cost_status"] in ("priced", "estimated"):
        row["cost_status"] = "invalid"  # a row without a cost is never priced
    if not row["error_type"] and span.status is not None and span.status.status_code is StatusCode.ERROR:
        row["error_type"] = "_OTHER"  # the semantic conventions' fallback value
    return row


# --- coercion ----------------------------------------------------------------------------


def _string(value: Any, column: str, problems: Counter[str]) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        problems[f"{column}:coerced"] += 1
        return str(value).lower() if isinstance(value, bool) else str(value)
    problems[f"{column}:invalid"] += 1  # a sequence: no single unambiguous string
    return ""


def _tokens(value: Any, column: str, problems: Counter[str]) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_UINT64:
        return value
    number: int | None = None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is not None and 0 <= number <= _MAX_UINT64:
        problems[f"{column}:coerced"] += 1
        return number
    problems[f"{column}:invalid"] += 1
    return 0


def _money(value: Any, column: str, problems: Counter[str]) -> Decimal | None:
    if value is None:
        return None
    amount: Decimal | None = None
    coerced = False
    if isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            amount = None
    elif isinstance(value, int) and not isinstance(value, bool):
        amount, coerced = Decimal(value), True
    elif isinstance(value, float) and math.isfinite(value):
        amount, coerced = Decimal(repr(value)), True  # the shortest repr, not the binary expansion
    if amount is None or not amount.is_finite() or amount.copy_abs() >= _MAX_MONEY:
        problems[f"{column}:invalid"] += 1
        return None
    try:
        with localcontext() as exact:
            exact.prec = 60  # 38 digits fit; the default 28 would reject large amounts
            amount = amount.quantize(_SCALE, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        problems[f"{column}:invalid"] += 1
        return None
    if coerced:
        problems[f"{column}:coerced"] += 1
    return amount


def _flag(value: Any, column: str, problems: Counter[str]) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        problems[f"{column}:coerced"] += 1
        return True
    if text in ("false", "0"):
        problems[f"{column}:coerced"] += 1
        return False
    problems[f"{column}:invalid"] += 1
    return False


def _request_hash(value: Any, problems: Counter[str]) -> int:
    """16 lowercase hex digits are the UInt64 they spell; anything else present is invalid (0)."""
    if value is None:
        return 0
    if isinstance(value, str) and len(value) == 16 and all(c in "0123456789abcdef" for c in value):
        return int(value, 16)
    problems["request_hash:invalid"] += 1
    return 0
