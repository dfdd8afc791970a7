"""Real ClickHouse (chDB) for the margin tests: one engine per test module, one database per test.

chDB hosts one data directory per process, so the client is module-scoped and closed at
the end of the module (other test modules may open their own directory after it).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterator

import clickhouse_connect
import pytest

from otel_margin import schema

LLM_CALLS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "DateTime64(6, 'UTC')"), ("trace_id", "String"), ("span_id", "String"),
    ("service_name", "LowCardinality(String)"), ("feature", "LowCardinality(String)"),
    ("tier", "LowCardinality(String)"), ("cohort", "LowCardinality(String)"), ("customer", "String"),
    ("unit_id", "String"), ("unit_kind", "LowCardinality(String)"),
    ("provider", "LowCardinality(String)"), ("operation", "LowCardinality(String)"),
    ("request_model", "LowCardinality(String)"), ("response_model", "LowCardinality(String)"),
    ("input_tokens", "UInt64"), ("output_tokens", "UInt64"), ("cache_read_tokens", "UInt64"),
    ("cache_write_tokens", "UInt64"), ("reasoning_tokens", "UInt64"),
    ("usage_source", "LowCardinality(String)"), ("cost_usd", "Nullable(Decimal(38, 12))"),
    ("cost_input_usd", "Decimal(38, 12)"), ("cost_cache_read_usd", "Decimal(38, 12)"),
    ("cost_cache_write_usd", "Decimal(38, 12)"), ("cost_output_usd", "Decimal(38, 12)"),
    ("cost_other_usd", "Decimal(38, 12)"), ("cost_status", "LowCardinality(String)"),
    ("price_version", "LowCardinality(String)"), ("revenue_usd", "Nullable(Decimal(38, 12))"),
    ("cache_result", "LowCardinality(String)"), ("saved_usd", "Decimal(38, 12)"),
    ("cache_cost_usd", "Decimal(38, 12)"),
    ("route_from_model", "LowCardinality(String)"), ("limit_action", "LowCardinality(String)"),
    ("duration_ms", "Float64"), ("error_type", "LowCardinality(String)"), ("stream", "Bool"),
    ("request_hash", "UInt64"),
)
"""The ``llm_calls`` contract with the exporter, as written in the issue."""

COLUMN_NAMES = tuple(name for name, _ in LLM_CALLS_COLUMNS)
ZERO = Decimal(0)


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The module's chDB directory (a CLI under test may open it too: same process, same path)."""
    return str(tmp_path_factory.mktemp("chdb"))


@pytest.fixture(scope="module")
def chdb_client(chdb_path: str) -> Iterator[Any]:
    client = clickhouse_connect.get_client(interface="chdb", path=chdb_path)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def database(chdb_client: Any) -> Iterator[str]:
    """A fresh database holding the whole margin schema."""
    name = f"margin_{uuid.uuid4().hex[:12]}"
    schema.apply_schema(chdb_client, database=name, ttl_days=0)
    try:
        yield name
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {schema.quote_identifier(name)}")


def call(
    *,
    timestamp: datetime,
    feature: str = "chat",
    customer: str = "acme",
    tier: str = "pro",
    cohort: str = "2024-01",
    cost_usd: Decimal | None = ZERO,
    components: tuple[Decimal, Decimal, Decimal, Decimal, Decimal] | None = None,
    revenue_usd: Decimal | None = None,
    input_tokens: int = 100,
    output_tokens: int = 50,
    response_model: str = "gpt-4o-mini",
    **overrides: Any,
) -> dict[str, Any]:
    """One ``llm_calls`` row; ``components`` = (input, cache read, cache write, output, other)."""
    if components is None:
        components = (cost_usd or ZERO, ZERO, ZERO, ZERO, ZERO)
    row = {
        "timestamp": timestamp.replace(tzinfo=timestamp.tzinfo or timezone.utc),
        "trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "service_name": "svc",
        "feature": feature, "tier": tier, "cohort": cohort, "customer": customer,
        "provider": "openai", "operation": "chat", "request_model": response_model,
        "response_model": response_model, "input_tokens": input_tokens, "output_tokens": output_tokens,
        "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
        "usage_source": "provider", "cost_usd": cost_usd,
        "cost_input_usd": components[0], "cost_cache_read_usd": components[1],
        "cost_cache_write_usd": components[2], "cost_output_usd": components[3],
        "cost_other_usd": components[4],
        "cost_status": "unpriced" if cost_usd is None else "priced", "price_version": "test",
        "revenue_usd": revenue_usd, "cache_result": "off", "saved_usd": ZERO, "cache_cost_usd": ZERO,
        "route_from_model": "", "limit_action": "allow", "duration_ms": 12.5, "error_type": "",
        "stream": False, "unit_id": "", "unit_kind": "", "request_hash": 0,
    }
    row.update(overrides)
    if not row["unit_id"]:
        row["unit_id"] = row["span_id"]  # a call outside any unit is its own unit
    return row


def insert_calls(client: Any, database: str, rows: list[dict[str, Any]], *, token: str | None = None) -> None:
    """Insert rows the way the exporter does (one batch, optional deduplication token)."""
    settings = {"insert_deduplication_token": token} if token else None
    client.insert(
        f"{schema.quote_identifier(database)}.llm_calls",
        [[row[name] for name in COLUMN_NAMES] for row in rows],
        column_names=list(COLUMN_NAMES),
        settings=settings,
    )
