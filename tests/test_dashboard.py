"""The dashboard in a real headless browser (Debian's chromium, driven by playwright), over chDB.

A seeded store's expected charts (series and points per chart) are computed here from the seeded
rows, not from the dashboard's data; the page must draw exactly those in plotly's ``gd.data``,
with no console error and no request leaving 127.0.0.1 (live) or the file (snapshot). A
screenshot of each page is kept in tests/artifacts/ (not committed). Without chromium the browser
tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin.analysis.dashboard import page
from otel_margin.analysis.dashboard.data import Filters, plain, to_json
from otel_margin.analysis.dashboard.server import filters_from_query, serve
from otel_margin.cli import main, storage_config
from otel_margin.cli.dashboard import read_dashboard

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LONG_FEATURE = "feature-with-a-very-long-name-" + "x" * 170
HOSTILE = "<b>x</b><script>window.__xss=1</script>"  # plotly reads <b>: it must stay text
HOSTILE_IMG = '<img src=x onerror="window.__xss = 2">'
DAYS = 30

# --- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the dashboard tests need Debian's chromium and playwright: apt-get install -y chromium; "
                        "pip install playwright")
        pytest.skip("no chromium (apt-get install -y chromium) or no playwright (pip install playwright)")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable)
        try:
            yield launched
        finally:
            launched.close()


class Page:
    """A browser page that records console errors and every request it makes."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))

    def open(self, url: str, renders: int = 1) -> None:
        self.page.goto(url)
        self.wait_renders(renders)

    def wait_renders(self, renders: int) -> None:
        self.page.wait_for_function(f"Number(document.body.dataset.renders || 0) >= {renders}", timeout=90_000)

    def charts(self) -> dict[str, Any]:
        """Each chart: its traces as (name, number of points), or its 'no data' sentence."""
        return self.page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.chart')].map(
            (div) => [div.id, div.data ? div.data.map((t) => [t.name, (t.x || []).length]) : div.textContent]))""")

    def totals(self) -> dict[str, str]:
        return self.page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#totals .total')].map(
            (div) => [div.querySelector('.name').textContent, div.querySelector('.value').textContent]))""")

    def text(self, selector: str = "body") -> str:
        return self.page.inner_text(selector)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"dashboard-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    def check_clean(self, allowed_prefixes: tuple[str, ...]) -> None:
        assert self.errors == []
        assert [url for url in self.requests if not url.startswith(allowed_prefixes)] == []
        assert self.page.evaluate("window.__xss") is None


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    opened = Page(browser)
    try:
        yield opened
    finally:
        opened.page.close()


# --- the seeded store ---------------------------------------------------------------------------


def seed(now: datetime) -> list[dict[str, Any]]:
    """Calls over the last 40 days: three features (one with a 200-character name), four customers
    (two named like markup, one paying nothing), two tiers, cache hits on one feature, some unpriced."""
    rows = []
    customers = [("acme", "pro", "2024-01"), ("globex", "free", "2024-02"), (HOSTILE, "pro", "2024-02"),
                 (HOSTILE_IMG, "free", "2024-01")]
    features = ["search", "summarize", LONG_FEATURE]
    for index in range(240):
        customer, tier, cohort = customers[index % 4]
        feature = features[index % 3]
        if index < 40:
            moment = now - timedelta(hours=index % 20, minutes=index % 7)  # the last 24 hours
        else:
            moment = now - timedelta(days=2 + index % 38, hours=index % 5)
        unpriced = index % 11 == 0
        cost = None if unpriced else Decimal(index % 7 + 1) / 1000
        revenue = None if customer == HOSTILE_IMG else Decimal(index % 5 + 1) / 400
        extra = {"cache_result": "exact", "saved_usd": Decimal("0.004")} if feature == "search" and index % 4 == 1 else {}
        if index % 6 == 0:  # tickets of two calls each, all of feature search
            extra.update(unit_id=f"ticket-{index // 12}", unit_kind="ticket")
        rows.append(call(timestamp=moment, feature=feature, customer=customer, tier=tier, cohort=cohort,
                         cost_usd=cost, revenue_usd=revenue, **extra))
    return rows


def monday(day: Any) -> Any:
    return day - timedelta(days=day.weekday())


def expected_charts(rows: list[dict[str, Any]], now: datetime) -> dict[str, list[int]]:
    """Points per trace of every chart, in the page's trace order, from the seeded rows alone."""
    today = now.date()
    start = today - timedelta(days=DAYS - 1)
    since = (now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
    hours, days, months = defaultdict(set), defaultdict(set), defaultdict(set)
    weeks: dict[str, dict[str, set]] = {"tier": defaultdict(set), "cohort": defaultdict(set)}
    revenue, guarded = defaultdict(Decimal), set()
    features = set()
    for row in rows:
        moment, day = row["timestamp"], row["timestamp"].date()
        if moment >= since:
            hours[row["feature"]].add(moment.replace(minute=0, second=0, microsecond=0))
        for level in ("tier", "cohort"):
            if monday(day) >= monday(start):
                weeks[level][row[level]].add(monday(day))
        if start <= day <= today:
            features.add(row["feature"])
            days[row["feature"]].add(day)
            months[day.replace(day=1)].add(row["feature"])
            revenue[row["customer"]] += row["revenue_usd"] or 0
            if row["cache_result"] != "off":
                guarded.add(row["feature"])
    return {
        "chart-realtime": [len(hours[f]) for f in sorted(hours) for _ in ("cost", "revenue")],
        "chart-daily": [len(days[f]) for f in sorted(days)],
        "chart-weekly-tier": [len(weeks["tier"][k]) for k in sorted(weeks["tier"]) for _ in ("week", "avg")],
        "chart-weekly-cohort": [len(weeks["cohort"][k]) for k in sorted(weeks["cohort"]) for _ in ("week", "avg")],
        "chart-monthly": [len(months[m]) for m in sorted(months) for _ in ("margin $", "margin %", "calls")],
        "chart-customers": [sum(1 for amount in revenue.values() if amount)],
        "chart-cost-map": [len(features)] * 6,  # five components and the P95
        "chart-waterfall": [3],  # usage revenue, inference, margin
        "chart-guardrails": [len(guarded)] * 2,  # cache $ avoided, routing $ saved
    }


def points(charts: dict[str, Any]) -> dict[str, Any]:
    return {chart: [count for _, count in traces] if isinstance(traces, list) else traces
            for chart, traces in charts.items()}


@pytest.fixture
def seeded(chdb_client: Any, database: str) -> tuple[list[dict[str, Any]], datetime]:
    now = datetime.now(timezone.utc)
    rows = seed(now)
    insert_calls(chdb_client, database, rows)
    return rows, now


@pytest.fixture
def store(chdb_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads the test's chDB directory (the same process may open it: chdb_fixtures)."""
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    monkeypatch.delenv("OTEL_EXPORTER_CLICKHOUSE_DATABASE", raising=False)


def write_snapshot(tmp_path: Path, database: str, *extra: str) -> Path:
    output = tmp_path / "margin.html"
    assert main(["dashboard", "--database", database, "--output", str(output), "--days", str(DAYS), *extra]) == 0
    return output


# --- the snapshot -------------------------------------------------------------------------------


def expected_zones(rows: list[dict[str, Any]], now: datetime, feature: str, floor: int, band: int) -> list[str]:
    """The zone of each day of ``feature`` in the period, from the rows: margin % against the floor."""
    start = now.date() - timedelta(days=DAYS - 1)
    revenue, cost = defaultdict(Decimal), defaultdict(Decimal)
    for row in rows:
        if row["feature"] == feature and row["timestamp"].date() >= start:
            revenue[row["timestamp"].date()] += row["revenue_usd"] or 0
            cost[row["timestamp"].date()] += row["cost_usd"] or 0
    zones = []
    for day in sorted(revenue):
        if not revenue[day]:
            zones.append("none")
            continue
        pct = (revenue[day] - cost[day]) * 100 / revenue[day]
        zones.append("red" if pct < floor else "yellow" if pct < floor + band else "green")
    return zones


ZONE_COLORS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828", "none": "#bdbdbd"}


def record_alert(client: Any, database: str, customer: str, now: datetime) -> None:
    from otel_margin.analysis.alerts.events import Event, ensure_table, save

    ensure_table(client, database=database)
    save(client, [Event(event_id="e1", rule="margin_red_3d", source="builtin", severity="red", feature="search",
                        customer=customer, value=12.5, threshold=40.0, trend="", driver="model mix", details={},
                        first_seen=now, last_seen=now, fired_at=now, closed_at=None, due=("hook",), version=1)],
         database=database)


def test_snapshot_draws_every_chart_of_a_seeded_store(tab, seeded, chdb_client, database, store, tmp_path, capsys,
                                                      monkeypatch):
    rows, now = seeded
    policy = tmp_path / "otel-margin.toml"
    policy.write_text("[features.search]\nfloor_pct = 45\nyellow_band_pts = 10\n")
    monkeypatch.setenv("OTEL_MARGIN_POLICY", str(policy))
    record_alert(chdb_client, database, HOSTILE, now - timedelta(hours=1))
    output = write_snapshot(tmp_path, database)
    assert "no network needed" in capsys.readouterr().out
    tab.open(output.as_uri())
    tab.screenshot("snapshot")
    assert points(tab.charts()) == expected_charts(rows, now)
    tab.check_clean((output.as_uri(), "data:", "blob:"))
    # Markup in names is text: on the scatter (shortened), in the table of customers without revenue.
    labels = tab.page.evaluate("[...document.querySelectorAll('#chart-customers text')].map((t) => t.textContent)")
    assert HOSTILE in labels
    assert HOSTILE_IMG in tab.text("#table-customers")
    assert LONG_FEATURE[:39] + "\u2026" in tab.page.evaluate("document.getElementById('chart-daily').data.map((t) => t.name)")
    body = tab.text()
    assert "unpriced calls" in body and "upper bound" in body and "unattributed calls" in body
    assert tab.page.is_disabled("#filter-feature")  # a snapshot's filters are fixed
    # Each day of a feature in its zone, by the floor and band of the policy file.
    colors = tab.page.evaluate("document.getElementById('chart-daily').data.find((t) => t.name === 'search').marker.color")
    zones = expected_zones(rows, now, "search", 45, 10)
    assert colors == [ZONE_COLORS[name] for name in zones] and {"red", "green"} <= set(zones)
    # Recent alerts, the hostile customer's name as text.
    assert HOSTILE in tab.text("#table-alerts") and "margin_red_3d" in tab.text("#table-alerts")
    assert "standing" in tab.text("#table-alerts")
    # Cost per unit of work: the tickets with a call in the period.
    start = now.date() - timedelta(days=DAYS - 1)
    tickets = {row["unit_id"] for row in rows if row["unit_kind"] == "ticket" and row["timestamp"].date() >= start}
    cells = tab.page.evaluate("[...document.querySelectorAll('#table-unit-costs td')].map((td) => td.textContent)")
    assert cells[:3] == ["ticket", "search", str(len(tickets))]


def test_snapshot_of_one_feature_and_customer_is_filtered_server_side(tab, seeded, database, store, tmp_path):
    rows, now = seeded
    output = write_snapshot(tmp_path, database, "--feature", "search", "--customer", "acme")
    tab.open(output.as_uri())
    mine = [row for row in rows if row["feature"] == "search" and row["customer"] == "acme"]
    charts = points(tab.charts())
    expected = expected_charts(mine, now)
    for chart in ("chart-realtime", "chart-daily", "chart-weekly-tier", "chart-monthly", "chart-customers"):
        assert charts[chart] == expected[chart], chart
    calls = sum(1 for row in mine if row["timestamp"].date() >= now.date() - timedelta(days=DAYS - 1))
    assert tab.totals()["calls"] == str(calls)
    tab.check_clean((output.as_uri(), "data:", "blob:"))


def test_empty_store_says_no_data_yet_in_every_view(tab, store, tmp_path):
    output = write_snapshot(tmp_path, "dashboard_never_written")
    tab.open(output.as_uri())
    tab.screenshot("empty")
    charts = tab.charts()
    assert charts and all(text == "No data yet." for text in charts.values())
    assert tab.text("#table-alerts") == "No data yet."
    note = tab.text("#no-data")
    assert note.startswith("No data yet: no LLM calls recorded yet in database 'dashboard_never_written'")
    assert "otel-margin demo" in note
    tab.check_clean((output.as_uri(), "data:", "blob:"))


def test_store_of_only_unpriced_calls_shows_them_and_no_made_up_cost(tab, chdb_client, database, store, tmp_path):
    now = datetime.now(timezone.utc)
    moments = [now - timedelta(hours=hours) for hours in range(5)]
    insert_calls(chdb_client, database, [call(timestamp=moment, cost_usd=None, feature="chat") for moment in moments])
    output = write_snapshot(tmp_path, database)
    tab.open(output.as_uri())
    tab.screenshot("unpriced")
    charts = tab.charts()
    assert charts["chart-cost-map"].startswith("No priced calls in this period: 5 unpriced calls")
    assert charts["chart-waterfall"] == "No revenue and no cost in this period."
    assert points(charts)["chart-daily"] == [len({moment.date() for moment in moments})]
    assert tab.totals()["unpriced calls"] == "5 (100.0 %)" and "upper bound" in tab.text("#totals-warning")
    assert "no alerts recorded yet: `otel-margin alerts run`" in tab.text("#table-alerts")
    tab.check_clean((output.as_uri(), "data:", "blob:"))


# --- the live server ----------------------------------------------------------------------------


@pytest.fixture
def live(database: str, store: None) -> Iterator[str]:
    config = storage_config(database=database)
    server = serve(lambda filters: read_dashboard(config, filters), port=0, refresh_seconds=1,
                   defaults=Filters(days=DAYS))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_live_dashboard_draws_refreshes_and_filters(tab, seeded, chdb_client, database, live):
    rows, now = seeded
    tab.open(live)
    assert points(tab.charts()) == expected_charts(rows, now)
    # It polls on its own: a call recorded now shows up without a reload.
    late = call(timestamp=datetime.now(timezone.utc), feature="late-feature", cost_usd=Decimal("0.01"))
    insert_calls(chdb_client, database, [late])
    tab.page.wait_for_function("document.getElementById('chart-daily').data.some((t) => t.name === 'late-feature')",
                               timeout=90_000)
    # A filter is a new query, bound server-side, and stays in the address.
    tab.page.select_option("#filter-feature", "summarize")
    tab.page.wait_for_function("document.getElementById('chart-daily').data.length === 1", timeout=90_000)
    assert "feature=summarize" in tab.page.url
    expected = expected_charts([row for row in rows if row["feature"] == "summarize"], now)
    assert points(tab.charts())["chart-realtime"] == expected["chart-realtime"]
    tab.screenshot("live")
    tab.check_clean((live,))


def test_live_server_rejects_a_bad_filter_with_the_fix(live):
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(live + "data.json?days=week")
    assert raised.value.code == 400
    assert json.loads(raised.value.read())["error"] == "days='week' is not a whole number of days; use for example days=30"


def test_live_server_serves_no_data_yet_before_the_first_export(store, monkeypatch):
    config = storage_config(database="dashboard_never_written")
    server = serve(lambda filters: read_dashboard(config, filters), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/data.json") as response:
            document = json.loads(response.read())
    finally:
        server.shutdown()
        server.server_close()
    assert document["no_data"].startswith("no LLM calls recorded yet in database 'dashboard_never_written'")


def test_dashboard_command_prints_its_url_and_serves_until_stopped(tmp_path):
    import signal
    import subprocess
    import sys

    environment = {**os.environ, "OTEL_EXPORTER_CLICKHOUSE_ENDPOINT": f"chdb://{tmp_path / 'chdb'}",
                   "OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR": str(tmp_path / "spool")}
    process = subprocess.Popen([sys.executable, "-m", "otel_margin.cli", "dashboard", "--port", "0", "--refresh", "5"],
                               stdout=subprocess.PIPE, text=True, env=environment)
    try:
        line = process.stdout.readline()
        assert line.startswith("otel-margin dashboard: http://127.0.0.1:") and line.rstrip().endswith("/ (Ctrl-C to stop)")
        url = line.split()[2]
        with urllib.request.urlopen(url) as response:
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            assert 'data-refresh="5"' in response.read().decode()
        with urllib.request.urlopen(url + "data.json?days=7") as response:
            document = json.loads(response.read())
        assert document["filters"]["days"] == 7 and document["no_data"].startswith("no LLM calls recorded yet")
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0


# --- values from outside ------------------------------------------------------------------------

names = st.text(max_size=60)


@settings(max_examples=200, deadline=None)
@given(feature=names, tier=names, customer=names, days=st.integers(1, 3660))
def test_filters_round_trip_through_the_query_string(feature, tier, customer, days):
    query = urlencode({"days": days, "feature": feature, "tier": tier, "customer": customer})
    assert filters_from_query(query, Filters()) == Filters(days=days, feature=feature, tier=tier, customer=customer)


def strict_json(text: str) -> Any:
    """JSON as a browser's JSON.parse reads it: NaN and Infinity are errors."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@settings(max_examples=200, deadline=None)
@given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.text() | st.floats(),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)))
def test_embedded_json_cannot_end_its_script_element_and_reads_back(value):
    document = plain({"value": value})
    text = page.script_json(to_json(document))
    assert "<" not in text and ">" not in text and "&" not in text
    assert strict_json(text) == document  # NaN and infinities (an alert's value) arrive as null


@pytest.mark.parametrize("query, message", [
    ("days=0", "period of 0 days is out of range; use 1 to 3660 days"),
    ("days=x", "days='x' is not a whole number of days; use for example days=30"),
    ("customer=" + "c" * 1001, "customer filter of 1001 characters is longer than 1000; shorten it"),
])
def test_bad_filters_name_the_value_and_the_fix(query, message):
    with pytest.raises(ValueError) as raised:
        filters_from_query(query, Filters())
    assert str(raised.value) == message
