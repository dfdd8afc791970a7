"""Upcoming changes a review should see coming: model prices and strategic exceptions.

* **Re-priced models in use**: calls of the period were priced with a price version other than
  the one the catalog and policy price that model with today (a new ``genai-prices`` release, a
  contract change in the policy): cost from now on follows the new prices.
* **Scheduled price changes**: the catalog knows some prices in advance; a model in use whose
  unit prices differ on a day of the next :data:`HORIZON_DAYS` days from today's is listed with
  that day.
* **Strategic exceptions** that expire within :data:`HORIZON_DAYS` days of the review (or have
  expired): the feature's zone alerts come back then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable

from otel_margin.analysis.reviews.data import ModelInUse
from otel_margin.analysis.zones import StrategicException

HORIZON_DAYS = 90
"""How far ahead the review looks for scheduled prices and expiring exceptions."""


@dataclass(frozen=True, slots=True)
class Change:
    """One upcoming change: what, and the detail a reviewer acts on."""

    kind: str
    subject: str
    detail: str


def price_changes(models: Iterable[ModelInUse], catalog: Any, today: date) -> list[Change]:
    """Models in use re-priced since their calls, or with a catalog price scheduled to change."""
    versions: dict[tuple[str, str], set[str]] = {}
    for model in models:
        versions.setdefault((model.provider, model.model), set()).add(model.price_version)
    now = datetime.combine(today, time(12), timezone.utc)
    changes = []
    for (provider, model), used in sorted(versions.items()):
        current = catalog.lookup(provider, model, at=now)
        if current is None:
            continue  # unpriced: the unpriced count says so; nothing to compare
        older = sorted(version for version in used if version and version != current.version)
        if older:
            changes.append(Change("re-priced", f"{provider} {model}",
                                  f"calls were priced with {', '.join(older)}; today's prices are "
                                  f"{current.version} ({current.origin})"))
        scheduled = _scheduled(catalog, provider, model, current, now)
        if scheduled is not None:
            day, after = scheduled
            changes.append(Change("price change scheduled", f"{provider} {model}",
                                  f"from {day}: {_prices(after)} (today {_prices(current)}, {current.origin})"))
    return changes


def expiring_exceptions(exceptions: Iterable[StrategicException], today: date) -> list[Change]:
    """Exceptions whose review date is past or within :data:`HORIZON_DAYS` days of ``today``."""
    changes = []
    for entry in sorted(exceptions, key=lambda e: (e.review_date, e.feature)):
        if entry.review_date > today + timedelta(days=HORIZON_DAYS):
            continue
        state = "expired" if entry.expired(today) else "expires"
        changes.append(Change(f"exception {state}", entry.feature,
                              f"review date {entry.review_date} (owner {entry.owner}: {entry.reason}; "
                              f"{entry.where}): the feature's zone alerts apply again after it"))
    return changes


def _scheduled(catalog: Any, provider: str, model: str, current: Any, now: datetime) -> tuple[date, Any] | None:
    """The first day within the horizon whose prices differ from today's, and those prices."""
    for offset in range(1, HORIZON_DAYS + 1):
        later = catalog.lookup(provider, model, at=now + timedelta(days=offset))
        if later is not None and _unit_prices(later) != _unit_prices(current):
            return (now + timedelta(days=offset)).date(), later
    return None


def _unit_prices(price: Any) -> tuple[Any, ...]:
    return (price.input, price.output, price.cache_read, price.cache_write, price.request_usd)


def _prices(price: Any) -> str:
    parts = []
    for name in ("input", "output"):
        unit = getattr(price, name)
        if unit is not None:
            parts.append(f"{name} ${unit.base}/Mtok")
    return ", ".join(parts) or "no per-token price"
