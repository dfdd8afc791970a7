"""What the reviews read from the warehouse: one function per query, rows as frozen values.

Each function runs one ``review_*_query.sql`` from ``otel_margin/analysis/sql`` with its values
bound; money arrives as exact :class:`~decimal.Decimal`. The margin, zone and guardrail figures
come from :mod:`otel_margin.analysis.margin` and :mod:`otel_margin.analysis.zones`, not from here.
Parts of the warehouse that other features create (the alert engine's ``alert_events``) are looked
for at run time: ``None`` means "not there yet", never an empty history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from otel_margin.analysis.queries import query


@dataclass(frozen=True, slots=True)
class PeriodCost:
    """Cost of one key (a feature, or a provider's model) in one period (a week or a month)."""

    period: date
    key: str
    calls: int
    priced_calls: int
    unpriced_calls: int
    cost_usd: Decimal

    @property
    def cost_per_request(self) -> Decimal | None:
        """Average cost of a priced call (``None`` without priced calls)."""
        return self.cost_usd / self.priced_calls if self.priced_calls else None


@dataclass(frozen=True, slots=True)
class ModelMonth:
    """One month of one provider's model (the hourly rollup)."""

    month: date
    provider: str
    model: str
    calls: int
    priced_calls: int
    unpriced_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class Repeats:
    """A feature's repeated requests: identical request, same customer, in the range."""

    feature: str
    repeated_requests: int
    """Distinct requests asked more than once."""
    avoidable_calls: int
    """Calls after the first of each repeated request."""
    customers: int
    avoidable_usd: Decimal


@dataclass(frozen=True, slots=True)
class SmallCalls:
    """A feature's small generation calls on one provider's model, with their summed tokens."""

    feature: str
    provider: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class ModelInUse:
    """A model calls used in the range, per operation and the price version they were priced with."""

    provider: str
    operation: str
    model: str
    price_version: str
    calls: int
    unpriced_calls: int
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class FiredAlert:
    """An alert from ``alert_events``: what breached, and whether it has cleared since."""

    rule: str
    severity: str
    feature: str
    customer: str
    value: float
    threshold: float
    trend: str
    driver: str
    fired_at: datetime
    closed_at: datetime | None
    delivered_to: int
    due_to: int
    next_fired_at: datetime | None
    """When the same rule, feature and customer fired next (a newer row), if it did."""

    @property
    def outcome(self) -> str:
        """``still open``, ``cleared <time>`` or ``fired again <time>`` (the breach went on)."""
        if self.closed_at is None:
            return "still open"
        if self.next_fired_at is not None and self.next_fired_at <= self.closed_at:
            return f"fired again {self.next_fired_at:%Y-%m-%d %H:%M}"
        return f"cleared {self.closed_at:%Y-%m-%d %H:%M}"


def feature_weeks(client: Any, *, start: date, end: date, database: str) -> list[PeriodCost]:
    """Cost per week (Monday start) and feature, weeks of ``start``..``end``."""
    rows = _rows(client, "review_feature_weeks_query", database, {"start": start, "end": end})
    return [PeriodCost(row["week"], row["feature"], row["calls"], row["priced_calls"], row["unpriced_calls"],
                       row["cost_usd"]) for row in rows]


def model_months(client: Any, *, start: date, end: date, database: str) -> list[ModelMonth]:
    """Cost per month, provider and model over ``start``..``end``."""
    rows = _rows(client, "review_model_months_query", database, {"start": start, "end": end})
    return [ModelMonth(**{name: row[name] for name in ModelMonth.__slots__}) for row in rows]


def repeated_requests(client: Any, *, start: date, end: date, database: str) -> list[Repeats]:
    """Repeated requests per feature over ``start``..``end``, most avoidable dollars first."""
    rows = _rows(client, "review_repeats_query", database, {"start": start, "end": end})
    return [Repeats(**{name: row[name] for name in Repeats.__slots__}) for row in rows]


def small_calls(client: Any, *, start: date, end: date, small_output_tokens: int, database: str) -> list[SmallCalls]:
    """Calls under ``small_output_tokens`` output tokens per feature, provider and model."""
    rows = _rows(client, "review_small_calls_query", database,
                 {"start": start, "end": end, "small_output_tokens": small_output_tokens})
    return [SmallCalls(row["feature"], row["provider"], row["model"], row["calls"], row["input_tokens_sum"],
                       row["output_tokens_sum"], row["cache_read_tokens_sum"], row["cache_write_tokens_sum"],
                       row["reasoning_tokens_sum"], row["cost_usd_sum"]) for row in rows]


def models_in_use(client: Any, *, start: date, end: date, database: str) -> list[ModelInUse]:
    """Every provider, operation, model and price version calls used over ``start``..``end``."""
    rows = _rows(client, "review_models_in_use_query", database, {"start": start, "end": end})
    return [ModelInUse(row["provider"], row["operation"], row["model"], row["price_version"], row["calls"],
                       row["unpriced_calls"], row["priced_cost_usd"]) for row in rows]


def fired_alerts(client: Any, *, start: date, end: date, database: str) -> list[FiredAlert] | None:
    """Alerts fired over ``start``..``end``; ``None`` when no alert engine has created ``alert_events``."""
    if not has_table(client, database, "alert_events"):
        return None
    rows = _rows(client, "review_alerts_query", database, {"start": start, "end": end})
    return [FiredAlert(**{name: row[name] for name in FiredAlert.__slots__}) for row in rows]


def has_table(client: Any, database: str, table: str) -> bool:
    """``database.table`` exists."""
    return bool(client.query(
        "SELECT count() FROM system.tables WHERE database = {database:String} AND name = {table:String}",
        parameters={"database": database, "table": table},
    ).result_rows[0][0])


def _rows(client: Any, name: str, database: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    return list(client.query(query(name, database=database), parameters=parameters).named_results())
