"""Evaluating alert rules: run each rule file, check what it returns, collect the breaches.

Each rule runs on its own; a rule that fails (bad SQL, a parameter nobody provides, missing or
mistyped columns, a severity that is not one of :data:`~.rules.SEVERITIES`) is a
:class:`~.rules.RuleFailure` naming the file and the fix, and the other rules still run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping
from uuid import UUID

from otel_margin.analysis.alerts.rules import COLUMNS, COLUMNS_TEXT, SEVERITIES, Rule, RuleFailure
from otel_margin.schema import DEFAULT_DATABASE

_TEXT_TYPES = ("String", "FixedString", "Enum8", "Enum16", "UUID")
_NUMBER_TYPES = ("Int", "UInt", "Float", "Decimal")
_MESSAGE_LIMIT = 400
"""Characters of a ClickHouse error kept in a rule's failure (its first line, at most this)."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One breach a rule returned: the rule's columns, its extra columns as ``details``."""

    rule: str
    severity: str
    feature: str
    customer: str
    value: float
    threshold: float
    trend: str
    driver: str
    source: str
    """The rule file's name (its stem): which file fired, for the history and messages."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """The rule's extra columns, as JSON-ready values (Decimals and dates as text)."""

    @property
    def key(self) -> tuple[str, str, str]:
        """What deduplication and the cooldown go by: the same rule, feature and customer."""
        return (self.rule, self.feature, self.customer)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one evaluation of the rules found."""

    alerts: tuple[Alert, ...]
    failures: tuple[RuleFailure, ...]
    ran: frozenset[str]
    """Names of the rule files that ran (their breaches, or none, are known)."""


class RuleError(Exception):
    """A rule that cannot be run or returned what no alert can be made of; the message says why."""


def evaluate(
    client: Any, rules: Iterable[Rule], parameters: Mapping[str, Any], *, database: str = DEFAULT_DATABASE,
    failures: Iterable[RuleFailure] = (),
) -> Evaluation:
    """Run every rule on ``client`` (a clickhouse-connect client); ``failures`` are carried into the result.

    Each rule is given the ``parameters`` it names and no others. A rule that fails is reported
    (:attr:`Evaluation.failures`) and the others run. Breaches come back in rule order, a
    rule's rows in the order it returned them; a rule returning the same rule, feature and
    customer twice keeps the first row.
    """
    alerts: list[Alert] = []
    failed = list(failures)
    ran: set[str] = set()
    seen: set[tuple[str, str, str]] = set()
    for rule in rules:
        try:
            found = run_rule(client, rule, parameters, database=database)
        except RuleError as error:
            failed.append(RuleFailure(rule.name, rule.label, str(error)))
            continue
        ran.add(rule.name)
        for alert in found:
            if alert.key not in seen:
                seen.add(alert.key)
                alerts.append(alert)
    return Evaluation(tuple(alerts), tuple(failed), frozenset(ran))


def run_rule(client: Any, rule: Rule, parameters: Mapping[str, Any], *, database: str = DEFAULT_DATABASE) -> list[Alert]:
    """The breaches ``rule`` returns; raises :class:`RuleError` naming the file and the fix."""
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    unknown = [name for name in rule.parameters if name not in parameters]
    if unknown:
        known = ", ".join(sorted(parameters)) or "none"
        raise RuleError(
            f"{rule.label}: unknown parameter {{{unknown[0]}:…}}; a rule may use only the parameters the policy's "
            f"thresholds provide ({known}): rename it to one of them, or write the value into the SQL"
        )
    sql, bound = rule.render(database=database), {name: parameters[name] for name in rule.parameters}
    try:
        result = client.query(sql, parameters=bound)
        names, types = list(result.column_names), [t.name for t in result.column_types]
        if not names:
            # chDB reports no columns for an empty result: ask for them, so a rule is checked before it fires.
            described = client.query(f"DESCRIBE ({sql})", parameters=bound).result_rows
            names, types = [row[0] for row in described], [row[1] for row in described]
    except OperationalError:
        raise  # the store, not the rule: the whole evaluation stops
    except DatabaseError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuleError(
            f"{rule.label}: ClickHouse cannot run it: {detail[:_MESSAGE_LIMIT]}; fix the SQL: one SELECT returning "
            f"{COLUMNS_TEXT}"
        ) from error
    return _alerts(rule, names, types, result.result_rows)


def _alerts(rule: Rule, names: list[str], types: list[str], rows: list[tuple]) -> list[Alert]:
    where = {name: index for index, name in enumerate(names)}
    for name, type_name in COLUMNS:
        if name not in where:
            raise RuleError(
                f"{rule.label}: missing column '{name}'; every rule returns {COLUMNS_TEXT} "
                f"(name it: ... AS {name}; other columns are kept as details)"
            )
        base = _base_type(types[where[name]])
        wanted = _NUMBER_TYPES if type_name == "Float64" else _TEXT_TYPES
        if not base.startswith(wanted):
            cast = "toFloat64" if type_name == "Float64" else "toString"
            raise RuleError(
                f"{rule.label}: column '{name}' is {types[where[name]]}; every rule returns {name} {type_name} "
                f"(write {cast}(...) AS {name})"
            )
    extra = [name for name in names if name not in dict(COLUMNS)]
    alerts = []
    for number, row in enumerate(rows, start=1):
        values = {name: row[where[name]] for name, _ in COLUMNS}
        severity = _text(values["severity"])
        if severity not in SEVERITIES:
            raise RuleError(
                f"{rule.label}: row {number} has severity {severity!r}; severity is one of "
                f"{', '.join(repr(s) for s in SEVERITIES)}"
            )
        alerts.append(Alert(
            rule=_text(values["rule"]), severity=severity, feature=_text(values["feature"]),
            customer=_text(values["customer"]),
            value=_number(rule, number, "value", values["value"]),
            threshold=_number(rule, number, "threshold", values["threshold"]),
            trend=_text(values["trend"]), driver=_text(values["driver"]), source=rule.name,
            details={name: plain(row[where[name]]) for name in extra},
        ))
    return alerts


def _base_type(type_name: str) -> str:
    for wrapper in ("Nullable(", "LowCardinality("):
        while type_name.startswith(wrapper):
            type_name = type_name[len(wrapper):-1]
    return type_name


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _number(rule: Rule, row: int, column: str, value: Any) -> float:
    if value is None:
        raise RuleError(f"{rule.label}: row {row} has {column} NULL; return a number (ifNull({column}, 0))")
    number = float(value)
    if not math.isfinite(number):
        raise RuleError(
            f"{rule.label}: row {row} has {column} {number}; return a finite number (a ratio over zero revenue "
            "is not one: filter those rows out or use nullIf and ifNull)"
        )
    return number


def plain(value: Any) -> Any:
    """``value`` as JSON can carry it: Decimals as exact text, dates as ISO text, other types as their text."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # an IPv4 address, an enum, …: its text
