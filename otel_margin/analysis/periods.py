"""Calendar periods for reports: a month, a range of dates, or the last N days.

A monthly subscription is spread over the days of its month, so only a report over the whole
month sees all of it; a month that is still running is shown to the day before and labelled
partial ("December 2026, days 1–7 of 31: partial"), never silently compared with whole months.
Parsers raise :class:`ValueError` with a message that names the value and the fix (the command
line shows it under the flag's name).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class Period:
    """The days a report covers (``start``..``end``, inclusive) and how to name them."""

    start: date
    end: date
    label: str
    partial: bool
    """True when the period asked for runs past today: only its days up to today are in the report."""
    days: int
    """Days in ``start``..``end``."""
    period_days: int
    """Days in the whole period asked for (a month's 28–31)."""


def parse_month(text: str) -> date:
    """``YYYY-MM`` as the first day of that month."""
    match = _MONTH.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a month; use YYYY-MM, e.g. 2026-12")
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12:
        raise ValueError(f"{text!r} has no month {month}: months run 01..12; use YYYY-MM, e.g. {year:04d}-12")
    if year < 1970:
        raise ValueError(f"{text!r} is before 1970, where the store keeps no dates; use YYYY-MM from 1970-01")
    return date(year, month, 1)


def parse_day(text: str) -> date:
    """``YYYY-MM-DD`` as a date."""
    try:
        if not _DAY.fullmatch(text.strip()):  # fromisoformat would also take 20261201 and week dates
            raise ValueError
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date; use YYYY-MM-DD, e.g. 2026-12-01") from None
    if day.year < 1970:
        raise ValueError(f"{text!r} is before 1970, where the store keeps no dates; use YYYY-MM-DD from 1970-01-01")
    return day


def month(first_day: date, *, today: date) -> Period:
    """The calendar month starting ``first_day``; up to ``today`` (partial) if it is still running."""
    period_days = calendar.monthrange(first_day.year, first_day.month)[1]
    last_day = first_day.replace(day=period_days)
    name = f"{calendar.month_name[first_day.month]} {first_day.year}"
    if first_day > today:
        raise ValueError(f"{name} has not started yet (today is {today}); choose this month or an earlier one")
    if last_day < today:
        return Period(first_day, last_day, name, False, period_days, period_days)
    days = today.day
    return Period(first_day, today, f"{name}, days 1–{days} of {period_days}: partial", True, days, period_days)


def between(start: date, end: date, *, today: date) -> Period:
    """The days ``start``..``end``; cut at ``today`` (partial) when ``end`` is still to come."""
    if end < start:
        raise ValueError(f"the range {start}..{end} ends before it starts; swap the dates")
    if start > today:
        raise ValueError(f"the range {start}..{end} starts after today ({today}); nothing is recorded there yet")
    period_days = (end - start).days + 1
    if end <= today:
        return Period(start, end, f"{start} .. {end}", False, period_days, period_days)
    days = (today - start).days + 1
    return Period(start, today, f"{start} .. {end}, days 1–{days} of {period_days}: partial", True, days, period_days)


def last_days(count: int, *, today: date) -> Period:
    """The ``count`` days ending today (today included, itself still running)."""
    if count < 1:
        raise ValueError(f"{count} days is not a period; give at least 1 day")
    start = today - timedelta(days=count - 1)
    return Period(start, today, f"last {count} days", False, count, count)
