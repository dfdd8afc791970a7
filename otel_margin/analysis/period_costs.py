"""Fixed cost of goods of a period (GPU hosting, a vector database cluster): the CSV format and the import.

The file (UTF-8, comma-separated, header first)::

    period,amount,category[,feature][,customer][,tier]
    2026-12,2800.00,infrastructure,dev-tools,,
    2026-12-01..2026-12-15,120.50,support,,acme,

``period`` is a month ``YYYY-MM`` or an inclusive day range ``YYYY-MM-DD..YYYY-MM-DD`` (at most
366 days), as in the revenue file. ``amount`` is a decimal in USD (at most 12 decimals; negative
for a credit). ``category`` is one of the waterfall's categories (:data:`~otel_margin.costs.CATEGORIES`).
``feature``, ``customer`` and ``tier`` are optional: an empty one means the cost is not
attributed to one. One row per (period, category, feature, customer, tier).

Import is all or nothing: any bad row gives a per-line error naming the value and the fix, and
nothing is written. It is idempotent: a row whose key already holds the same amount is skipped;
a different amount replaces the stored one (newest import wins; readers use ``FINAL``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from otel_margin import schema
from otel_margin.costs import CATEGORIES
from otel_margin.analysis.revenue import ImportResult, _amount, _period, _RowError, _text, read_csv_rows

COLUMNS = ("period", "amount", "category", "feature", "customer", "tier")
REQUIRED_COLUMNS = COLUMNS[:3]

Key = tuple[date, date, str, str, str, str]


@dataclass(frozen=True, slots=True)
class PeriodCost:
    """``amount_usd`` of cost of goods of ``category`` over a period (inclusive)."""

    period_start: date
    period_end: date
    category: str
    amount_usd: Decimal
    feature: str = ""
    customer: str = ""
    tier: str = ""
    line: int = 0

    @property
    def key(self) -> Key:
        """What makes a row unique; a re-import with the same key replaces it."""
        return (self.period_start, self.period_end, self.category, self.feature, self.customer, self.tier)


class CostFileError(ValueError):
    """The cost file has bad rows; ``errors`` holds one message per problem line."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors) + "\nnothing was imported; fix the lines above and import again")
        self.errors = errors


def parse_costs_csv(text: str, *, source: str = "costs.csv") -> list[PeriodCost]:
    """Every row of a period-cost CSV, validated; raises :class:`CostFileError` otherwise (never anything else)."""
    return read_csv_rows(
        text, source=source, columns=COLUMNS, header_problem=_header_problem, parse=_row, error=CostFileError,
        duplicate=lambda cost, first: (
            f"period {cost.period_start}..{cost.period_end}, category {cost.category!r}, feature {cost.feature!r}, "
            f"customer {cost.customer!r}, tier {cost.tier!r} is already on line {first}; "
            "keep one row per period, category, feature, customer and tier"
        ),
    )


def _header_problem(header: list[str]) -> str | None:
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        return (f"header {','.join(header)!r} is not {','.join(REQUIRED_COLUMNS)}[,feature][,customer][,tier]; "
                "the first line must name the columns")
    return None


def import_period_costs(
    client: Any, costs: list[PeriodCost], *, source: str, database: str = schema.DEFAULT_DATABASE
) -> ImportResult:
    """Write ``costs`` into ``period_costs`` in one insert, skipping rows stored with the same amount."""
    stored = _stored(client, database)
    new = changed = 0
    rows = []
    imported_at = datetime.now(timezone.utc)
    for cost in costs:
        before = stored.get(cost.key)
        if before == cost.amount_usd:
            continue
        if before is None:
            new += 1
        else:
            changed += 1
        rows.append([cost.period_start, cost.period_end, cost.category, cost.feature, cost.customer, cost.tier,
                     cost.amount_usd, source, cost.line, imported_at])
    if rows:
        token = hashlib.sha256(repr([row[:7] for row in rows]).encode()).hexdigest()
        client.insert(
            f"{schema.quote_identifier(database)}.period_costs",
            rows,
            column_names=["period_start", "period_end", "category", "feature", "customer", "tier", "amount_usd",
                          "source", "source_line", "imported_at"],
            settings={"insert_deduplication_token": token},
        )
    return ImportResult(new=new, changed=changed, unchanged=len(costs) - new - changed)


def _row(cells: dict[str, str], width: int, expected: int, line: int) -> PeriodCost:
    if width != expected:
        raise _RowError(f"has {width} fields, the header has {expected}; quote values that contain commas")
    start, end = _period(cells["period"].strip())
    amount = _amount(cells["amount"].strip())
    category = cells["category"].strip().lower()
    if category not in CATEGORIES:
        raise _RowError(f"category {cells['category'].strip()[:40]!r} is not a cost category; "
                        f"use one of {', '.join(CATEGORIES)}")
    return PeriodCost(start, end, category, amount, _text(cells, "feature", required=False),
                      _text(cells, "customer", required=False), _text(cells, "tier", required=False), line)


def _stored(client: Any, database: str) -> dict[Key, Decimal]:
    result = client.query(
        "SELECT period_start, period_end, category, feature, customer, tier, amount_usd "
        f"FROM {schema.quote_identifier(database)}.period_costs FINAL"
    )
    return {tuple(row[:6]): row[6] for row in result.result_rows}  # type: ignore[misc]
