"""The margin schema in the real engine (chDB): applies, is idempotent, deduplicates retries."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from importlib import resources

import pytest

from chdb_fixtures import LLM_CALLS_COLUMNS, call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin import schema
from otel_margin.cli import main

MOMENT = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)


def test_every_statement_applies_and_reapplying_changes_nothing(chdb_client, database):
    tables = lambda: chdb_client.query(  # noqa: E731
        "SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name", parameters={"db": database}
    ).result_rows
    before = tables()
    schema.apply_schema(chdb_client, database=database, ttl_days=0)
    assert tables() == before
    assert dict(before) == {
        "llm_calls": "MergeTree", "llm_calls_daily": "SummingMergeTree", "llm_calls_daily_mv": "MaterializedView",
        "llm_calls_hourly": "SummingMergeTree", "llm_calls_hourly_mv": "MaterializedView",
        "llm_calls_cost_daily": "AggregatingMergeTree", "llm_calls_cost_daily_mv": "MaterializedView",
        "margin_daily": "View", "revenue_events": "ReplacingMergeTree",
        "outcomes": "ReplacingMergeTree", "cost_lines": "MergeTree", "period_costs": "ReplacingMergeTree",
        "units": "View", "period_costs_allocated": "View", "cost_drivers": "View",
        "llm_calls_waterfall_daily": "SummingMergeTree", "llm_calls_waterfall_daily_mv": "MaterializedView",
        "llm_calls_parts_daily": "SummingMergeTree", "llm_calls_parts_daily_mv": "MaterializedView",
        "units_daily": "AggregatingMergeTree", "units_daily_calls_mv": "MaterializedView",
        "units_daily_cost_lines_mv": "MaterializedView",
        "llm_calls_guardrails_daily": "SummingMergeTree", "llm_calls_guardrails_daily_mv": "MaterializedView",
    }


def test_llm_calls_has_exactly_the_columns_the_exporter_writes(chdb_client, database):
    columns = chdb_client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'llm_calls' ORDER BY position",
        parameters={"db": database},
    ).result_rows
    normalise = lambda kind: kind.replace(" ", "")  # noqa: E731
    assert [(name, normalise(kind)) for name, kind in columns] == [(n, normalise(k)) for n, k in LLM_CALLS_COLUMNS]


def test_a_retried_batch_counts_once_in_raw_and_rollup_tables(chdb_client, database):
    batch = [call(timestamp=MOMENT, cost_usd=Decimal("0.25")), call(timestamp=MOMENT, cost_usd=None)]
    other = [call(timestamp=MOMENT, cost_usd=Decimal("1.00"))]
    insert_calls(chdb_client, database, batch, token="batch-1")
    insert_calls(chdb_client, database, other, token="batch-2")
    insert_calls(chdb_client, database, batch, token="batch-1")  # the retry after a lost acknowledgement
    db = schema.quote_identifier(database)
    assert chdb_client.query(f"SELECT count(), sum(cost_usd) FROM {db}.llm_calls").result_rows == [(3, Decimal("1.25"))]
    for rollup in ("llm_calls_daily", "llm_calls_hourly", "llm_calls_cost_daily"):
        assert chdb_client.query(
            f"SELECT sum(calls), sum(unpriced_calls), sum(cost_usd) FROM {db}.{rollup}"
        ).result_rows == [(3, 1, Decimal("1.25"))], rollup
    assert chdb_client.query(f"SELECT sum(calls), sum(inference_usd) FROM {db}.units_daily").result_rows == [
        (3, Decimal("1.25"))]


def test_rollups_keep_unpriced_calls_countable_per_group(chdb_client, database):
    rows = [call(timestamp=MOMENT, feature=f, cost_usd=c) for f, c in
            (("a", None), ("a", None), ("a", Decimal("0.5")), ("b", Decimal("0")), ("b", None))]
    insert_calls(chdb_client, database, rows)
    db = schema.quote_identifier(database)
    for rollup in ("llm_calls_daily", "llm_calls_hourly", "llm_calls_cost_daily"):
        assert chdb_client.query(
            f"SELECT feature, sum(calls), sum(priced_calls), sum(unpriced_calls) FROM {db}.{rollup} GROUP BY feature ORDER BY feature"
        ).result_rows == [("a", 3, 1, 2), ("b", 2, 1, 1)], rollup


def test_ttl_is_configurable_and_zero_means_none(chdb_client, database):
    ddl = lambda ttl: schema.statements(database=database, ttl_days=ttl)[1]  # noqa: E731
    assert "INTERVAL 30 DAY" in ddl(30) and "TTL" not in ddl(0).split("ENGINE")[1]
    assert f"INTERVAL {schema.DEFAULT_TTL_DAYS} DAY" in ddl(None)
    with pytest.raises(ValueError, match="ttl_days -1"):
        schema.statements(ttl_days=-1)


def test_identifiers_are_escaped_by_one_helper(chdb_client):
    name = "odd`name\\x"
    assert schema.quote_identifier(name) == "`odd\\`name\\\\x`"
    schema.apply_schema(chdb_client, database=name, ttl_days=7)
    try:
        assert chdb_client.query("SELECT count() FROM system.tables WHERE database = {db:String}",
                                 parameters={"db": name}).result_rows == [(24,)]
    finally:
        chdb_client.command(f"DROP DATABASE {schema.quote_identifier(name)}")
    for bad in ("", "a\x00b"):
        with pytest.raises(ValueError):
            schema.quote_identifier(bad)


def test_cluster_variant_is_generated_from_the_same_files_and_parses(chdb_client):
    statements = schema.statements(database="margin", cluster="prod", ttl_days=90)
    alters = [name for name in schema.SCHEMA_FILES if name.endswith("_alter.sql")]  # local and Distributed
    assert len(statements) == len(schema.SCHEMA_FILES) + len(schema.SHARDING_KEYS) + len(alters)
    for statement in statements:
        assert "ON CLUSTER `prod`" in statement
        # The engine's own parser: formatQuery rejects anything that is not valid SQL.
        chdb_client.query("SELECT formatQuery({sql:String})", parameters={"sql": statement})
    text = "\n".join(statements)
    assert "ENGINE = MergeTree" not in text and "ReplicatedAggregatingMergeTree" in text
    for table, key in schema.SHARDING_KEYS.items():
        assert f"Distributed(`prod`, `margin`, `{table}_local`, {key})" in text
    assert "FROM `margin`.llm_calls_local AS call" in text  # the MVs read the shard-local table


def test_every_sql_file_is_one_statement_and_is_used():
    root = resources.files("otel_margin").joinpath("sql")
    files = {str(p.relative_to(str(root))) for p in __import__("pathlib").Path(str(root)).rglob("*.sql")}
    used = set(schema.SCHEMA_FILES) | set(schema.COLLECTOR_FILES) | {"cluster/distributed_table.sql"}
    assert files == used
    for name in files:
        text = root.joinpath(*name.split("/")).read_text()
        body = re.sub(r"--[^\n]*", "", text).strip().rstrip(";")
        assert ";" not in body, name
        assert re.match(r"^[a-z_]+_(table|alter|settings|projection|mv|view|database|query)\.sql$", name.split("/")[-1]), name


def test_schema_print_cli_prints_a_runnable_script(capsys):
    assert main(["schema", "print", "--cluster", "prod", "--database", "m", "--collector"]) == 0
    out = capsys.readouterr().out
    alters = [name for name in schema.SCHEMA_FILES if name.endswith("_alter.sql")]  # local and Distributed
    assert out.count(";\n") == (len(schema.SCHEMA_FILES) + len(schema.SHARDING_KEYS) + len(alters)
                                 + len(schema.COLLECTOR_FILES))
    assert "CREATE DATABASE IF NOT EXISTS `m` ON CLUSTER `prod`;" in out


@pytest.mark.parametrize("rollup", sorted(schema.ROLLUP_VIEWS))
def test_backfill_fills_a_rollup_made_after_the_rows_as_its_views_would_have(
    chdb_client, chdb_path, database, monkeypatch, capsys, rollup
):
    db = schema.quote_identifier(database)
    insert_calls(chdb_client, database, [
        call(timestamp=MOMENT + timedelta(minutes=n), feature=("search", "chat")[n % 2], customer=f"c{n % 3}",
             cost_usd=Decimal(n) / 8 if n % 4 else None, unit_id=f"U-{n // 2}" if n % 5 else "",
             unit_kind="ticket" if n % 5 else "", cache_result=("off", "exact", "miss")[n % 3],
             saved_usd=Decimal(n) / 16) for n in range(12)])
    chdb_client.command(f"""INSERT INTO {db}.cost_lines (timestamp, span_id, unit_id, unit_kind, feature, category, amount_usd)
        VALUES ('2024-05-01 12:30:00', 's1', 'U-1', 'ticket', 'chat', 'support', 1.5),
               ('2024-05-02 08:00:00', 's2', 's2', '', 'search', 'orchestration', 0.25)""")
    kinds = chdb_client.query("SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
                              parameters={"db": database, "t": rollup}).result_rows
    values = ", ".join(f"finalizeAggregation({n})" if k.startswith("AggregateFunction") else n for n, k in kinds)
    snapshot = lambda: sorted(chdb_client.query(  # noqa: E731 - every row of the rollup, merged by its key
        f"SELECT {values} FROM {db}.{schema.quote_identifier(rollup)} FINAL").result_rows, key=repr)
    as_the_views_made_it = snapshot()
    assert as_the_views_made_it
    chdb_client.command(f"TRUNCATE TABLE {db}.{schema.quote_identifier(rollup)}")  # as if made after the rows
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")

    assert main(["schema", "backfill", rollup, "--database", database]) == 0
    assert f"filled {rollup} with the rows stored before" in capsys.readouterr().out
    assert snapshot() == as_the_views_made_it

    # Again: every row would count twice, so it refuses and says why.
    assert main(["schema", "backfill", rollup, "--database", database]) == 1
    assert "filling it again would count them twice" in capsys.readouterr().err
    assert snapshot() == as_the_views_made_it


def test_backfill_names_a_bad_time_and_a_missing_rollup(chdb_path, database, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        main(["schema", "backfill", "units_daily", "--before", "yesterday"])
    assert "'yesterday' is not a time; give ISO 8601" in capsys.readouterr().err
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    assert main(["schema", "backfill", "units_daily", "--database", "nowhere"]) == 1
    assert "run `otel-margin schema apply` first" in capsys.readouterr().err


def test_schema_apply_names_each_rollup_it_added_to_a_database_that_held_calls(
    chdb_client, chdb_path, database, monkeypatch, capsys
):
    db = schema.quote_identifier(database)
    for view in schema.ROLLUP_VIEWS["units_daily"]:
        chdb_client.command(f"DROP VIEW {db}.{view.removesuffix('.sql')}")
    chdb_client.command(f"DROP TABLE {db}.units_daily")  # a database made before units_daily
    insert_calls(chdb_client, database, [call(timestamp=MOMENT, unit_id="U-1", unit_kind="ticket")])
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")

    assert main(["schema", "apply", "--database", database]) == 0
    out = capsys.readouterr().out
    assert "units_daily is new: it holds none of the 1 call stored before it" in out
    assert "`otel-margin schema backfill units_daily`" in out and "llm_calls_daily is new" not in out
    assert main(["schema", "backfill", "units_daily", "--database", database]) == 0
    assert chdb_client.query(f"SELECT unit_id, calls FROM {db}.units_daily").result_rows == [("U-1", 1)]

    assert main(["schema", "apply", "--database", "brand_new"]) == 0  # nothing older to fill: no hint
    assert "is new" not in capsys.readouterr().out
    chdb_client.command("DROP DATABASE brand_new")
