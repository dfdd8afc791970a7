"""``otel-margin report`` (issue 15 item 5): calendar periods, --by, the waterfall and the units sections.

Real chDB and the real command line (``main([...])`` in-process, reading through a storage
session); the units test makes real SDK calls to the stand-in inside units and exports their
spans with the real exporter. Expected figures are computed here from the rows or spans seeded.
"""

from __future__ import annotations

import calendar
import json
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_margin import attribute, outcome, record_cost, unit
from otel_margin import attributes as a
from otel_margin.analysis import periods
from otel_margin.cli import main
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.standin import openai_client

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from conftest import instrumentation

TWELVE = Decimal(1).scaleb(-12)
MESSAGES = [{"role": "user", "content": "Resolve the ticket."}]
POLICY = '[features.support]\n[features.support.outcome_prices]\nresolved = "2.00"\n'


@pytest.fixture
def report(chdb_path, database, monkeypatch, capsys, tmp_path):
    """Run ``otel-margin report ARGS --database DB``: (exit code, stdout, stderr), JSON parsed when asked."""
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    monkeypatch.delenv("OTEL_MARGIN_POLICY", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./otel-margin.toml: the default allocation, 100 % AI share

    def run(*args: str) -> tuple[int, Any, str]:
        capsys.readouterr()  # what ran before (an import's summary)
        code = main(["report", *args, "--database", database])
        out, err = capsys.readouterr()
        return code, json.loads(out) if "json" in args and code == 0 else out, err

    return run


def _money(rows: list[dict[str, Any]], key: str, field: str) -> Decimal:
    return sum((Decimal(row[field]) for row in rows if row["key"] == key), Decimal(0))


# --- calendar periods ------------------------------------------------------------------------


def _december_2025(client: Any, db: str, tmp_path: Any) -> None:
    """Calls around December 2025 (one just before, one just after) and a December subscription."""
    for day, cost, revenue in ((date(2025, 11, 30), "1", None), (date(2025, 12, 1), "2", "0.5"),
                               (date(2025, 12, 31), "3", None), (date(2026, 1, 1), "4", None)):
        moment = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc)
        insert_calls(client, db, [call(timestamp=moment, customer="acme", feature="chat", cost_usd=Decimal(cost),
                                       revenue_usd=None if revenue is None else Decimal(revenue))])
    revenue = tmp_path / "revenue.csv"
    revenue.write_text("customer,period,amount,currency,tier,feature\nacme,2025-12,99.00,USD,pro,\n")
    assert main(["revenue", "import", str(revenue), "--database", db]) == 0


def test_month_sees_a_december_subscription_whole_and_nothing_outside_december(chdb_client, database, report,
                                                                               tmp_path):
    _december_2025(chdb_client, database, tmp_path)
    code, out, _ = report("--month", "2025-12", "--format", "json")
    assert code == 0
    assert out["period"] == {"start": "2025-12-01", "end": "2025-12-31", "label": "December 2025",
                             "partial": False, "days": 31, "period_days": 31}
    (total,) = out["waterfall"]["total"]
    assert Decimal(total["subscription_revenue_usd"]) == Decimal("99.00")  # the whole month's subscription
    assert Decimal(total["revenue_usd"]) == Decimal("99.5")
    assert Decimal(total["inference_usd"]) == Decimal(5) and total["calls"] == 2  # Nov 30 and Jan 1 left out
    assert Decimal(total["gross_margin_usd"]) == Decimal("94.5")
    assert Decimal(out["total"][0]["revenue_usd"]) == Decimal("99.5")  # the margin table agrees


def test_from_to_takes_the_days_share_of_the_subscription(chdb_client, database, report, tmp_path):
    _december_2025(chdb_client, database, tmp_path)
    code, out, _ = report("--from", "2025-12-01", "--to", "2025-12-15", "--format", "json")
    assert code == 0
    assert out["period"]["label"] == "2025-12-01 .. 2025-12-15" and out["period"]["partial"] is False
    (total,) = out["waterfall"]["total"]
    per_day = (Decimal(99) / 31).quantize(TWELVE, rounding=ROUND_DOWN)
    assert Decimal(total["subscription_revenue_usd"]) == 15 * per_day
    assert Decimal(total["inference_usd"]) == Decimal(2)
    # The two halves of the month add up to the whole month exactly.
    code, rest, _ = report("--from", "2025-12-16", "--to", "2025-12-31", "--format", "json")
    assert Decimal(rest["waterfall"]["total"][0]["subscription_revenue_usd"]) == Decimal(99) - 15 * per_day


def test_the_running_month_says_it_is_partial(chdb_client, database, report):
    today = datetime.now(timezone.utc)
    insert_calls(chdb_client, database, [call(timestamp=today, cost_usd=Decimal("0.25"), revenue_usd=Decimal(1))])
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    label = f"{calendar.month_name[today.month]} {today.year}, days 1–{today.day} of {days_in_month}: partial"
    code, out, _ = report("--month", f"{today:%Y-%m}", "--format", "json")
    assert code == 0
    assert out["period"] == {"start": f"{today:%Y-%m}-01", "end": today.date().isoformat(), "label": label,
                             "partial": True, "days": today.day, "period_days": days_in_month}
    assert Decimal(out["waterfall"]["total"][0]["gross_margin_usd"]) == Decimal("0.75")
    code, text, _ = report("--month", f"{today:%Y-%m}")
    assert code == 0 and label in text and "Margin waterfall: total" in text
    # A range that runs past today is cut at today and says so too.
    end = today.date() + timedelta(days=3)
    code, out, _ = report("--from", today.date().isoformat(), "--to", end.isoformat(), "--format", "json")
    assert out["period"]["partial"] is True and out["period"]["end"] == today.date().isoformat()
    assert out["period"]["label"].endswith("days 1–1 of 4: partial")
    # --since (alias --days) stays: the last N days, today included.
    code, out, _ = report("--days", "3", "--format", "json")
    assert out["period"]["start"] == (today.date() - timedelta(days=2)).isoformat()


@pytest.mark.parametrize(("args", "message"), [
    (("--month", "2026-13"), "argument --month: '2026-13' has no month 13: months run 01..12; use YYYY-MM"),
    (("--month", "December"), "argument --month: 'December' is not a month; use YYYY-MM, e.g. 2026-12"),
    (("--from", "2026-02-30"), "argument --from: '2026-02-30' is not a date; use YYYY-MM-DD"),
    (("--grace-minutes", "-5"), "argument --grace-minutes: '-5' is not a whole number of minutes from 0"),
    (("--by", "product"), "argument --by: invalid choice: 'product'"),
])
def test_a_bad_flag_value_names_the_flag_the_value_and_the_fix(report, args, message, capsys):
    with pytest.raises(SystemExit) as exited:
        report(*args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (("--month", "2999-01"), "--month: January 2999 has not started yet (today is "),
    (("--month", "2025-12", "--since", "7"), "--month and --since both choose the period; give only one of them"),
    (("--month", "2025-12", "--from", "2025-12-01"), "--month and --from/--to both choose the period"),
    (("--to", "2025-12-01"), "--to 2025-12-01 needs --from; add --from YYYY-MM-DD"),
    (("--from", "2025-12-09", "--to", "2025-12-01"), "--from/--to: the range 2025-12-09..2025-12-01 ends before it "
                                                     "starts; swap the dates"),
    (("--since", "0"), "--since: 0 days is not a period; give at least 1 day"),
])
def test_flags_that_cannot_make_a_period_are_an_error_that_says_what_to_do(chdb_client, database, report, args,
                                                                         message):
    insert_calls(chdb_client, database, [call(timestamp=datetime.now(timezone.utc))])
    code, _, err = report(*args)
    assert code == 1 and message in err


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(max_size=10), st.from_regex(r"\d{4}-\d{2}", fullmatch=True)))
def test_any_month_text_is_a_whole_month_or_an_error_naming_it(text):
    today = date(2026, 12, 7)
    first = None
    try:
        first = periods.parse_month(text)
        period = periods.month(first, today=today)
    except ValueError as error:
        if first is None:
            assert repr(text) in str(error) and "use YYYY-MM" in str(error)
        else:
            assert first > today and "has not started yet" in str(error)
        return
    assert (period.start.day, period.start.month, period.start.year) == (1, int(text[5:7]), int(text[:4]))
    assert period.end == min(today, period.start.replace(day=calendar.monthrange(first.year, first.month)[1]))
    assert period.partial == (period.end == today) and period.days == (period.end - period.start).days + 1


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(max_size=12), st.dates().map(date.isoformat), st.just("2026-W01-1")))
def test_any_date_text_is_that_day_or_an_error_naming_it(text):
    try:
        day = periods.parse_day(text)
    except ValueError as error:
        assert repr(text) in str(error) and "use YYYY-MM-DD" in str(error)
        return
    assert day.isoformat() == text.strip() and day.year >= 1970


def test_help_names_every_flag():
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
        main(["report", "--help"])
    text = " ".join(buffer.getvalue().split())
    for flag in ("--month YYYY-MM", "--from YYYY-MM-DD", "--to YYYY-MM-DD", "--since DAYS, --days DAYS",
                 "--by {feature,tier,customer,cohort,model,unit-kind}", "--grace-minutes MINUTES", "partial",
                 "--format {table,json}", "--allocate-by"):
        assert flag in text, flag


# --- the waterfall at every level ------------------------------------------------------------


LEVEL_OF = {"feature": "feature", "tier": "tier", "customer": "customer", "cohort": "cohort",
            "model": "response_model", "unit-kind": "unit_kind"}


@pytest.mark.parametrize("by", list(LEVEL_OF))
def test_by_gives_the_waterfall_of_that_level(chdb_client, database, report, by):
    moment = datetime(2025, 10, 10, 12, tzinfo=timezone.utc)
    rows = []
    for number in range(12):
        rows.append(call(
            timestamp=moment, feature=["chat", "search", "docs"][number % 3], customer=f"c{number % 4}",
            tier=["pro", "free"][number % 2], cohort=["2025-01", "2025-02"][number % 2],
            response_model=["gpt-4o-mini", "gpt-4o"][number // 6], unit_id=f"U-{number // 2}",
            unit_kind=["ticket", "document", ""][number % 3], cost_usd=Decimal(number + 1) / 8,
            revenue_usd=Decimal(number) / 4))
    insert_calls(chdb_client, database, rows)
    code, out, _ = report("--from", "2025-10-01", "--to", "2025-10-31", "--by", by, "--format", "json")
    assert code == 0 and out["waterfall"]["by"] == by
    expected_cost: dict[str, Decimal] = defaultdict(Decimal)
    expected_revenue: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        expected_cost[row[LEVEL_OF[by]]] += row["cost_usd"]
        expected_revenue[row[LEVEL_OF[by]]] += row["revenue_usd"]
    got = out["waterfall"]["rows"]
    assert {row["key"] for row in got} == set(expected_cost)
    for key in expected_cost:
        assert _money(got, key, "inference_usd") == expected_cost[key]
        assert _money(got, key, "usage_revenue_usd") == expected_revenue[key]
    for row in got + out["waterfall"]["total"]:
        parts = sum(Decimal(row[name]) for name in ("inference_usd", "orchestration_usd", "infrastructure_usd",
                                                    "support_usd"))
        assert Decimal(row["revenue_usd"]) - parts == Decimal(row["gross_margin_usd"])
    assert [Decimal(row["gross_margin_usd"]) for row in got] == sorted(Decimal(row["gross_margin_usd"]) for row in got)
    code, text, _ = report("--from", "2025-10-01", "--to", "2025-10-31", "--by", by)
    title = "Cost per model" if by == "model" else f"Margin waterfall per {by.replace('-', ' ')}"
    assert title in text and ("cost side only" in text) == (by == "model")


# --- units of work, end to end ---------------------------------------------------------------


@pytest.fixture
def priced(otel, tmp_path, monkeypatch):
    """Instrumented, with a policy that prices a resolved support ticket at $2."""
    policy = tmp_path / "otel-margin.toml"
    policy.write_text(POLICY)
    monkeypatch.setenv("OTEL_MARGIN_POLICY", str(policy))
    otel.clear()
    with instrumentation(otel):
        yield otel


def test_units_sections_equal_what_the_calls_cost(standin_server, priced, chdb_path, database, monkeypatch,
                                                  capsys, tmp_path):
    client = openai_client(standin_server)
    with attribute(feature="support", customer="acme", tier="pro"):
        for ticket, calls, status in (("T-1", 3, "resolved"), ("T-2", 2, "failed"), ("T-3", 1, None),
                                      ("T-4", 1, "resolved")):
            with unit("ticket", id=ticket):
                for _ in range(calls):
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                if ticket == "T-2":
                    record_cost("1.50", "support", description="human review")
                if status:
                    outcome(status)
    with attribute(feature="contracts", customer="acme", tier="pro"), unit("document", id="D-1"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.embeddings.create(model="text-embedding-3-small", input="clause 7")
        record_cost("0.0004", "orchestration", description="vector search")
        outcome("resolved", revenue_usd="0.75")
    spans = priced.spans()
    cost: dict[str, Decimal] = defaultdict(Decimal)
    for span in spans:
        attrs = span.attributes or {}
        if a.GEN_AI_OPERATION_NAME in attrs:
            cost[attrs[a.MARGIN_UNIT_ID]] += Decimal(attrs[a.MARGIN_COST_USD])
    cost["T-2"] += Decimal("1.50")
    cost["D-1"] += Decimal("0.0004")
    assert all(value > 0 for value in cost.values()) and len(cost) == 5
    exporter = ClickHouseSpanExporter(endpoint=f"chdb://{chdb_path}", database=database,
                                      spool_dir=str(tmp_path / "spool"), drain_interval=0.1)
    exporter.export(spans)
    exporter.shutdown()

    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    today = datetime.now(timezone.utc)
    assert main(["report", "--month", f"{today:%Y-%m}", "--format", "json", "--grace-minutes", "0",
                 "--by", "unit-kind", "--database", database]) == 0
    out = json.loads(capsys.readouterr().out)
    section = out["units"]
    tickets = sorted(cost[t] for t in ("T-1", "T-2", "T-3", "T-4"))
    per_unit = {(row["unit_kind"], row["feature"]): row for row in section["cost_per_unit"]}
    assert set(per_unit) == {("ticket", "support"), ("document", "contracts")}
    ticket = per_unit[("ticket", "support")]
    assert (ticket["units"], ticket["calls"]) == (4, 7)
    assert Decimal(ticket["avg_cost_usd"]) == (sum(tickets) / 4).quantize(TWELVE, rounding=ROUND_DOWN)
    assert Decimal(ticket["p50_cost_usd"]) == tickets[2] and Decimal(ticket["p95_cost_usd"]) == tickets[3]
    assert Decimal(ticket["max_cost_usd"]) == max(tickets)
    assert Decimal(per_unit[("document", "contracts")]["max_cost_usd"]) == cost["D-1"]

    outcomes = {(row["feature"], row["outcome"]): row for row in section["outcomes"]}
    assert set(outcomes) == {("support", "resolved"), ("support", "failed"), ("support", "abandoned"),
                             ("contracts", "resolved")}
    resolved = outcomes[("support", "resolved")]
    assert (resolved["units"], Decimal(resolved["revenue_usd"])) == (2, Decimal(4))
    assert Decimal(resolved["margin_usd"]) == 4 - cost["T-1"] - cost["T-4"]
    assert Decimal(outcomes[("support", "failed")]["revenue_usd"]) == 0  # a failed ticket earns nothing
    assert outcomes[("support", "abandoned")]["recorded"] is False
    assert _same_money(section["summary"], cost)

    kinds = {row["key"]: row for row in out["waterfall"]["rows"]}
    assert Decimal(kinds["ticket"]["outcome_revenue_usd"]) == Decimal(4)
    assert Decimal(kinds["ticket"]["support_usd"]) == Decimal("1.50")
    assert Decimal(kinds["document"]["orchestration_usd"]) > Decimal("0.0004")  # the embedding call and the line

    assert main(["report", "--month", f"{today:%Y-%m}", "--grace-minutes", "0", "--database", database]) == 0
    text = capsys.readouterr().out
    assert "Cost per unit of work" in text and "Margin per outcome" in text and "abandoned (no outcome)" in text
    assert "1 abandoned" in text and "Failed: 1 units" in text


def _same_money(summary: dict[str, Any], cost: dict[str, Decimal]) -> bool:
    """The summary's money compared as numbers (its strings keep the stored scale)."""
    return (summary["units"], summary["with_outcome"], summary["abandoned_units"], summary["open_units"],
            summary["failed_units"]) == (5, 4, 1, 0, 1) and (
        Decimal(summary["abandoned_cost_usd"]), Decimal(summary["open_cost_usd"]), Decimal(summary["failed_cost_usd"]),
        Decimal(summary["failed_revenue_usd"])) == (cost["T-3"], 0, cost["T-2"], 0)
