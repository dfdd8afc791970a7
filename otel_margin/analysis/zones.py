"""Margin floors and zones: green, yellow or red for every margin the views show.

Each feature has a **floor** (the lowest gross margin % it may run at) and a **yellow band**
above it. A margin below the floor is *red*; from the floor up to (not including) floor + band
it is *yellow*; from floor + band up it is *green*. The floor comes from the policy file:
``[features.NAME] floor_pct``, else the default floor of the feature's ``category`` (the
method's ranges: growth 40-50 %, core 55-65 %, premium 65-75 %; the defaults are the lower
bounds, changeable in ``[zones]``), else that of ``[zones] default_category`` (``core``).

A **strategic exception** (``[[exceptions]]``: feature, owner, reason, review date) lets a
feature run below its floor on purpose until its review date; the zone is still computed and
shown with the exception beside it, and the zone alerts leave the feature alone. An exception
past its review date no longer covers the feature and is itself an alert
(``rules/expired_exception.sql``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Iterable, Literal, Mapping

from otel_margin.policy import Policy

Zone = Literal["green", "yellow", "red"]

CATEGORY_FLOORS: Mapping[str, Decimal] = {"growth": Decimal(40), "core": Decimal(55), "premium": Decimal(65)}
"""Default floor (margin %) of each feature category: the lower bound of the method's range."""
DEFAULT_CATEGORY = "core"
DEFAULT_BAND_PTS = Decimal(5)
"""Yellow band above the floor, in percentage points (the method says 5-10)."""


def zone(margin_pct: Decimal | float | int, floor: Decimal | float | int, band: Decimal | float | int) -> Zone:
    """``red`` below ``floor``, ``yellow`` below ``floor + band``, else ``green``."""
    if margin_pct < floor:
        return "red"
    if margin_pct - floor < band:  # not floor + band: a tiny band must not round away
        return "yellow"
    return "green"


@dataclass(frozen=True, slots=True)
class StrategicException:
    """A feature allowed below its floor until ``review_date`` (``[[exceptions]]``)."""

    feature: str
    owner: str
    reason: str
    review_date: date
    where: str
    """``otel-margin.toml [[exceptions]] entry 2``: where the entry is, for messages."""

    def expired(self, today: date) -> bool:
        """Past its review date: it no longer covers the feature."""
        return self.review_date < today


@dataclass(frozen=True, slots=True)
class Floor:
    """The floor, band and category of one feature, and where they come from."""

    feature: str
    floor_pct: Decimal
    band_pts: Decimal
    category: str
    source: str
    """``otel-margin.toml line 12`` for a floor written for the feature, else ``category core``."""


@dataclass(frozen=True, slots=True)
class ZonedRow:
    """A margin row with its zone: ``row`` is the row as the margin API returned it."""

    row: Any
    zone: Zone | None
    """``None`` without revenue (no margin %, so no zone)."""
    floor: Floor
    exception: StrategicException | None
    """The unexpired exception covering the feature, if any."""


class Floors:
    """The floors, bands and exceptions of a policy file, looked up per feature."""

    def __init__(self, policy: Policy) -> None:
        document = policy.document
        zones = document.get("zones", {})
        self._policy = policy
        self.category_floors = {
            name: zones.get(f"{name}_floor_pct", default) for name, default in CATEGORY_FLOORS.items()
        }
        self.default_category: str = zones.get("default_category", DEFAULT_CATEGORY)
        self.default_band: Decimal = zones.get("yellow_band_pts", DEFAULT_BAND_PTS)
        self._features: Mapping[str, Mapping[str, Any]] = document.get("features", {})
        self.exceptions: tuple[StrategicException, ...] = tuple(
            StrategicException(entry["feature"], entry["owner"], entry["reason"], entry["review_date"],
                               f"{policy.display_name} [[exceptions]] entry {index + 1}")
            for index, entry in enumerate(document.get("exceptions", []))
        )

    def floor(self, feature: str) -> Floor:
        """The floor of ``feature`` (a feature not in the policy gets the default category's)."""
        settings = self._features.get(feature, {})
        category = settings.get("category", self.default_category)
        band = settings.get("yellow_band_pts", self.default_band)
        if "floor_pct" in settings:
            return Floor(feature, settings["floor_pct"], band, category,
                         self._policy.where("features", feature, "floor_pct"))
        return Floor(feature, self.category_floors[category], band, category, f"category {category}")

    def default_floor(self) -> Floor:
        """The floor of the default category: for totals, tiers and customers across features."""
        category = self.default_category
        return Floor("", self.category_floors[category], self.default_band, category, f"category {category}")

    def exception(self, feature: str, today: date) -> StrategicException | None:
        """The unexpired exception covering ``feature`` on ``today``, if any."""
        for entry in self.exceptions:
            if entry.feature == feature and not entry.expired(today):
                return entry
        return None

    def features(self) -> list[str]:
        """The features the policy file names (``[features.NAME]``), in file order."""
        return list(self._features)


def zoned(
    rows: Iterable[Any], policy: Policy, *, today: date, level: str = "feature", feature: str | None = None
) -> list[ZonedRow]:
    """Each margin row with its zone, floor and exception.

    ``rows`` are rows of :func:`otel_margin.analysis.margin.margin_by` at ``level`` (or any
    rows with ``key`` and ``margin_pct``). At level ``feature`` each row is zoned by its own
    feature's floor; at any other level by ``feature``'s (the one feature the rows were
    restricted to) or, without one, by the default category's floor.
    """
    floors = Floors(policy)
    result = []
    for row in rows:
        name = row.key if level == "feature" else feature
        floor = floors.floor(name) if name is not None else floors.default_floor()
        pct = row.margin_pct
        result.append(ZonedRow(
            row=row,
            zone=None if pct is None else zone(pct, floor.floor_pct, floor.band_pts),
            floor=floor,
            exception=floors.exception(name, today) if name is not None else None,
        ))
    return result


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    """The zone of one margin row, as the report shows it (terminal and JSON)."""

    key: str
    zone: Zone | None
    floor_pct: Decimal
    band_pts: Decimal
    category: str
    floor_source: str
    exception_owner: str | None = None
    exception_reason: str | None = None
    exception_review_date: date | None = None


REPORT_LEVELS: Mapping[str, str] = {"total": "all", "features": "feature", "tiers": "tier",
                                    "negative_customers": "customer"}
"""The report's margin sections and the level their rows are at."""


def report_zones(
    sections: Mapping[str, Iterable[Any]], policy: Policy, *, today: date, feature: str | None = None
) -> dict[str, list[ZoneInfo]]:
    """The zone of every row of the report's margin sections (:data:`REPORT_LEVELS`), by section.

    ``feature`` is the report's ``--feature``: with it, every section is that feature's rows
    and is zoned by its floor.
    """
    result = {}
    for section, level in REPORT_LEVELS.items():
        rows = zoned(sections.get(section, ()), policy, today=today, level=level, feature=feature)
        result[section] = [
            ZoneInfo(
                key=item.row.key, zone=item.zone, floor_pct=item.floor.floor_pct, band_pts=item.floor.band_pts,
                category=item.floor.category, floor_source=item.floor.source,
                exception_owner=item.exception.owner if item.exception else None,
                exception_reason=item.exception.reason if item.exception else None,
                exception_review_date=item.exception.review_date if item.exception else None,
            )
            for item in rows
        ]
    return result
