"""Grafana at parity: the dashboard and the alert rules as Grafana files, generated from the SQL.

``deploy/grafana/`` holds what this package generates; a team that runs Grafana sees the views of
``otel-margin dashboard`` and gets the alerts of ``otel-margin alerts run`` from the same SQL
files. Regenerate after changing a query, a rule or the default thresholds::

    python -m otel_margin.analysis.grafana deploy/grafana              # the shipped files
    python -m otel_margin.analysis.grafana deploy/grafana --policy otel-margin.toml   # your floors

(``tests/test_grafana.py`` fails while the shipped files differ from what this writes.)
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DASHBOARD_FILE = Path("dashboards", "margin.json")
ALERTS_FILE = Path("provisioning", "alerting", "margin-rules.yaml")


def generate(policy: Any = None) -> dict[Path, str]:
    """The generated files' text, by path under ``deploy/grafana``, for ``policy`` (default: none)."""
    from otel_margin.analysis.alerts.thresholds import parameters
    from otel_margin.analysis.grafana import alerts, dashboard
    from otel_margin.policy import Policy

    values = parameters(policy or Policy(), now=datetime.now(timezone.utc))
    return {
        DASHBOARD_FILE: json.dumps(dashboard.dashboard(values), indent=2) + "\n",
        ALERTS_FILE: alerts.render(alerts.builtin_rules(), values),
    }
