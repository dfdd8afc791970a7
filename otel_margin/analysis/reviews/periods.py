"""The periods a review covers: an ISO week (``2026-W49``) or a calendar quarter (``2026-Q4``).

A review is of a *finished* period: by default the last complete ISO week (Monday to Sunday,
UTC) or the last complete quarter before today. Parsers raise :class:`ValueError` naming the
value and the form to use (the command line shows it under the flag's name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

_WEEK = re.compile(r"(\d{4})-W(\d{2})")
_QUARTER = re.compile(r"(\d{4})-Q([1-4])")


@dataclass(frozen=True, slots=True)
class ReviewPeriod:
    """``start``..``end`` (inclusive dates) and the label the review is titled with."""

    start: date
    end: date
    label: str

    @property
    def days(self) -> int:
        """Days in the period."""
        return (self.end - self.start).days + 1


def iso_week(text: str) -> ReviewPeriod:
    """``YYYY-Www`` (ISO 8601 week, Monday first) as its seven days."""
    match = _WEEK.fullmatch(text.strip())
    if not match:
        raise ValueError(f"'{text}' is not an ISO week; use YYYY-Www, e.g. 2026-W49")
    year, week = int(match[1]), int(match[2])
    if not 1 <= year <= 9998:
        raise ValueError(f"'{text}': the year must be between 0001 and 9998")
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError:
        last = date(year, 12, 28).isocalendar()[1]  # 28 December is always in the year's last week
        raise ValueError(f"'{text}': {year} has weeks W01 to W{last:02d}; use one of those") from None
    return week_of(monday)


def week_of(day: date) -> ReviewPeriod:
    """The ISO week containing ``day``."""
    monday = day - timedelta(days=day.weekday())
    year, week, _ = monday.isocalendar()
    return ReviewPeriod(monday, monday + timedelta(days=6), f"{year:04d}-W{week:02d}")


def last_complete_week(today: date) -> ReviewPeriod:
    """The last ISO week that ended before ``today``."""
    return week_of(today - timedelta(days=today.weekday() + 1))


def quarter(text: str) -> ReviewPeriod:
    """``YYYY-Qn`` as its days (Q1 = January to March)."""
    match = _QUARTER.fullmatch(text.strip())
    if not match:
        raise ValueError(f"'{text}' is not a quarter; use YYYY-Qn with n from 1 to 4, e.g. 2026-Q4")
    year, number = int(match[1]), int(match[2])
    if year < 1:
        raise ValueError(f"'{text}': the year must be 0001 or later")
    return quarter_of(date(year, 3 * number - 2, 1))


def quarter_of(day: date) -> ReviewPeriod:
    """The calendar quarter containing ``day``."""
    number = (day.month - 1) // 3 + 1
    start = date(day.year, 3 * number - 2, 1)
    end = date(day.year, 12, 31) if number == 4 else date(day.year, 3 * number + 1, 1) - timedelta(days=1)
    return ReviewPeriod(start, end, f"{day.year:04d}-Q{number}")


def last_complete_quarter(today: date) -> ReviewPeriod:
    """The last calendar quarter that ended before ``today``."""
    return quarter_of(quarter_of(today).start - timedelta(days=1))
