"""Read-side SQL for Grafana: bound parameters turned into text Grafana's ClickHouse plugin runs.

The plugin binds no ``{name:Type}`` parameters. :func:`inline_parameters` replaces each one by a
SQL expression cast to its type: a Grafana macro or variable where the panel supplies the
value (the dashboard's time range, its filters), else the literal of a value fixed at
generation time (the policy's thresholds, floors and weights).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

_PLACEHOLDER = re.compile(r"\{(\w+):([^{}]+)\}")


class Expression(str):
    """SQL text used as it is for a parameter (a Grafana macro such as ``toDate($__fromTime)``)."""


def literal(value: Any) -> str:
    """``value`` as a ClickHouse SQL literal (strings quoted and escaped)."""
    if isinstance(value, Expression):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        # A bare 0.002021 is read as a Float64 before any CAST: keep money exact.
        return f"toDecimal128('{value:f}', {max(0, -int(value.as_tuple().exponent))})"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return f"toDateTime64('{value.strftime('%Y-%m-%d %H:%M:%S.%f')}', 6)"
    if isinstance(value, date):
        return f"toDate('{value.isoformat()}')"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        return "map(" + ", ".join(f"{literal(k)}, {literal(v)}" for k, v in value.items()) + ")"
    if isinstance(value, tuple):
        return "tuple(" + ", ".join(literal(item) for item in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    if value is None:
        return "NULL"
    raise TypeError(f"no SQL literal for a {type(value).__name__} parameter")


def inline_parameters(sql: str, parameters: Mapping[str, Any]) -> str:
    """``sql`` with every ``{name:Type}`` placeholder replaced by its value as a typed literal."""

    def replace(match: re.Match[str]) -> str:
        name, type_name = match.group(1), match.group(2).strip()
        if name not in parameters:
            raise KeyError(f"the rule uses the parameter {{{name}:{type_name}}}, which no setting provides")
        return f"CAST({literal(parameters[name])} AS {type_name})"

    return _PLACEHOLDER.sub(replace, sql)


def strip_comments(sql: str) -> str:
    """``sql`` without ``--`` comments, blank lines, trailing spaces or a final ``;``."""
    body = re.sub(r"--[^\n]*", "", sql).strip().rstrip(";")
    return "\n".join(line.rstrip() for line in body.splitlines() if line.strip())
