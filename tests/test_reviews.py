"""The weekly and quarterly reviews on a seeded history in real chDB.

Calls are generated here (seeded, exact Decimal money, costs = tokens × the policy's prices) and
inserted the way the exporter writes them. Every figure the tests expect — the backlog's dollar
estimates, the trend labels, the features under their floor — is computed in this file from the
generated rows with fractions, by the rules in docs/reviews.md, never read back from SQL.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin.analysis.reviews import backlog, periods, quarterly, weekly
from otel_margin.analysis.reviews.html import render_html
from otel_margin.analysis.reviews.render import Chart, Review, Section, Table, markdown
from otel_margin.analysis.reviews.settings import ReviewSettings
from otel_margin.analysis.reviews.trends import label_trend
from otel_margin.analysis.zones import Floors
from otel_margin.cli import main
from otel_margin.policy import parse_policy
from otel_margin.prices import PriceCatalog
from test_dashboard import ARTIFACTS, browser, tab  # noqa: F401 - fixtures: Debian's chromium

WEEK = periods.iso_week("2026-W49")  # 2026-11-30 .. 2026-12-06
WINDOW_START = WEEK.start - timedelta(weeks=3)  # the backlog's 4 weeks
PRICES = {"big-model": (Fraction(10), Fraction(30)), "small-model": (Fraction(1), Fraction(2))}  # $/Mtok in, out
SMALL = 100
FLOORS = {"rising": Fraction(60), "steady": Fraction(50), "falling": Fraction(50)}
POLICY = f"""
[features.rising]
floor_pct = 60
[features.steady]
floor_pct = 50
[features.falling]
floor_pct = 50

[[exceptions]]
feature = "steady"
owner = "jane@example.com"
reason = "launch pricing"
review_date = 2026-12-20

[reviews]
small_output_tokens = {SMALL}

[prices.models."big-model"]
provider = "openai"
input_per_mtok = "10"
output_per_mtok = "30"

[prices.models."small-model"]
provider = "openai"
input_per_mtok = "1"
output_per_mtok = "2"
"""
TREND_FACTORS = {"steady": (1.0, 1.01, 0.99, 1.0), "falling": (1.0, 0.8, 0.6, 0.45), "rising": (1.0, 1.3, 1.6, 1.9)}
SEEDED_LABELS = {"steady": "stable", "falling": "improving", "rising": "degrading"}
CUSTOMERS = ("c1", "c2", "c3", "c4")
TOLERANCE = Fraction(1, 10**9)


def _cost(model: str, tokens_in: int, tokens_out: int) -> Decimal:
    price_in, price_out = PRICES[model]
    value = (price_in * tokens_in + price_out * tokens_out) / 10**6
    return Decimal(value.numerator) / Decimal(value.denominator)  # exact: the denominator divides 10^6


def generate(seed: int = 11) -> list[dict]:
    """Four weeks (and one before them) of calls: three features with seeded cost trends, revenue per
    customer, repeated requests, small calls on the big model, errors, cache hits and unpriced calls."""
    rng = random.Random(seed)
    rows = []
    for week_index in range(-1, 4):
        monday = WINDOW_START + timedelta(weeks=week_index)
        for feature, factors in TREND_FACTORS.items():
            factor = factors[max(week_index, 0)]
            for _ in range(60):
                day = monday + timedelta(days=rng.randrange(7))
                moment = datetime.combine(day, time(rng.randrange(24), rng.randrange(60), rng.randrange(60)),
                                          timezone.utc)
                model = "big-model" if feature != "falling" or rng.random() < 0.5 else "small-model"
                tokens_in = int(rng.randrange(800, 1200) * factor)
                tokens_out = rng.choice([rng.randrange(10, SMALL), rng.randrange(SMALL, 4 * SMALL)])
                tokens_out = int(tokens_out * factor) if feature != "steady" else tokens_out
                customer = rng.choice(CUSTOMERS)
                cost = _cost(model, tokens_in, tokens_out)
                # c4 pays little: priced below its cost; 'rising' earns too little for its floor.
                markup = {"c4": Decimal("0.5")}.get(customer, Decimal("2.2") if feature == "rising" else Decimal(3))
                rows.append(call(
                    timestamp=moment, feature=feature, customer=customer, cost_usd=cost,
                    revenue_usd=(cost * markup).quantize(Decimal("0.000001")), input_tokens=tokens_in,
                    output_tokens=tokens_out, response_model=model, request_model=model,
                    request_hash=rng.choice([0, rng.randrange(1, 2**64), rng.randrange(1, 6)]),
                ))
    # Noise the estimates must leave out: an unpriced call, a failed one, a cache hit. Each is the first
    # of its request in the window: counted, it would turn the real first call into an avoidable repeat.
    first = datetime.combine(WINDOW_START, time(0), timezone.utc)
    for index, hashed in enumerate((1, 2, 3)):
        rows.append(call(timestamp=first + timedelta(seconds=index), feature="steady", customer="c1",
                         cost_usd=(None, Decimal("0.001"), Decimal(0))[index], request_hash=hashed,
                         response_model="big-model", output_tokens=5,
                         error_type=("", "RateLimitError", "")[index], cache_result=("off", "off", "exact")[index]))
    return rows


@pytest.fixture
def seeded(chdb_client, database):
    rows = generate()
    insert_calls(chdb_client, database, rows)
    return rows


def in_window(row: dict, start: date = WINDOW_START, end: date = WEEK.end) -> bool:
    return start <= row["timestamp"].date() <= end


def counted(row: dict) -> bool:
    """A priced, successful call the cache did not serve."""
    return row["cost_usd"] is not None and not row["error_type"] and row["cache_result"] not in ("exact", "semantic", "hit")


def per_quarter(amount: Fraction, days: int = 28) -> Fraction:
    return amount * 91 / days


def expected_repeats(rows: list[dict]) -> dict[str, Fraction]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if in_window(row) and counted(row) and row["request_hash"]:
            groups[(row["feature"], row["customer"], row["request_hash"])].append(row)
    avoidable: dict[str, Fraction] = defaultdict(Fraction)
    for (feature, *_), group in groups.items():
        group.sort(key=lambda r: (r["timestamp"], r["span_id"]))
        avoidable[feature] += sum((Fraction(r["cost_usd"]) for r in group[1:]), Fraction(0))
    return {feature: amount for feature, amount in avoidable.items() if amount > 0}


def expected_cheaper(rows: list[dict]) -> dict[str, Fraction]:
    sums: dict[str, list] = defaultdict(lambda: [0, 0, Fraction(0)])
    for row in rows:
        if in_window(row) and counted(row) and row["response_model"] == "big-model" and row["output_tokens"] < SMALL:
            entry = sums[row["feature"]]
            entry[0] += row["input_tokens"]
            entry[1] += row["output_tokens"]
            entry[2] += Fraction(row["cost_usd"])
    price_in, price_out = PRICES["small-model"]
    return {f"{feature}: big-model → small-model": cost - (price_in * tokens_in + price_out * tokens_out) / 10**6
            for feature, (tokens_in, tokens_out, cost) in sums.items()}


def expected_losses(rows: list[dict]) -> dict[str, Fraction]:
    margin: dict[str, Fraction] = defaultdict(Fraction)
    for row in rows:
        if in_window(row):
            margin[row["customer"]] += Fraction(row["revenue_usd"] or 0) - Fraction(row["cost_usd"] or 0)
    return {customer: -value for customer, value in margin.items() if value < 0}


def expected_floor_gaps(rows: list[dict]) -> dict[str, Fraction]:
    weekly: dict[str, dict[date, list[Fraction]]] = defaultdict(lambda: defaultdict(lambda: [Fraction(0), Fraction(0)]))
    for row in rows:
        if in_window(row):
            monday = row["timestamp"].date() - timedelta(days=row["timestamp"].weekday())
            entry = weekly[row["feature"]][monday]
            entry[0] += Fraction(row["revenue_usd"] or 0)
            entry[1] += Fraction(row["cost_usd"] or 0)
    gaps = {}
    for feature, weeks in weekly.items():
        floor = FLOORS[feature]
        pcts = [(rev - cost) * 100 / rev for rev, cost in weeks.values() if rev]
        revenue = sum(rev for rev, _ in weeks.values())
        margin = revenue - sum(cost for _, cost in weeks.values())
        below = sum(p < floor for p in pcts)
        if len(pcts) >= 2 and margin * 100 / revenue < floor and 4 * below >= 3 * len(pcts):
            gaps[feature] = revenue * floor / 100 - margin
    return gaps


def expected_label(rows: list[dict], feature: str) -> str:
    """The documented rule, computed here: least squares of weekly cost per priced call, relative to its mean."""
    points = []
    for index in range(4):
        monday = WINDOW_START + timedelta(weeks=index)
        costs = [Fraction(r["cost_usd"]) for r in rows if r["feature"] == feature and r["cost_usd"] is not None
                 and monday <= r["timestamp"].date() < monday + timedelta(days=7)]
        points.append((index, sum(costs) / len(costs)))
    mean_x = Fraction(sum(x for x, _ in points), len(points))
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    relative = slope / mean_y * 100
    return "degrading" if relative > 5 else "improving" if relative < -5 else "stable"


def _build(client, database):
    policy = parse_policy(POLICY)
    return backlog.build_backlog(client, start=WINDOW_START, end=WEEK.end, floors=Floors(policy),
                                 catalog=PriceCatalog(policy, log_unpriced=False), small_output_tokens=SMALL,
                                 database=database)


def _close(actual: Decimal, expected: Fraction) -> bool:
    return abs(Fraction(actual) - expected) <= TOLERANCE


def test_every_backlog_estimate_equals_an_independent_computation(chdb_client, database, seeded):
    items = _build(chdb_client, database)
    by_kind: dict[str, dict[str, backlog.BacklogItem]] = defaultdict(dict)
    for item in items:
        by_kind[item.kind][item.subject] = item
    expectations = {
        "cache": expected_repeats(seeded),
        "cheaper model": expected_cheaper(seeded),
        "customer below cost": expected_losses(seeded),
        "feature below floor": expected_floor_gaps(seeded),
    }
    for kind, expected in expectations.items():
        assert expected, f"the seeded history must exercise {kind}"
        assert set(by_kind[kind]) == set(expected), kind
        for subject, amount in expected.items():
            item = by_kind[kind][subject]
            assert _close(item.window_usd, amount), (kind, subject, item.window_usd, float(amount))
            assert _close(item.quarter_usd, per_quarter(amount)), (kind, subject)
    assert set(expectations["customer below cost"]) == {"c4"}
    assert set(expectations["feature below floor"]) == {"rising"}
    for hashed in (1, 2, 3):  # each noise row is followed by a real call of its request
        assert sum(r["request_hash"] == hashed and r["feature"] == "steady" and r["customer"] == "c1"
                   and in_window(r) and counted(r) for r in seeded) >= 1
    quarters = [item.quarter_usd for item in items]
    assert quarters == sorted(quarters, reverse=True)  # ranked by dollars per quarter


def test_trend_labels_match_the_seeded_trends(chdb_client, database, seeded):
    section = weekly.trend_section(chdb_client, WEEK, settings=ReviewSettings(), database=database)
    labels = {row[0]: row[-1] for row in section.table.rows}
    assert labels == SEEDED_LABELS
    assert labels == {feature: expected_label(seeded, feature) for feature in SEEDED_LABELS}


def test_the_weekly_review_has_every_agenda_section_and_fills_them(chdb_client, chdb_path, database, seeded,
                                                                   tmp_path, monkeypatch):
    (tmp_path / "otel-margin.toml").write_text(POLICY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTEL_MARGIN_POLICY", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    assert main(["review", "weekly", "--week", WEEK.label, "--database", database, "--output", "w.md",
                 "--html", "w.html"]) == 0
    text = (tmp_path / "w.md").read_text()
    headings = re.findall(r"^## \d+\. (.+)$", text, re.MULTILINE)
    assert headings == list(weekly.AGENDA)
    assert "Not available yet" in text  # no alert engine has written alert_events in this database
    assert "exception expires | steady | review date 2026-12-20" in text  # within the horizon
    for model in ("big-model", "small-model"):  # the seeded calls carry price version 'test'
        assert f"| re-priced | openai {model} | calls were priced with test; today's prices are genai-prices-" in text
    for item in _build(chdb_client, database):
        assert f"| {item.kind} | {item.subject} |" in text
    page = (tmp_path / "w.html").read_text()
    assert external_references(page) == []
    assert page.count('class="chart"') == 3  # zones, cost trends, backlog
    assert "Plotly.newPlot" in page


def test_the_weekly_page_draws_its_charts_in_a_browser_without_a_request_or_an_error(
        chdb_client, chdb_path, database, seeded, tmp_path, monkeypatch, tab):
    """Debian's chromium (the dashboard tests' browser): every chart drawn, series and points as seeded."""
    (tmp_path / "otel-margin.toml").write_text(POLICY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTEL_MARGIN_POLICY", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    assert main(["review", "weekly", "--week", WEEK.label, "--database", database, "--output", "w.md",
                 "--html", "w.html"]) == 0
    tab.page.goto((tmp_path / "w.html").as_uri())
    tab.page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 3", timeout=90_000)
    drawn = tab.page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.chart')].map(
        (div) => [div.id, div.data.map((t) => [t.name, t.x.length, t.y.filter((y) => y !== null).length])]))""")
    features = sorted(TREND_FACTORS)
    items = len(_build(chdb_client, database))
    assert drawn["chart-1"] == [["2026-W48", 3, 3], ["2026-W49", 3, 3], ["floor", 3, 3]]
    assert drawn["chart-3"] == [[feature, 4, 4] for feature in features]
    assert drawn["chart-5"] == [["USD per quarter", min(items, 10), min(items, 10)]]
    tab.check_clean(allowed_prefixes=("file://",))
    ARTIFACTS.mkdir(exist_ok=True)
    tab.page.screenshot(path=str(ARTIFACTS / "review-weekly.png"), full_page=True)


def test_the_quarterly_review_has_every_agenda_section(chdb_client, chdb_path, database, seeded, tmp_path,
                                                       monkeypatch, capsys):
    (tmp_path / "otel-margin.toml").write_text(POLICY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTEL_MARGIN_POLICY", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    capsys.readouterr()
    assert main(["review", "quarterly", "--quarter", "2026-Q4", "--database", database, "--html", "q.html"]) == 0
    text = capsys.readouterr().out
    assert re.findall(r"^## \d+\. (.+)$", text, re.MULTILINE) == list(quarterly.AGENDA)
    assert "| openai | big-model |" in text and "| openai | small-model |" in text
    assert external_references((tmp_path / "q.html").read_text()) == []


def test_quarterly_structural_gap_matches_the_weekly_rule_over_the_quarter(chdb_client, database, seeded):
    quarter = periods.quarter("2026-Q4")
    policy = parse_policy(POLICY)
    gaps = backlog.structural_gaps(chdb_client, start=quarter.start, end=quarter.end, floors=Floors(policy),
                                   database=database)
    rows = [r for r in seeded if quarter.start <= r["timestamp"].date() <= quarter.end]
    revenue = sum(Fraction(r["revenue_usd"] or 0) for r in rows if r["feature"] == "rising")
    cost = sum(Fraction(r["cost_usd"] or 0) for r in rows if r["feature"] == "rising")
    assert [g.feature for g in gaps] == ["rising"]
    assert _close(gaps[0].gap_usd, revenue * FLOORS["rising"] / 100 - (revenue - cost))


def test_quarterly_guardrails_crossover_and_model_trends_equal_an_independent_computation(chdb_client, database,
                                                                                          seeded):
    from otel_margin.analysis.reviews.figures import points, usd

    quarter = periods.quarter("2026-Q4")
    moment = datetime(2026, 12, 2, 10, tzinfo=timezone.utc)
    guarded = [call(timestamp=moment + timedelta(minutes=i), feature="steady", customer="c1", cost_usd=Decimal(0),
                    cache_result="exact", saved_usd=Decimal("0.0125") * (i + 1), cache_cost_usd=Decimal("0.001"),
                    response_model="big-model", revenue_usd=None) for i in range(3)]
    guarded.append(call(timestamp=moment, feature="rising", customer="c2", cost_usd=Decimal("0.002"),
                        route_from_model="big-model", saved_usd=Decimal("0.03"), response_model="small-model"))
    insert_calls(chdb_client, database, guarded)
    rows = [r for r in seeded + guarded if quarter.start <= r["timestamp"].date() <= quarter.end]
    policy = parse_policy(POLICY.replace(f"small_output_tokens = {SMALL}",
                                         f'small_output_tokens = {SMALL}\nself_hosting_monthly_usd = "1"'))
    review = quarterly.quarterly_review(chdb_client, quarter, policy=policy,
                                        catalog=PriceCatalog(policy, log_unpriced=False),
                                        settings=ReviewSettings.from_policy(policy), database=database)
    sections = dict(zip(quarterly.AGENDA, review.sections))

    revenue = sum(Fraction(r["revenue_usd"] or 0) for r in rows)
    saved = sum(Fraction(r["saved_usd"]) - Fraction(r["cache_cost_usd"]) for r in rows if r["cache_result"] == "exact")
    saved += sum(Fraction(r["saved_usd"]) for r in rows if r["route_from_model"])
    as_decimal = lambda f: Decimal(f.numerator) / Decimal(f.denominator)  # noqa: E731
    text = sections["P&L impact of guardrails"].text[0]
    assert text.startswith(f"Saved {usd(as_decimal(saved))} in the quarter: {points(as_decimal(saved * 100 / revenue))}")

    spend: dict[str, Fraction] = defaultdict(Fraction)
    for r in rows:
        if r["timestamp"].month in (10, 11, 12) and r["cost_usd"] is not None:
            spend[f"openai {r['response_model']}"] += Fraction(r["cost_usd"])
    crossover = {row[0]: row for row in sections["Self-hosting crossover per model class"].table.rows}
    assert set(crossover) == set(spend)
    for name, total in spend.items():
        assert crossover[name][1] == usd(as_decimal(total / 3))
        assert crossover[name][4].startswith("above the threshold" if total / 3 >= 1 else "below the threshold")
    assert any(row[4].startswith("above") for row in crossover.values())

    monthly: dict[str, dict[int, list[Fraction]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["cost_usd"] is not None:
            monthly[r["response_model"]][r["timestamp"].month].append(Fraction(r["cost_usd"]))
    trends = {row[1]: row for row in sections["Cost trend per provider and model (12 months)"].table.rows}
    for model, months in monthly.items():
        per_request = [(index, (sum(months[m]) / len(months[m])) if months.get(m) else None)
                       for index, m in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])]
        known = [(x, y) for x, y in per_request if y is not None]
        mean_x = Fraction(sum(x for x, _ in known), len(known))
        mean_y = sum(y for _, y in known) / len(known)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in known) / sum((x - mean_x) ** 2 for x, _ in known)
        relative = slope / mean_y * 100
        expected = "degrading" if relative > 5 else "improving" if relative < -5 else "stable"
        assert trends[model][-1] == expected, model
        assert trends[model][2] == usd(as_decimal(sum(sum(v) for v in months.values())))


def test_alerts_section_reads_the_alert_history_and_says_whether_each_cleared(chdb_client, database):
    from otel_margin.analysis.alerts.events import ensure_table

    ensure_table(chdb_client, database=database)  # the alert engine's own table
    fired = datetime(2026, 12, 1, 8, tzinfo=timezone.utc)
    columns = ["event_id", "rule", "severity", "feature", "customer", "value", "threshold", "fired_at", "closed_at",
               "due", "delivered", "version"]
    hour = timedelta(hours=1)

    def alert(event, feature, customer, at, closed, delivered=False):
        return [event, "cost_spike", "red", feature, customer, 0.3, 0.15, at, closed, ["slack"],
                {"slack": at} if delivered else {}, 1]

    chdb_client.insert(f"`{database}`.alert_events", [
        alert("a0", "search", "", fired - timedelta(days=7), fired - timedelta(days=6)),  # last week, cleared
        alert("a1", "search", "", fired, fired + 24 * hour, delivered=True),  # cleared
        alert("b1", "docs", "", fired + 2 * hour, fired + 5 * hour),  # closed because it fired again:
        alert("b2", "docs", "", fired + 5 * hour, None),  # the newer row, still open
        alert("c1", "docs", "acme", fired + 6 * hour, None),
        alert("c2", "docs", "globex", fired + 7 * hour, None),
    ], column_names=columns)
    section = weekly.alerts_section(chdb_client, WEEK, database=database)
    assert [(row[3], row[4], row[8], row[9]) for row in section.table.rows] == [
        ("search", "", "cleared 2026-12-02 08:00", "1 of 1"),
        ("docs", "", "fired again 2026-12-01 13:00", "0 of 1"),
        ("docs", "", "still open", "0 of 1"),
        ("docs", "acme", "still open", "0 of 1"),
        ("docs", "globex", "still open", "0 of 1"),
    ]
    assert [note.split(":")[0] for note in section.notes] == ["cost_spike fired 5 times"]


# --- no store: rendering, periods, the trend rule -------------------------------------------------

_names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "action", "data", "poster", "srcset", "formaction") and value is not None:
                self.found.append(f"{tag}.{name}={value}")


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.inside = False

    def handle_starttag(self, tag, attrs):
        self.inside = tag == "td"

    def handle_endtag(self, tag):
        self.inside = False

    def handle_data(self, data):
        if self.inside:
            self.found.append(data)


def external_references(page: str) -> list[str]:
    """Every attribute that would make the browser load something, and any CSS url() or @import."""
    parser = _References()
    parser.feed(page)
    styles = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    return parser.found + [m for css in styles for m in re.findall(r"url\(|@import", css)]


@settings(max_examples=100, deadline=None)
@given(names=st.lists(_names, min_size=1, max_size=5))
def test_names_from_outside_never_break_the_markdown_table_or_the_html(names):
    table = Table(("feature", "value"), tuple((name, "·v·") for name in names))
    review = Review("T", ("s",), (Section("one", table=table, chart=Chart("bar", "c", tuple(names),
                                                                          (("s", tuple(1.0 for _ in names)),), "y")),))
    lines = [line for line in markdown(review).splitlines() if line.startswith("| ")]
    assert len(lines) == len(names) + 1
    for line in lines:
        assert len(re.findall(r"(?<!\\)\|", line.replace("\\\\", ""))) == 3  # 2 columns: 3 unescaped pipes
    page = render_html(review)
    assert page.count("</script>") == 2  # plotly.js, the charts: no name ends a script
    head, body = page.split("</head>", 1)  # the head is the fixed part: plotly.js and the style
    assert external_references(body) == []
    cells = _Cells()
    cells.feed(body)
    assert cells.found == [cell for name in names for cell in ([name] if name else []) + ["·v·"]]  # text, not markup


@settings(max_examples=200, deadline=None)
@given(day=st.dates(min_value=date(1, 4, 1), max_value=date(9998, 12, 20)))
def test_weeks_and_quarters_parse_and_contain_their_days(day):
    week = periods.week_of(day)
    assert periods.iso_week(week.label) == week and week.start <= day <= week.end and week.days == 7
    assert week.start.weekday() == 0
    assert periods.last_complete_week(day).end < day <= periods.last_complete_week(day).end + timedelta(days=7)
    q = periods.quarter_of(day)
    assert periods.quarter(q.label) == q and q.start <= day <= q.end and 90 <= q.days <= 92
    assert periods.last_complete_quarter(day).end == q.start - timedelta(days=1)


@given(text=st.text(max_size=12))
def test_a_bad_week_or_quarter_is_a_value_error_naming_it(text):
    for parse in (periods.iso_week, periods.quarter):
        try:
            parse(text)
        except ValueError as error:
            assert repr(text)[1:-1] in str(error) or text.strip() in str(error)


@given(values=st.lists(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(100), places=4), min_size=2,
                       max_size=12),
       scale=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1000), places=2))
def test_the_trend_label_ignores_the_unit_and_flips_when_time_runs_backwards(values, scale):
    forward = label_trend(list(enumerate(values)))
    assert label_trend([(x, y * scale) for x, y in enumerate(values)]).label == forward.label
    backward = label_trend(list(enumerate(reversed(values)))).label
    assert backward == {"improving": "degrading", "degrading": "improving"}.get(forward.label, forward.label)


def test_review_settings_come_from_the_policy_file_and_bad_ones_name_their_line():
    from otel_margin.policy import PolicyError

    settings_ = ReviewSettings.from_policy(parse_policy(
        '[reviews]\nsmall_output_tokens = 64\ntrend_threshold_pct = 7.5\nself_hosting_monthly_usd = "20000"\n'))
    assert settings_ == ReviewSettings(64, Decimal("7.5"), Decimal(20000))
    assert ReviewSettings.from_policy(parse_policy("")) == ReviewSettings()
    with pytest.raises(PolicyError, match=r"line 2.*small_output_tokens.*at least 1"):
        parse_policy("[reviews]\nsmall_output_tokens = 0\n")


def test_an_empty_store_gives_every_section_saying_so(chdb_client, database):
    """A database with the schema and no calls: both reviews render, each section says there is nothing."""
    policy = parse_policy("")
    common = {"policy": policy, "catalog": PriceCatalog(policy, log_unpriced=False), "settings": ReviewSettings(),
              "database": database}
    week = markdown(weekly.weekly_review(chdb_client, WEEK, **common))
    assert "No calls and no revenue recorded in this week." in week
    assert "Nothing upcoming." in week and "Nothing to recover on these estimates." in week
    assert week.count("(none)") == 2  # zones and trends: no rows
    q = markdown(quarterly.quarterly_review(chdb_client, periods.quarter("2026-Q4"), **common))
    assert "No feature is structurally below its floor." in q and "No guardrail reported anything" in q
    assert re.findall(r"^## \d+\. (.+)$", q, re.MULTILINE) == list(quarterly.AGENDA)


def test_the_command_names_a_bad_week_and_an_empty_database(chdb_path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    with pytest.raises(SystemExit):
        main(["review", "weekly", "--week", "2026-W54"])
    assert "2026 has weeks W01 to W53" in capsys.readouterr().err
    assert main(["review", "quarterly", "--database", "nothing_here"]) == 1
    assert "no LLM calls recorded yet in database 'nothing_here'" in capsys.readouterr().err
