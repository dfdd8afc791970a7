"""Subscription and invoice revenue: the CSV format, its parser, and the import.

The file (UTF-8, comma-separated, header first)::

    customer,period,amount,currency,tier[,feature]
    acme,2024-05,99.00,USD,pro,
    acme,2024-05-01..2024-05-15,10.50,USD,pro,document-analysis

``period`` is a month ``YYYY-MM`` or an inclusive day range ``YYYY-MM-DD..YYYY-MM-DD`` (at
most 366 days). ``amount`` is a decimal (negative for a credit). ``currency`` must be
``USD``. An empty ``feature`` means "not attributed": the margin views allocate it to the
customer's features by usage share. One row per (customer, period, feature).

Import is all or nothing: any bad row gives a per-line error and nothing is written. It is
idempotent: a row whose (customer, period, feature) already holds the same amount and tier
is skipped; a different amount or tier replaces the stored one (newest import wins).
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from otel_margin import schema

COLUMNS = ("customer", "period", "amount", "currency", "tier", "feature")
REQUIRED_COLUMNS = COLUMNS[:5]
MAX_PERIOD_DAYS = 366
MAX_ROWS = 1_000_000
"""One import is one insert block, which ClickHouse writes atomically."""

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
_MAX_AMOUNT = Decimal(10) ** 15
_MAX_TEXT = 256


@dataclass(frozen=True, slots=True)
class RevenueEvent:
    """One revenue row: ``amount_usd`` earned from ``customer`` over a period (inclusive)."""

    customer: str
    period_start: date
    period_end: date
    amount_usd: Decimal
    tier: str
    feature: str = ""
    """Empty: not attributed to a feature; allocated by usage share."""
    line: int = 0
    """Line of the source file (for messages)."""

    @property
    def key(self) -> tuple[str, date, date, str]:
        """What makes a row unique; a re-import with the same key replaces it."""
        return (self.customer, self.period_start, self.period_end, self.feature)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What one import did."""

    new: int
    changed: int
    unchanged: int


class RevenueFileError(ValueError):
    """The revenue file has bad rows; ``errors`` holds one message per problem line."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors) + "\nnothing was imported; fix the lines above and import again")
        self.errors = errors


def parse_revenue_csv(text: str, *, source: str = "revenue.csv") -> list[RevenueEvent]:
    """Every row of a revenue CSV, validated; raises :class:`RevenueFileError` otherwise.

    ``source`` names the file in messages, e.g.
    ``revenue.csv line 7: amount 'abc' is not a number; use a decimal like 99.00``.
    Never raises anything else, whatever ``text`` holds.
    """
    return read_csv_rows(
        text, source=source, columns=COLUMNS, header_problem=_header_problem, parse=_event, error=RevenueFileError,
        duplicate=lambda event, first: (
            f"customer {event.customer!r}, period {event.period_start}..{event.period_end}, feature {event.feature!r} "
            f"is already on line {first}; keep one row per customer, period and feature"
        ),
    )


def read_csv_rows(
    text: str,
    *,
    source: str,
    columns: tuple[str, ...],
    header_problem: Callable[[list[str]], str | None],
    parse: Callable[[dict[str, str], int, int, int], Any],
    duplicate: Callable[[Any, int], str],
    error: Callable[[list[str]], Exception],
) -> list[Any]:
    """The rows of an all-or-nothing CSV import (revenue, period costs), each checked; else ``error(messages)``.

    ``parse(cells, width, header_width, line)`` builds a row with a ``key`` or raises ``_RowError``;
    ``duplicate(row, first_line)`` says why a second row with the same key is refused. Every bad
    line gets a message naming the file and line (at most 50, so the first ones stay visible);
    nothing else is ever raised, whatever ``text`` holds.
    """
    errors: list[str] = []
    rows: list[Any] = []
    seen: dict[Any, int] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in record]
                problem = header_problem(header)
                if problem:
                    raise error([f"{source} line {line}: {problem}"])
                continue
            if len(errors) >= 50:  # enough to fix; more would bury the first ones
                break
            try:
                row = parse(dict(zip(header, record)), len(record), len(header), line)
            except _RowError as bad:
                errors.append(f"{source} line {line}: {bad}")
                continue
            if row.key in seen:
                errors.append(f"{source} line {line}: {duplicate(row, seen[row.key])}")
                continue
            seen[row.key] = line
            rows.append(row)
    except csv.Error as bad:
        errors.append(f"{source} line {reader.line_num}: not valid CSV ({bad}); check quotes and NUL bytes")
    if header is None:
        errors.append(f"{source}: the file is empty; the first line must be the header {','.join(columns)}")
    if len(rows) > MAX_ROWS:
        errors.append(f"{source}: {len(rows)} rows is more than {MAX_ROWS}; split the file")
    if errors:
        raise error(errors)
    return rows


def import_revenue(
    client: Any, events: list[RevenueEvent], *, source: str, database: str = schema.DEFAULT_DATABASE
) -> ImportResult:
    """Write ``events`` into ``revenue_events`` in one insert, skipping unchanged rows.

    Rows already stored with the same key, amount and tier are skipped; a changed amount
    or tier is inserted as a newer version, which replaces the old one for every reader.
    """
    stored = _stored(client, {event.customer for event in events}, database)
    new = changed = 0
    rows = []
    imported_at = datetime.now(timezone.utc)
    for event in events:
        before = stored.get(event.key)
        if before == (event.amount_usd, event.tier):
            continue
        if before is None:
            new += 1
        else:
            changed += 1
        rows.append(
            [event.customer, event.period_start, event.period_end, event.feature, event.tier,
             event.amount_usd, source, event.line, imported_at]
        )
    if rows:
        # One token per import: a retry of this insert is dropped, but an amount changed back to
        # an earlier value (10 -> 12 -> 10) has an earlier import's rows and must still be stored.
        token = hashlib.sha256(repr((imported_at.isoformat(), [row[:6] for row in rows])).encode()).hexdigest()
        client.insert(
            f"{schema.quote_identifier(database)}.revenue_events",
            rows,
            column_names=["customer", "period_start", "period_end", "feature", "tier",
                          "amount_usd", "source", "source_line", "imported_at"],
            settings={"insert_deduplication_token": token},
        )
    return ImportResult(new=new, changed=changed, unchanged=len(events) - new - changed)


# --- one row ---------------------------------------------------------------------------------


class _RowError(Exception):
    pass


def _header_problem(header: list[str]) -> str | None:
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        return (
            f"header {','.join(header)!r} is not {','.join(REQUIRED_COLUMNS)}[,feature]; "
            "the first line must name the columns"
        )
    return None


def _event(cells: dict[str, str], width: int, expected: int, line: int) -> RevenueEvent:
    if width != expected:
        raise _RowError(f"has {width} fields, the header has {expected}; quote values that contain commas")
    customer = _text(cells, "customer", required=True)
    tier = _text(cells, "tier", required=True)
    feature = _text(cells, "feature", required=False)
    start, end = _period(cells["period"].strip())
    amount = _amount(cells["amount"].strip())
    currency = cells["currency"].strip()
    if currency.upper() != "USD":
        raise _RowError(f"currency {currency!r} is not supported; convert the amount to USD and write USD")
    return RevenueEvent(customer, start, end, amount, tier, feature, line)


def _text(cells: dict[str, str], name: str, *, required: bool) -> str:
    value = cells.get(name, "").strip()
    if required and not value:
        raise _RowError(f"{name} is empty; every row needs a {name}")
    if len(value) > _MAX_TEXT or not value.isprintable():
        raise _RowError(f"{name} {value[:40]!r} is not printable text up to {_MAX_TEXT} characters")
    return value


def _period(value: str) -> tuple[date, date]:
    month = _MONTH.match(value)
    day_range = _RANGE.match(value)
    try:
        if month:
            year, number = int(month[1]), int(month[2])
            return date(year, number, 1), date(year, number, calendar.monthrange(year, number)[1])
        if day_range:
            start, end = date.fromisoformat(day_range[1]), date.fromisoformat(day_range[2])
        else:
            raise ValueError
    except ValueError:
        raise _RowError(
            f"period {value!r} is not a month or a day range; use 2024-05 or 2024-05-01..2024-05-31"
        ) from None
    if end < start:
        raise _RowError(f"period {value!r} ends before it starts; write the earlier day first")
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        raise _RowError(f"period {value!r} is longer than {MAX_PERIOD_DAYS} days; split it into one row per year")
    return start, end


def _amount(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value):
        raise _RowError(f"amount {value!r} is not a number; use a decimal like 99.00")
    if abs(amount) >= _MAX_AMOUNT:
        raise _RowError(f"amount {value!r} is too large; amounts are in USD below 10^15")
    if amount.as_tuple().exponent < -12:  # type: ignore[operator]
        raise _RowError(f"amount {value!r} has more than 12 decimal places; round it")
    return amount


def _stored(client: Any, customers: set[str], database: str) -> dict[tuple[str, date, date, str], tuple[Decimal, str]]:
    if not customers:
        return {}
    result = client.query(
        "SELECT customer, period_start, period_end, feature, amount_usd, tier "
        f"FROM {schema.quote_identifier(database)}.revenue_events FINAL "
        "WHERE customer IN {customers:Array(String)}",  # a bound parameter
        parameters={"customers": sorted(customers)},
    )
    return {(row[0], row[1], row[2], row[3]): (row[4], row[5]) for row in result.result_rows}
