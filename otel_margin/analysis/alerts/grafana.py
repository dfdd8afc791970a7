"""The alert rules as Grafana alert-rule provisioning, generated from the same SQL files.

A team that runs Grafana (``deploy/compose.yaml``) gets the alerts ``otel-margin alerts run``
evaluates, from the same SQL: each rule file becomes one Grafana-managed rule over the
ClickHouse data source. Grafana's ClickHouse plugin has no bound parameters, so each
``{name:Type}`` placeholder is replaced by the literal of its value, cast to its type (a
parameter named ``now`` becomes ``now()``, so the rule follows Grafana's clock); the policy's
thresholds are fixed at generation time. The price-change rule compares calls with the
current catalog, which only Python can read: in Grafana it has no current prices and stays
quiet (run ``otel-margin alerts run`` for it). Each breach row becomes one alert instance: the rule's
text columns are its labels, and the one number Grafana alerts on is ``1`` per breach row.

Regenerate the shipped file after changing a rule or the default thresholds::

    python -m otel_margin.analysis.alerts.grafana > deploy/grafana/provisioning/alerting/margin-rules.yaml

(``tests/test_grafana_alerts.py`` fails while the shipped file differs from this output.)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from otel_margin.schema import DEFAULT_DATABASE, quote_identifier

DATASOURCE_UID = "margin-clickhouse"
"""The ClickHouse data source ``deploy/grafana/provisioning/datasources/clickhouse.yaml`` provisions."""

FOLDER = "otel-margin"
GROUP = "margin-alerts"
INTERVAL = "5m"

_PLACEHOLDER = re.compile(r"\{(\w+):([^{}]+)\}")
_LABELS = ("rule", "severity", "feature", "customer", "trend", "driver")
_RESPONSE = {"red": "act within 24 h", "yellow": "investigate within 48 h"}


def literal(value: Any) -> str:
    """``value`` as a ClickHouse SQL literal (strings quoted and escaped)."""
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
        if name == "now":
            return f"CAST(now() AS {type_name})"
        if name not in parameters:
            raise KeyError(f"the rule uses the parameter {{{name}:{type_name}}}, which no setting provides")
        return f"CAST({literal(parameters[name])} AS {type_name})"

    return _PLACEHOLDER.sub(replace, sql)


def grafana_rule(name: str, sql: str, parameters: Mapping[str, Any], *, database: str = DEFAULT_DATABASE) -> dict[str, Any]:
    """One Grafana alert rule (provisioning format) for the rule file ``name`` holding ``sql``."""
    body = inline_parameters(sql.replace("$database", quote_identifier(database)), parameters)
    body = re.sub(r"--[^\n]*", "", body).strip().rstrip(";")
    body = "\n".join(line.rstrip() for line in body.splitlines() if line.strip())
    labels = ", ".join(f"toString({column}) AS {column}" for column in _LABELS)
    query = f"SELECT {labels}, toFloat64(1) AS breach\nFROM (\n{body}\n) AS breaches"
    return {
        "uid": f"otel-margin-{name}"[:40],
        "title": f"otel-margin: {name.replace('_', ' ')}",
        "condition": "B",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": 600, "to": 0},
                "datasourceUid": DATASOURCE_UID,
                "model": {"refId": "A", "rawSql": query, "format": 1, "queryType": "table", "editorType": "sql"},
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "B",
                    "type": "threshold",
                    "expression": "A",
                    "conditions": [{"evaluator": {"type": "gt", "params": [0]}}],
                },
            },
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": "0s",
        "annotations": {
            "summary": "{{ $labels.rule }}: {{ $labels.feature }} {{ $labels.customer }} ({{ $labels.severity }})",
            "description": "Primary cost driver: {{ $labels.driver }}; trend {{ $labels.trend }}. "
            f"Red: {_RESPONSE['red']}; yellow: {_RESPONSE['yellow']}.",
        },
        "labels": {"source": "otel-margin"},
    }


def provisioning(rules: Iterable[tuple[str, str]], parameters: Mapping[str, Any], *, database: str = DEFAULT_DATABASE) -> dict[str, Any]:
    """The provisioning document: one group holding a Grafana rule per ``(name, sql)``."""
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": GROUP,
                "folder": FOLDER,
                "interval": INTERVAL,
                "rules": [grafana_rule(name, sql, parameters, database=database) for name, sql in rules],
            }
        ],
    }


def builtin_rules() -> list[tuple[str, str]]:
    """``(name, sql)`` of every shipped rule file, by name."""
    from otel_margin.analysis.alerts import rules

    directory = Path(str(rules.BUILTIN_RULES_DIR))
    return [(path.stem, path.read_text("utf-8")) for path in sorted(directory.glob("*.sql"))]


def render(rules: Iterable[tuple[str, str]], parameters: Mapping[str, Any]) -> str:
    """The provisioning document as the YAML file Grafana reads."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None  # SQL stays readable: one line per line
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    header = "# Generated by `python -m otel_margin.analysis.alerts.grafana` from otel_margin/analysis/alerts/rules/*.sql; do not edit.\n"
    return header + yaml.dump(provisioning(rules, parameters), Dumper=Dumper, sort_keys=False, width=1000)


def main() -> int:
    from datetime import timezone

    from otel_margin.analysis.alerts.thresholds import parameters
    from otel_margin.policy import Policy

    sys.stdout.write(render(builtin_rules(), parameters(Policy(), now=datetime.now(timezone.utc))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
