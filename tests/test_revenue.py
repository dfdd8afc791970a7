"""Revenue CSV: parsing (property-tested), all-or-nothing import, idempotent re-import."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from chdb_fixtures import chdb_client, chdb_path, database  # noqa: F401 - fixtures
from otel_margin import schema
from otel_margin.cli import main
from otel_margin.analysis.revenue import RevenueEvent, RevenueFileError, import_revenue, parse_revenue_csv

GOOD = """customer,period,amount,currency,tier,feature
acme,2024-05,99.00,USD,pro,
acme,2024-05-01..2024-05-15,10.50,usd,pro,document-analysis
"globex, inc",2024-02,-5,USD,team,
"""


def test_a_good_file_parses_months_ranges_credits_and_quoted_names():
    events = parse_revenue_csv(GOOD)
    assert events == [
        RevenueEvent("acme", date(2024, 5, 1), date(2024, 5, 31), Decimal("99.00"), "pro", "", 2),
        RevenueEvent("acme", date(2024, 5, 1), date(2024, 5, 15), Decimal("10.50"), "pro", "document-analysis", 3),
        RevenueEvent("globex, inc", date(2024, 2, 1), date(2024, 2, 29), Decimal("-5"), "team", "", 4),
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("acme,2024-05,abc,USD,pro,", "revenue.csv line 3: amount 'abc' is not a number; use a decimal like 99.00"),
        ("acme,2024-05,NaN,USD,pro,", "amount 'NaN' is not a number"),
        ("acme,2024-05,1e3,USD,pro,", "amount '1e3' is not a number"),
        ("acme,2024-13,1,USD,pro,", "period '2024-13' is not a month or a day range; use 2024-05"),
        ("acme,2024-05-09..2024-05-01,1,USD,pro,", "ends before it starts"),
        ("acme,2024-01-01..2025-12-31,1,USD,pro,", "longer than 366 days"),
        ("acme,2024-05,1,EUR,pro,", "currency 'EUR' is not supported; convert the amount to USD"),
        (",2024-05,1,USD,pro,", "customer is empty"),
        ("acme,2024-05,1,USD,pro", "has 5 fields, the header has 6"),
        ("acme,2024-05,0.0000000000001,USD,pro,", "more than 12 decimal places"),
        ("ok,2024-06,1,USD,pro,", "is already on line 2"),
    ],
)
def test_a_bad_row_is_a_clear_per_line_error(line, message):
    text = "customer,period,amount,currency,tier,feature\nok,2024-06,1,USD,pro,\n" + line + "\n"
    with pytest.raises(RevenueFileError) as caught:
        parse_revenue_csv(text)
    assert any(message in error for error in caught.value.errors), caught.value.errors
    assert all(error.startswith("revenue.csv line 3") for error in caught.value.errors)


def test_header_and_empty_file_errors():
    with pytest.raises(RevenueFileError, match="line 1: header 'customer,amount'"):
        parse_revenue_csv("customer,amount\nacme,1\n")
    with pytest.raises(RevenueFileError, match="the file is empty"):
        parse_revenue_csv("\n\n")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_parser(text):
    try:
        events = parse_revenue_csv("customer,period,amount,currency,tier,feature\n" + text)
    except RevenueFileError as error:
        assert error.errors and all(e.startswith("revenue.csv") for e in error.errors)
    else:
        assert all(e.period_start <= e.period_end and e.customer and e.tier for e in events)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(
    st.text(alphabet="abcxyz-_ ", min_size=1, max_size=8).filter(str.strip),
    st.integers(2000, 2100), st.integers(1, 12),
    st.decimals(min_value=-10**6, max_value=10**6, places=2, allow_nan=False),
), max_size=10, unique_by=lambda row: (row[0].strip(), row[1], row[2])))
def test_generated_good_rows_round_trip(rows):
    text = "customer,period,amount,currency,tier\n" + "".join(
        f"{c},{y:04d}-{m:02d},{a},USD,pro\n" for c, y, m, a in rows
    )
    events = parse_revenue_csv(text)
    assert [(e.customer, e.period_start, e.amount_usd) for e in events] == [
        (c.strip(), date(y, m, 1), a) for c, y, m, a in rows
    ]


def stored(client, db):
    return client.query(
        f"SELECT customer, period_start, feature, tier, amount_usd FROM {schema.quote_identifier(db)}.revenue_events FINAL ORDER BY ALL"
    ).result_rows


def raw_count(client, db):
    return client.query(f"SELECT count() FROM {schema.quote_identifier(db)}.revenue_events").result_rows[0][0]


def test_reimport_adds_nothing_and_a_correction_replaces(chdb_client, database):
    events = parse_revenue_csv(GOOD)
    first = import_revenue(chdb_client, events, source="r.csv", database=database)
    assert (first.new, first.changed, first.unchanged) == (3, 0, 0)
    again = import_revenue(chdb_client, events, source="r.csv", database=database)
    assert (again.new, again.changed, again.unchanged) == (0, 0, 3)
    assert raw_count(chdb_client, database) == 3
    corrected = parse_revenue_csv(GOOD.replace("99.00", "89.00"))
    result = import_revenue(chdb_client, corrected, source="r.csv", database=database)
    assert (result.new, result.changed, result.unchanged) == (0, 1, 2)
    assert ("acme", date(2024, 5, 1), "", "pro", Decimal("89")) in stored(chdb_client, database)
    assert len(stored(chdb_client, database)) == 3


def test_cli_import_is_all_or_nothing(chdb_client, chdb_path, database, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    bad = tmp_path / "revenue.csv"
    bad.write_text(GOOD + "acme,2024-07,abc,USD,pro,\n")
    assert main(["revenue", "import", str(bad), "--database", database]) == 1
    assert "revenue.csv line 5: amount 'abc' is not a number; use a decimal like 99.00" in capsys.readouterr().err
    assert raw_count(chdb_client, database) == 0
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    assert main(["revenue", "import", str(good), "--database", database]) == 0
    assert main(["revenue", "import", str(good), "--database", database]) == 0
    assert "0 new, 0 changed, 3 unchanged" in capsys.readouterr().out
    assert raw_count(chdb_client, database) == 3
