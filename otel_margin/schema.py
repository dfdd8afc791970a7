"""The margin schema: SQL files shipped as package data, rendered by one loader.

Every statement lives in ``otel_margin/sql/`` as one ``.sql`` file named
``<table>_<kind>.sql``. Files are templates only for identifiers and physical layout —
``$database``, ``$on_cluster``, ``$local``, ``${replicated}``, ``$ttl`` — and this module is
the one place that fills them in (identifiers always through :func:`quote_identifier`).
Values never go through here: queries bind them as ``{name:Type}`` parameters.

``cluster=None`` renders the single-node schema. ``cluster="NAME"`` renders the same files
``ON CLUSTER`` with ``Replicated*`` engines on ``<table>_local`` tables, plus a
``Distributed`` table under the plain name that readers and writers use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any, Sequence

DEFAULT_DATABASE = "otel_margin"
DEFAULT_TTL_DAYS = 180
"""Days raw ``llm_calls`` rows are kept when no TTL is given; rollups are kept forever."""

SCHEMA_FILES: tuple[str, ...] = (
    "otel_margin_database.sql",
    "llm_calls_table.sql",
    "llm_calls_units_alter.sql",
    "llm_calls_cache_cost_alter.sql",
    "llm_calls_request_hash_alter.sql",
    "llm_calls_hourly_table.sql",
    "llm_calls_daily_table.sql",
    "llm_calls_cost_daily_table.sql",
    "llm_calls_waterfall_daily_table.sql",
    "llm_calls_parts_daily_table.sql",
    "llm_calls_parts_daily_settings.sql",
    "llm_calls_parts_daily_projection.sql",
    "llm_calls_guardrails_daily_table.sql",
    "revenue_events_table.sql",
    "outcomes_table.sql",
    "cost_lines_table.sql",
    "period_costs_table.sql",
    "units_daily_table.sql",
    "llm_calls_hourly_mv.sql",
    "llm_calls_daily_mv.sql",
    "llm_calls_cost_daily_mv.sql",
    "llm_calls_waterfall_daily_mv.sql",
    "llm_calls_parts_daily_mv.sql",
    "llm_calls_guardrails_daily_mv.sql",
    "units_daily_calls_mv.sql",
    "units_daily_cost_lines_mv.sql",
    "margin_daily_view.sql",
    "units_view.sql",
    "period_costs_allocated_view.sql",
    "cost_drivers_view.sql",
)
"""Schema files in the order they are applied (tables before the views that read them)."""

COLLECTOR_FILES: tuple[str, ...] = (
    "collector/llm_calls_otel_traces_mv.sql",
    "collector/outcomes_otel_traces_mv.sql",
    "collector/cost_lines_otel_traces_mv.sql",
)
"""The fleet path: derives ``llm_calls`` rows from the OTel Collector's ``otel_traces``."""

SHARDING_KEYS: dict[str, str] = {
    # A customer's rows stay on one shard: per-customer margin and revenue FINAL stay local.
    "llm_calls": "cityHash64(customer)",
    "revenue_events": "cityHash64(customer)",
    # An outcome's versions stay on one shard, so FINAL replaces them.
    "outcomes": "cityHash64(unit_id)",
    "cost_lines": "cityHash64(customer)",
    "period_costs": "cityHash64(category)",
    # Rollups are filled by the MVs on each shard, never inserted through Distributed.
    "llm_calls_hourly": "rand()",
    "llm_calls_daily": "rand()",
    "llm_calls_cost_daily": "rand()",
    "llm_calls_waterfall_daily": "rand()",
    "llm_calls_parts_daily": "rand()",
    "llm_calls_guardrails_daily": "rand()",
    "units_daily": "rand()",
}
"""Cluster mode: the Distributed table's sharding key, per table file."""

ROLLUP_VIEWS: dict[str, tuple[str, ...]] = {
    "llm_calls_hourly": ("llm_calls_hourly_mv.sql",),
    "llm_calls_daily": ("llm_calls_daily_mv.sql",),
    "llm_calls_cost_daily": ("llm_calls_cost_daily_mv.sql",),
    "llm_calls_waterfall_daily": ("llm_calls_waterfall_daily_mv.sql",),
    "llm_calls_parts_daily": ("llm_calls_parts_daily_mv.sql",),
    "llm_calls_guardrails_daily": ("llm_calls_guardrails_daily_mv.sql",),
    "units_daily": ("units_daily_calls_mv.sql", "units_daily_cost_lines_mv.sql"),
}
"""Each rollup and the materialized views that fill it, from ``llm_calls`` (and ``cost_lines``)."""

_TABLE_FILE = re.compile(r"^(?P<table>[a-z_]+)_table\.sql$")
_ALTER_FILE = re.compile(r"^[a-z_]+_alter\.sql$")
"""An upgrade of a table made by an earlier release (``ADD COLUMN IF NOT EXISTS``: a no-op on a new one)."""


def quote_identifier(name: str) -> str:
    """``name`` as a back-quoted ClickHouse identifier; the one identifier escaper.

    Raises ``ValueError`` for an empty name or one containing a NUL byte, which no
    ClickHouse object can carry.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"identifier {name!r} is empty; give a database / table / cluster name")
    if "\x00" in name:
        raise ValueError(f"identifier {name!r} contains a NUL byte; remove it")
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def statements(
    *, database: str = DEFAULT_DATABASE, cluster: str | None = None, ttl_days: int | None = None
) -> list[str]:
    """Every DDL statement of the margin schema, rendered, in apply order.

    ``ttl_days`` bounds raw ``llm_calls`` rows (``None``: :data:`DEFAULT_TTL_DAYS`; ``0``:
    keep forever). With ``cluster``, tables become ``Replicated*`` ``<name>_local`` tables
    ``ON CLUSTER`` and each gets a ``Distributed`` table under its plain name.
    """
    values = _values(database=database, cluster=cluster, ttl_days=ttl_days)
    rendered: list[str] = []
    for name in SCHEMA_FILES:
        rendered.append(render(name, **values))
        table = _TABLE_FILE.match(name)
        if cluster is not None and table:
            rendered.append(_distributed(table["table"], values))
        if cluster is not None and _ALTER_FILE.match(name):
            rendered.append(render(name, **{**values, "local": ""}))  # the Distributed table's columns too
    return rendered


def collector_statements(
    *,
    database: str = DEFAULT_DATABASE,
    traces_database: str = "otel",
    traces_table: str = "otel_traces",
    cluster: str | None = None,
) -> list[str]:
    """The statements that turn the collector's ``otel_traces`` rows into ``llm_calls`` rows.

    Apply them after :func:`statements` and after the collector's table exists (the
    materialized view fires only on rows inserted after it is created).
    """
    values = _values(database=database, cluster=cluster, ttl_days=0)
    values["traces_database"] = quote_identifier(traces_database)
    values["traces_table"] = quote_identifier(traces_table)
    return [render(name, **values) for name in COLLECTOR_FILES]


def apply_schema(
    client: Any,
    *,
    database: str = DEFAULT_DATABASE,
    cluster: str | None = None,
    ttl_days: int | None = None,
) -> None:
    """Create every missing object of the schema on ``client`` (idempotent).

    Tables and materialized views are ``CREATE … IF NOT EXISTS``, so applying twice, or beside
    a running exporter, changes no stored data. The ``margin_daily`` view holds no data and is
    ``CREATE OR REPLACE``d, so its definition always matches the queries that read it. A table
    made by an earlier release gets the columns added since (``*_alter.sql``: ``ADD COLUMN IF NOT
    EXISTS``; rows stored before read the new column's default).
    ``client`` is a clickhouse-connect client.
    """
    for statement in statements(database=database, cluster=cluster, ttl_days=ttl_days):
        client.command(statement)


@dataclass(frozen=True, slots=True)
class Backfill:
    """How to fill a rollup with the rows stored before its materialized views existed."""

    views: tuple[str, ...]
    """The views that fill it (``system.tables`` names): the rows they never saw are older than them."""
    inserts: tuple[str, ...]
    """``INSERT INTO rollup (…) SELECT …``, one per view: its own SELECT over the rows whose timestamp
    is before the bound parameter ``{before:DateTime64(6, 'UTC')}``."""
    rows_before: str
    """``SELECT count()`` of the rollup's rows from before ``{before:…}``'s day (or hour): rows a
    backfill would count a second time."""


def backfill(rollup: str, columns: Sequence[str], *, database: str = DEFAULT_DATABASE) -> Backfill:
    """The statements that fill ``rollup`` (a key of :data:`ROLLUP_VIEWS`) with older rows, single node.

    Each view's ``AS SELECT`` is run again with ``WHERE <row>.timestamp < {before}`` before its
    ``GROUP BY``, and its output inserted by name into ``columns`` (the rollup's, as the view does:
    ``INSERT … SELECT`` alone would match them by position). Raises ``KeyError`` for a rollup that
    is not one.
    """
    files = ROLLUP_VIEWS[rollup]
    table = f"{quote_identifier(database)}.{quote_identifier(rollup)}"
    names = ", ".join(map(quote_identifier, columns))
    before = "{before:DateTime64(6, 'UTC')}"
    inserts, bucket = [], ""
    for name in files:
        select = view_select(name, database=database)
        row = re.search(r"\bFROM \S+ AS (\w+)\s", select)
        first = re.search(r"SELECT\s+(.+?) AS (\w+),", select, re.DOTALL)
        if row is None or first is None or "GROUP BY" not in select:
            raise ValueError(f"{name}: not an aggregating view over one aliased table")
        bucket = f"{first[2]} < {first[1].replace(f'{row[1]}.timestamp', before)}"
        select = select.replace("GROUP BY", f"WHERE {row[1]}.timestamp < {before}\nGROUP BY", 1)
        inserts.append(f"INSERT INTO {table} ({names})\nSELECT {names} FROM (\n{select}\n)")
    return Backfill(views=tuple(name.removesuffix(".sql") for name in files), inserts=tuple(inserts),
                    rows_before=f"SELECT count() FROM {table} WHERE {bucket}")


def view_select(file_name: str, *, database: str = DEFAULT_DATABASE) -> str:
    """The ``SELECT …`` of the materialized view in ``file_name`` (single node): what it inserts."""
    text = render(file_name, **_values(database=database, cluster=None, ttl_days=0))
    return text[text.index("AS SELECT") + len("AS "):]


def render(file_name: str, **values: str) -> str:
    """The SQL file ``file_name`` (relative to ``otel_margin/sql``) with ``values`` filled in.

    ``values`` must already be SQL text (quoted identifiers, clauses); a placeholder the
    file uses but ``values`` lacks raises ``KeyError``.
    """
    text = resources.files("otel_margin").joinpath("sql", *file_name.split("/")).read_text("utf-8")
    return Template(text).substitute(values).strip().rstrip(";")


# --- rendering -------------------------------------------------------------------------------


def _values(*, database: str, cluster: str | None, ttl_days: int | None) -> dict[str, str]:
    ttl = DEFAULT_TTL_DAYS if ttl_days is None else ttl_days
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
        raise ValueError(f"ttl_days {ttl_days!r} must be an integer >= 0 (0 keeps rows forever)")
    values = {
        "database": quote_identifier(database),
        "on_cluster": "",
        "local": "",
        "replicated": "",
        "ttl": f"TTL toDateTime(timestamp) + INTERVAL {ttl} DAY" if ttl else "",
    }
    if cluster is not None:
        values.update(
            on_cluster=f" ON CLUSTER {quote_identifier(cluster)}",
            cluster=quote_identifier(cluster),
            local="_local",
            replicated="Replicated",
        )
    return values


def _distributed(table: str, values: dict[str, str]) -> str:
    return render(
        "cluster/distributed_table.sql",
        **values,
        table=quote_identifier(table),
        local_table=quote_identifier(f"{table}_local"),
        sharding_key=SHARDING_KEYS[table],
    )
