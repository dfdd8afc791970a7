"""The policy file's vocabulary: how a table or key is declared, and how each value is checked.

:data:`otel_margin.policy.SCHEMA` is built from these: :class:`Key` (a scalar, with the function
that checks and converts it and an example for fix hints), :class:`Table`, :class:`TableMap`,
:class:`TableArray` and :class:`PluginTables`. A check raises :class:`_Invalid` with what was
expected; the policy's checker turns that into an error naming the file, line, key and value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping, Union
from urllib.parse import urlsplit


class _Invalid(Exception):
    """A value of the wrong type or range; the message says what was expected."""


Coerce = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Key:
    """One scalar key: how its value is checked/converted, and an example for fix hints."""

    coerce: Coerce
    example: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    """A table with a fixed set of keys; ``check`` validates rules across keys."""

    keys: Mapping[str, "Spec"]
    check: Callable[[dict[str, Any]], str | None] | None = None


@dataclass(frozen=True, slots=True)
class TableMap:
    """A table whose keys the user names (model ids, feature names); each value is ``value``."""

    value: "Spec"


@dataclass(frozen=True, slots=True)
class TableArray:
    """An array of tables (``[[prices.discounts]]``)."""

    table: Table


@dataclass(frozen=True, slots=True)
class PluginTables:
    """``[plugins.NAME]``: one table per plugin, its keys the plugin's own (it validates them in
    ``margin_configure``, naming lines through :meth:`Policy.where`)."""


Spec = Union[Key, Table, TableMap, TableArray, PluginTables]


def money(value: Any) -> Decimal:
    """A non-negative dollar amount: a string (``"0.30"``), an int, or a float via ``str()``."""
    if isinstance(value, bool):
        raise _Invalid('a money amount like "0.30"')
    if isinstance(value, float):
        # str() gives the shortest repr (0.3 -> "0.3"), not the binary expansion.
        value = str(value)
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise _Invalid('a money amount like "0.30"') from None
    else:
        raise _Invalid('a money amount like "0.30" (a string or a number)')
    # One range check for every spelling: -1 must fail exactly as "-1" and -0.5 do.
    if amount.is_finite() and amount >= 0:
        return amount
    raise _Invalid('a finite, non-negative money amount like "0.30"')


def percent(value: Any) -> Decimal:
    """A percentage strictly between 0 and 100."""
    try:
        amount = money(value)
    except _Invalid:
        raise _Invalid("a percentage between 0 and 100, like 15") from None
    if 0 < amount < 100:
        return amount
    raise _Invalid("a percentage strictly between 0 and 100, like 15")


def text(value: Any) -> str:
    """A non-empty string."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise _Invalid("a non-empty string")


def positive_int(value: Any) -> int:
    """An integer of at least 1."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise _Invalid("a whole number of at least 1")


def _number(value: Any, expected: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Invalid(expected)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Invalid(expected) from None
    if not number.is_finite():
        raise _Invalid(expected)
    return number


def floor_percent(value: Any) -> Decimal:
    """A margin floor: a percentage from 0 up to (not including) 100."""
    number = _number(value, "a margin percentage from 0 to 99, like 55")
    if 0 <= number < 100:
        return number
    raise _Invalid("a margin percentage from 0 to 99, like 55")


def band_points(value: Any) -> Decimal:
    """Percentage points above a floor: more than 0, at most 50."""
    number = _number(value, "percentage points above the floor, more than 0 and at most 50, like 5")
    if 0 < number <= 50:
        return number
    raise _Invalid("percentage points above the floor, more than 0 and at most 50, like 5")


def positive_number(value: Any) -> Decimal:
    """A number greater than 0."""
    number = _number(value, "a number greater than 0, like 0.8")
    if number > 0:
        return number
    raise _Invalid("a number greater than 0, like 0.8")


FEATURE_CATEGORIES = ("growth", "core", "premium")
"""The method's feature categories, each with its default margin floor (docs/alerts.md)."""


def feature_category(value: Any) -> str:
    """One of :data:`FEATURE_CATEGORIES`."""
    if isinstance(value, str) and value.strip().lower() in FEATURE_CATEGORIES:
        return value.strip().lower()
    raise _Invalid(f"one of {', '.join(FEATURE_CATEGORIES)}")


def calendar_date(value: Any) -> date:
    """A date: a TOML date (``2027-03-31``) or the same as a string."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _Invalid("a date like 2027-03-31")


def webhook_url(value: Any) -> str:
    """An ``http://`` or ``https://`` URL with a host (an alert webhook)."""
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if parts.scheme in ("http", "https") and parts.hostname:
            return value.strip()
    raise _Invalid('an http(s) URL like "https://hooks.slack.com/services/T000/B000/XXXX"')


def webhook_format(value: Any) -> str:
    """The body an alert webhook is sent: ``json`` (the alert's fields) or ``slack``."""
    if isinstance(value, str) and value.strip().lower() in ("json", "slack"):
        return value.strip().lower()
    raise _Invalid('"json" (the alert as a JSON object) or "slack" (a Slack-compatible message)')


def cooldown_hours(value: Any) -> Any:
    """Hours before a standing alert is sent again: a number, or a table of numbers by rule
    (``{ default = 24, margin_3d_red = 6 }``)."""
    expected = "hours greater than 0, like 24, or a table of them by rule: { default = 24, margin_3d_red = 6 }"
    if isinstance(value, dict):
        hours = {}
        for rule, item in value.items():
            try:
                hours[rule] = cooldown_hours(item)
            except _Invalid:
                raise _Invalid(f"{expected} ({rule} = {_show(item)} is not)") from None
            if isinstance(hours[rule], dict):
                raise _Invalid(f"{expected} ({rule} is a table)")
        return hours
    try:
        number = positive_number(value)
    except _Invalid:
        raise _Invalid(expected) from None
    return number


def value_weight(value: Any) -> Decimal:
    """A feature's stated value weight for revenue allocation: a number of at least 0 (``3``, ``"0.5"``)."""
    try:
        return money(value)
    except _Invalid:
        raise _Invalid("a weight of at least 0, like 3") from None


def share_percent(value: Any) -> Decimal:
    """A share of a price in percent, from 0 to 100 (the part of a seat that pays for AI)."""
    try:
        amount = money(value)
    except _Invalid:
        raise _Invalid("a percentage from 0 to 100, like 40") from None
    if amount <= 100:
        return amount
    raise _Invalid("a percentage from 0 to 100, like 40")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{...}"
    return repr(value)
