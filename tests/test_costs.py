"""Every cost of goods (issue 15 item 3): cost lines recorded in units, and period costs imported and allocated.

Real SDK calls (chat and embeddings) to the stand-in, cost-line spans through the real exporter
into chDB, read back through the ``units`` view; the collector path; ``otel-margin costs
import`` into real chDB, with hypothesis property tests that allocated totals add up exactly
to what was imported and that a file with a bad row imports nothing.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import clickhouse_connect
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_margin import attribute, record_cost, schema, unit
from otel_margin import attributes as a
from otel_margin.cli import main
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.analysis.period_costs import CostFileError, import_period_costs, parse_costs_csv
from otel_margin.standin import openai_client

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from test_collector import write_spans, traces  # noqa: F401 - fixture

MESSAGES = [{"role": "user", "content": "Summarise the contract."}]
UNITS = ("SELECT unit_id, calls, inference_usd, orchestration_usd, infrastructure_usd, support_usd, cost_usd "
         "FROM {db}.units(start = '2000-01-01', end = '2100-01-01', grace_minutes = 0) ORDER BY unit_id")
ALLOCATED = ("SELECT {cols} FROM {db}.period_costs_allocated(allocate_by = {by}, start = '2026-12-01', "
             "end = '2026-12-31')")
GOOD = """period,amount,category,feature,customer,tier
2026-12,2800.00,infrastructure,dev-tools,,
2026-12-01..2026-12-15,120.50,support,,acme,
2026-12,0.333333333333,orchestration,,,
"""


@pytest.fixture
def _instrumented(instrumented: Any) -> None:
    """Both instrumentors on for the test."""


def test_cost_lines_and_embedding_calls_land_in_their_categories_exactly(standin_server, _instrumented, sink, tmp_path):
    client = openai_client(standin_server)
    with attribute(feature="contracts", customer="acme", tier="pro"), unit("document", id="D-1"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.embeddings.create(model="text-embedding-3-small", input="clause 7")
        record_cost("0.0004", "orchestration", description="vector search")
        record_cost(Decimal("1.50"), "support", description="human review")
        record_cost("0.000000000001", "infrastructure")
    record_cost("0.25", "support")  # outside any unit: its own unit
    spans = sink.spans()
    calls = {s.attributes[a.GEN_AI_OPERATION_NAME]: Decimal(s.attributes[a.MARGIN_COST_USD])
             for s in spans if a.GEN_AI_OPERATION_NAME in (s.attributes or {})}
    assert set(calls) == {"chat", "embeddings"} and all(cost > 0 for cost in calls.values())

    path = str(tmp_path / "chdb")
    exporter = ClickHouseSpanExporter(endpoint=f"chdb://{path}", spool_dir=str(tmp_path / "spool"), drain_interval=0.1)
    exporter.export(spans)
    exporter.shutdown()
    reader = clickhouse_connect.get_client(interface="chdb", path=path)
    try:
        lines = reader.query("SELECT unit_id, unit_kind, feature, customer, tier, category, amount_usd, description, "
                             "span_id FROM otel_margin.cost_lines ORDER BY amount_usd").result_rows
        units = reader.query(UNITS.format(db="otel_margin")).result_rows
        assert reader.query("SELECT count() FROM otel_margin.llm_calls").result_rows == [(2,)]  # lines are not calls
    finally:
        reader.close()
    alone = lines.pop(2)  # 0.25, recorded outside any unit
    assert [line[:8] for line in lines] == [
        ("D-1", "document", "contracts", "acme", "pro", "infrastructure", Decimal("0.000000000001"), ""),
        ("D-1", "document", "contracts", "acme", "pro", "orchestration", Decimal("0.0004"), "vector search"),
        ("D-1", "document", "contracts", "acme", "pro", "support", Decimal("1.50"), "human review"),
    ]
    assert (alone[0], alone[2], alone[5], alone[6]) == (alone[8], "unattributed", "support", Decimal("0.25"))
    document = next(row for row in units if row[0] == "D-1")
    assert document[1:6] == (2, calls["chat"], calls["embeddings"] + Decimal("0.0004"), Decimal("0.000000000001"),
                             Decimal("1.50"))
    assert document[6] == calls["chat"] + calls["embeddings"] + Decimal("0.0004") + Decimal("1.500000000001")


@pytest.mark.parametrize(("args", "message"), [
    (("-1", "support"), "at least 0"), (("ten", "support"), "not a decimal amount"),
    (("1", "hosting"), "use one of inference, orchestration, infrastructure, support"),
    (("NaN", "support"), "not a decimal amount"),
])
def test_record_cost_refuses_what_it_cannot_store_at_the_line_that_passed_it(args, message):
    with pytest.raises(ValueError, match=r"record_cost\(") as raised:
        record_cost(*args)
    assert message in str(raised.value)


def test_the_collector_view_turns_a_cost_line_span_into_a_row(chdb_client, database, traces):
    write_spans(chdb_client, traces, [("margin.cost_line support", {
        "margin.unit.id": "T-1", "margin.unit.kind": "ticket", "margin.feature": "support",
        "margin.cost_line.category": "support", "margin.cost_line.usd": "1.500000000001",
        "margin.cost_line.description": "review"}, "Unset")])
    db = schema.quote_identifier(database)
    assert chdb_client.query(f"SELECT unit_id, feature, category, amount_usd, description FROM {db}.cost_lines"
                             ).result_rows == [("T-1", "support", "support", Decimal("1.500000000001"), "review")]
    assert chdb_client.query(f"SELECT count() FROM {db}.llm_calls").result_rows == [(0,)]


# --- period costs ------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "message"), [
    ("2026-13,1.00,support,,,", "period '2026-13' is not a month or a day range; use 2024-05 or 2024-05-01..2024-05-31"),
    ("2026-12,abc,support,,,", "amount 'abc' is not a number; use a decimal like 99.00"),
    ("2026-12,1.00,hosting,,,", "category 'hosting' is not a cost category; use one of inference, orchestration, "
                                "infrastructure, support"),
    ("2026-12,1.00,support,,", "has 5 fields, the header has 6; quote values that contain commas"),
    ("2026-12,2800.00,infrastructure,dev-tools,,", "is already on line 2"),
])
def test_a_bad_row_is_an_error_naming_its_line_value_and_fix(line, message):
    with pytest.raises(CostFileError) as raised:
        parse_costs_csv(GOOD + line + "\n", source="costs.csv")
    assert raised.value.errors == [f"costs.csv line 5: {message}"] or message in raised.value.errors[0]
    assert raised.value.errors[0].startswith("costs.csv line 5: ")


def test_cli_import_is_all_or_nothing_and_idempotent(chdb_client, chdb_path, database, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    db = schema.quote_identifier(database)
    count = lambda: chdb_client.query(f"SELECT count() FROM {db}.period_costs FINAL").result_rows[0][0]  # noqa: E731
    bad = tmp_path / "costs.csv"
    bad.write_text(GOOD + "2026-12,abc,support,,,\n")
    assert main(["costs", "import", str(bad), "--database", database]) == 1
    assert "costs.csv line 5: amount 'abc' is not a number; use a decimal like 99.00" in capsys.readouterr().err
    assert count() == 0
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    assert main(["costs", "import", str(good), "--database", database]) == 0
    assert main(["costs", "import", str(good), "--database", database]) == 0
    assert "0 new, 0 changed, 3 unchanged" in capsys.readouterr().out
    good.write_text(GOOD.replace("2800.00", "2900.00"))
    assert main(["costs", "import", str(good), "--database", database]) == 0
    assert "0 new, 1 changed, 2 unchanged" in capsys.readouterr().out
    assert count() == 3
    assert chdb_client.query(f"SELECT sum(amount_usd) FROM {db}.period_costs FINAL").result_rows == [
        (Decimal("3020.833333333333"),)]


def test_gpu_hosting_is_split_60_40_by_share_of_calls(chdb_client, database):
    moment = datetime(2026, 12, 10, 12, tzinfo=timezone.utc)
    insert_calls(chdb_client, database, [call(timestamp=moment, feature="dev-tools", customer="a", tier="pro")] * 3
                 + [call(timestamp=moment, feature="dev-tools", customer="b", tier="pro")] * 2
                 + [call(timestamp=moment, feature="chat", customer="a", tier="pro")])
    import_period_costs(chdb_client, parse_costs_csv(GOOD), source="c.csv", database=database)
    db = schema.quote_identifier(database)
    rows = chdb_client.query(ALLOCATED.format(cols="category, customer, feature, amount_usd", db=db, by="'calls'")
                             + " ORDER BY category, customer, feature").result_rows
    assert rows == [
        ("infrastructure", "a", "dev-tools", Decimal("1680")), ("infrastructure", "b", "dev-tools", Decimal("1120")),
        ("orchestration", "a", "chat", Decimal("0.055555555555")),
        ("orchestration", "a", "dev-tools", Decimal("0.166666666666")),
        ("orchestration", "b", "dev-tools", Decimal("0.111111111112")),
        ("support", "acme", "unattributed", Decimal("120.5")),  # no usage of acme: stays where it was put
    ]


_day = st.dates(min_value=date(2026, 12, 1), max_value=date(2026, 12, 31))
_cost_rows = st.lists(
    st.tuples(st.sampled_from(["2026-12", "2026-12-01..2026-12-10", "2026-12-11..2026-12-31"]),
              st.decimals(min_value=Decimal("-1000"), max_value=Decimal("100000"), places=12),
              st.sampled_from(["inference", "orchestration", "infrastructure", "support"]),
              st.sampled_from(["", "f1", "f2"]), st.sampled_from(["", "c1", "c2", "c3"]), st.sampled_from(["", "pro"])),
    min_size=1, max_size=8, unique_by=lambda row: (row[0], row[2], row[3], row[4], row[5]))
_usage = st.lists(st.tuples(_day, st.sampled_from(["f1", "f2", "f3"]), st.sampled_from(["c1", "c2"]),
                            st.sampled_from(["pro", "free"]), st.integers(min_value=0, max_value=5000)),
                  max_size=12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_cost_rows, usage=_usage, by=st.sampled_from(["calls", "tokens", "cost"]))
def test_allocated_period_costs_add_up_exactly_to_what_was_imported(chdb_client, database, rows, usage, by):
    db = schema.quote_identifier(database)
    for table in ("period_costs", "llm_calls", "llm_calls_daily", "llm_calls_hourly", "llm_calls_cost_daily"):
        chdb_client.command(f"TRUNCATE TABLE {db}.{table}")
    calls = [call(timestamp=datetime(d.year, d.month, d.day, 12, tzinfo=timezone.utc), feature=f, customer=c, tier=t,
                  input_tokens=n, cost_usd=Decimal(n) / 1000) for d, f, c, t, n in usage]
    if calls:
        insert_calls(chdb_client, database, calls)
    text = "period,amount,category,feature,customer,tier\n" + "".join(
        f"{p},{format(amount, 'f')},{cat},{f},{c},{t}\n" for p, amount, cat, f, c, t in rows)
    result = import_period_costs(chdb_client, parse_costs_csv(text), source="c.csv", database=database)
    assert result.new == len(rows)
    imported = sum((amount for _, amount, *_ in rows), Decimal(0))
    per_row = chdb_client.query(
        ALLOCATED.format(cols="period_start, category, cost_feature, cost_customer, cost_tier, any(cost_amount_usd), "
                              "sum(amount_usd), count()", db=db, by=f"'{by}'")
        + " GROUP BY period_start, period_end, category, cost_feature, cost_customer, cost_tier").result_rows
    assert len(per_row) == len(rows)
    for *_, amount, allocated, _parts in per_row:
        assert allocated == amount  # exact, to the last of 12 decimals
    total = chdb_client.query(ALLOCATED.format(cols="sum(amount_usd)", db=db, by=f"'{by}'")).result_rows[0][0]
    assert total == imported


@settings(max_examples=30, deadline=None)
@given(rows=_cost_rows, bad=st.sampled_from(["2026-12,12.5.0,support,,,", "2026/12,1,support,,,",
                                             "2026-12,1,gpu,,,", "2026-12,1e400,support,,,",
                                             "2026-12,0.0000000000001,support,,,", '2026-12,"1,support,,,']),
       at=st.integers(min_value=0, max_value=8))
def test_a_file_with_one_bad_row_anywhere_imports_nothing(rows, bad, at):
    lines = [f"{p},{format(amount, 'f')},{cat},{f},{c},{t}" for p, amount, cat, f, c, t in rows]
    lines.insert(min(at, len(lines)), bad)
    with pytest.raises(CostFileError) as raised:
        parse_costs_csv("period,amount,category,feature,customer,tier\n" + "\n".join(lines) + "\n")
    assert raised.value.errors and all(" line " in error for error in raised.value.errors)
