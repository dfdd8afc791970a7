"""The method's worked examples (issue 15, "How it is checked"), through public interfaces only.

Each example is built the way a user builds it: real ``openai`` SDK calls to the stand-in inside
``attribute()`` and ``unit()``, ``outcome()`` for what a unit achieved, prices from the policy
file, spans through the real ClickHouse exporter into chDB, revenue and fixed costs through
``otel-margin revenue import`` / ``otel-margin costs import``; the figures are read back from
:func:`otel_margin.analysis.waterfall.waterfall`.

Exact costs come from the policy: the stand-in's models are priced as self-hosted models,
input free and output at a round price per token, and ``x-standin-output-tokens`` sets each
call's output tokens, so a call's cost is chosen in whole cents (``docs-model``: $0.01 per output
token) or dollars (``dev-model``: $1). Each test's docstring derives the inputs from the figure.
The expected margin is the arithmetic on those inputs (``(revenue − cost) / revenue``,
truncated to 12 places like the product's own percentages), never a number read from the product.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Iterator

import clickhouse_connect
import openai
import pytest

from otel_margin import attribute, outcome, schema, unit
from otel_margin import attributes as a
from otel_margin.analysis.margin import margin_pct
from otel_margin.analysis.waterfall import waterfall
from otel_margin.cli import main
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.policy import load_policy
from otel_margin.prices import set_catalog
from otel_margin.standin import OUTPUT_TOKENS_HEADER, SCENARIO_HEADER, openai_client

from conftest import instrumentation

POLICY = """
[prices.self_hosted."docs-model"]
input_per_mtok = "0"
output_per_mtok = "10000"          # $0.01 per output token

[prices.self_hosted."dev-model"]
input_per_mtok = "0"
output_per_mtok = "1000000"        # $1 per output token

[prices.self_hosted."embed-model"]
input_per_mtok = "10000"           # $0.01 per input token
output_per_mtok = "0"

[features.support.outcome_prices]
resolved = "2.00"
resolved_complex = "5.00"
"""
MESSAGES = [{"role": "user", "content": "Work on it."}]


class World:
    """One example's world: instrumented SDK calls, the store they are exported to, imports."""

    def __init__(self, server: Any, sink: Any, path: str, tmp_path: Any) -> None:
        self.sdk = openai_client(server)
        self.sink, self.path, self.tmp_path = sink, path, tmp_path
        self.database = schema.DEFAULT_DATABASE
        self.policy = load_policy()
        self.first_day: date | None = None
        self.client: Any = None

    def call(self, tokens: int, model: str = "docs-model", *, fail: bool = False) -> None:
        """One chat call whose cost is ``tokens`` output tokens at ``model``'s policy price."""
        headers = {OUTPUT_TOKENS_HEADER: str(tokens)}
        if fail:
            headers[SCENARIO_HEADER] = "error-500"
        self.sdk.chat.completions.create(model=model, messages=MESSAGES, extra_headers=headers)

    def embed(self, text: str) -> None:
        self.sdk.embeddings.create(model="embed-model", input=text)

    def store(self) -> list[Any]:
        """Export every span recorded so far into the test's database; the spans."""
        spans = self.sink.spans()
        exporter = ClickHouseSpanExporter(endpoint=f"chdb://{self.path}", database=self.database,
                                          spool_dir=str(self.tmp_path / "spool"), drain_interval=0.1)
        exporter.export(spans)
        exporter.shutdown()
        # chDB: one directory per process; the exporter has let go of it, the reader takes it.
        self.client = clickhouse_connect.get_client(interface="chdb", path=self.path)
        days = {datetime.fromtimestamp(s.start_time / 1e9, timezone.utc).date() for s in spans}
        self.first_day = min(days)
        assert {d.replace(day=1) for d in days} == {self.first_day.replace(day=1)}  # one calendar month
        return spans

    @property
    def month(self) -> str:
        assert self.first_day is not None
        return self.first_day.strftime("%Y-%m")

    def import_file(self, what: str, text: str) -> None:
        path = self.tmp_path / f"{what}.csv"
        path.write_text(text)
        assert main([what, "import", str(path), "--database", self.database]) == 0

    def waterfall(self, level: str, **options: Any) -> dict[str, Any]:
        assert self.first_day is not None
        start = self.first_day.replace(day=1)
        end = start.replace(day=calendar.monthrange(start.year, start.month)[1])
        rows = waterfall(self.client, level=level, start=start, end=end, policy=self.policy,
                         database=self.database, **options)
        return {row.key: row for row in rows}


@pytest.fixture
def world(standin_server, otel, tmp_path, monkeypatch) -> Iterator[World]:
    policy = tmp_path / "otel-margin.toml"
    policy.write_text(POLICY)
    path = str(tmp_path / "chdb")
    monkeypatch.setenv("OTEL_MARGIN_POLICY", str(policy))
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{path}")
    otel.clear()
    set_catalog(None)  # the process-wide catalog is built once: rebuild it from this example's policy
    try:
        with instrumentation(otel):
            world = World(standin_server, otel, path, tmp_path)
            try:
                yield world
            finally:
                if world.client is not None:
                    world.client.close()
    finally:
        set_catalog(None)  # and leave no example's prices to the tests after it


def percent(revenue: Decimal, cost: Decimal) -> Decimal:
    """The expected margin: plain arithmetic on the example's inputs."""
    result = margin_pct(revenue, cost)
    assert result is not None
    return result


def test_document_analysis_typical_customer_94_and_heavy_cohort_minus_41(world):
    """$99 per seat per month. A typical customer analyses 50 documents at $0.12 on average
    ($0.10 and $0.14 alternating: 10 and 14 output tokens at $0.01): $6.00, so (99 − 6) / 99 =
    93.94 % (the method's 94 %). The heavy cohort's customer analyses 400 at $0.35 ($0.30 and
    $0.40): $140, so (99 − 140) / 99 = −41.41 % (the method's −41 %). One document is one unit.
    """
    for customer, cohort, documents, costs in (("typical", "2026-steady", 50, (10, 14)),
                                               ("heavy", "2026-heavy", 400, (30, 40))):
        with attribute(feature="document-analysis", customer=customer, tier="seat", cohort=cohort):
            for n in range(documents):
                with unit("document"):
                    world.call(costs[n % 2])
    world.store()
    world.import_file("revenue", f"customer,period,amount,currency,tier\ntypical,{world.month},99.00,USD,seat\n"
                                 f"heavy,{world.month},99.00,USD,seat\n")
    customers = world.waterfall("customer")
    typical, heavy = customers["typical"], customers["heavy"]
    assert (typical.inference_usd, typical.revenue_usd) == (Decimal("6.00"), Decimal("99.00"))
    assert typical.gross_margin_pct == percent(Decimal(99), Decimal(6))
    assert round(typical.gross_margin_pct) == 94
    cohorts = world.waterfall("cohort")
    assert cohorts["2026-heavy"].inference_usd == Decimal(140)
    assert cohorts["2026-heavy"].gross_margin_pct == percent(Decimal(99), Decimal(140)) == heavy.gross_margin_pct
    assert round(cohorts["2026-heavy"].gross_margin_pct) == -41
    # One feature, one seat each: the subscription follows the customer, whatever the rule.
    assert world.waterfall("unit_kind")["document"].calls == 450


def test_support_agent_outcome_pricing_77_5_blended_64_and_complex_64_at_5(world):
    """$2 per resolved ticket, three LLM calls per ticket.

    * A simple ticket costs $0.45 (3 calls of 15 output tokens at $0.01): (2 − 0.45) / 2 = 77.5 %.
      Revenue rides on the outcome, once per ticket: with usage revenue on each call a ticket
      would book $6 (92.5 %). A failed provider call inside a ticket earns nothing and, with no
      usage reported, costs nothing; a failed ticket earns nothing.
    * Blended: 20 % complex resolutions costing $1.80 (3 calls of 60 tokens) still at $2:
      cost 0.8 × 0.45 + 0.2 × 1.80 = $0.72 per ticket, (2 − 0.72) / 2 = 64 %.
    * A complex resolution priced at $5 (status ``resolved_complex``): (5 − 1.80) / 5 = 64 %.
    """
    def ticket(customer: str, tokens: int, status: str, *, failed_call: bool = False) -> None:
        with attribute(feature="support", customer=customer, tier="pro"), unit("ticket"):
            if failed_call:
                with pytest.raises(openai.InternalServerError):
                    world.call(tokens, fail=True)
            for _ in range(3):
                world.call(tokens)
            outcome(status)

    for n in range(10):
        ticket("simple-co", 15, "resolved", failed_call=n == 0)
    for n in range(10):
        ticket("blended-co", 60 if n < 2 else 15, "resolved")
    for _ in range(4):
        ticket("complex-co", 60, "resolved_complex")
    ticket("failed-co", 15, "failed")
    world.store()
    customers = world.waterfall("customer")

    simple = customers["simple-co"]
    assert (simple.outcome_revenue_usd, simple.usage_revenue_usd, simple.revenue_usd) == (Decimal(20), 0, Decimal(20))
    assert (simple.calls, simple.error_calls, simple.inference_usd) == (31, 1, Decimal("4.50"))
    assert simple.gross_margin_pct == percent(Decimal(20), Decimal("4.50")) == Decimal("77.5")
    assert percent(Decimal(60), Decimal("4.50")) == Decimal("92.5")  # what revenue per call would have read

    blended = customers["blended-co"]
    assert (blended.revenue_usd, blended.inference_usd) == (Decimal(20), Decimal("7.20"))
    assert blended.gross_margin_pct == percent(Decimal(20), 8 * Decimal("0.45") + 2 * Decimal("1.80")) == Decimal(64)

    complex_ = customers["complex-co"]
    assert (complex_.revenue_usd, complex_.inference_usd) == (Decimal(20), Decimal("7.20"))
    assert complex_.gross_margin_pct == percent(Decimal(5), Decimal("1.80")) == Decimal(64)

    failed = customers["failed-co"]
    assert (failed.revenue_usd, failed.inference_usd, failed.gross_margin_pct) == (0, Decimal("0.45"), None)


def test_developer_tools_pro_margin_69_with_gpu_hosting_and_the_effective_margin_is_62_67(world):
    """A developer-tools product. Its pro tier earns $22,500 a month and makes $4,200 of API
    calls; a self-hosted model's GPUs cost $2,800 a month (imported as a period cost of the pro
    tier). The free tier makes $1,400 of API calls and earns nothing.

    * Pro without the hosting (what a per-call report shows): (22,500 − 4,200) / 22,500 = 81.33 %
      (the method's 81 %); with it: (22,500 − 7,000) / 22,500 = 68.89 % (the method's 69 %).
      $22,500 is the revenue at which both stated figures hold.
    * The product as a whole carries the free tier: (22,500 − 8,400) / 22,500 = 62.67 %. The
      method calls its effective margin 59 %, which its own figures do not give (59 % would need
      $9,225 of cost of goods); docs/margin.md says so.

    Calls cost $1 per output token: 42 pro calls of 100 tokens = $4,200, 14 free calls = $1,400.
    """
    for n in range(42):
        with attribute(feature="code-explain", customer=f"pro-{n % 3}", tier="pro"), unit("explanation"):
            world.call(100, model="dev-model")
    for n in range(14):
        with attribute(feature="code-explain", customer=f"free-{n % 7}", tier="free"), unit("explanation"):
            world.call(100, model="dev-model")
    world.store()
    world.import_file("revenue", "customer,period,amount,currency,tier\n" + "".join(
        f"pro-{n},{world.month},7500.00,USD,pro\n" for n in range(3)))
    tiers_before = world.waterfall("tier")
    world.import_file("costs", f"period,amount,category,feature,customer,tier\n{world.month},2800.00,infrastructure,,,pro\n")
    tiers = world.waterfall("tier")

    revenue = Decimal(22500)
    assert tiers_before["pro"].gross_margin_pct == percent(revenue, Decimal(4200))
    assert round(tiers_before["pro"].gross_margin_pct) == 81
    pro = tiers["pro"]
    assert (pro.revenue_usd, pro.inference_usd, pro.infrastructure_usd) == (revenue, Decimal(4200), Decimal(2800))
    assert pro.gross_margin_pct == percent(revenue, Decimal(7000))
    assert round(pro.gross_margin_pct) == 69
    assert tiers["free"].infrastructure_usd == 0 and tiers["free"].inference_usd == Decimal(1400)

    (product,) = world.waterfall("all").values()
    assert product.cost_usd == Decimal(8400)
    assert product.gross_margin_pct == percent(revenue, Decimal(8400))
    assert product.gross_margin_pct.quantize(Decimal("0.01")) == Decimal("62.67")
    assert percent(revenue, Decimal(9225)) == Decimal(59)  # what the method's 59 % would need


def test_bundled_subscription_is_split_60_40_by_share_of_inference_calls(world):
    """A $100 bundle without a feature; the customer made 6 inference calls in ``chat`` and 4 in
    ``search`` (plus 3 embedding calls in ``search``, which are orchestration and not inference
    calls): chat gets $60, search $40. Search's calls cost more (20 tokens against 5), so by call
    share search shows the lower margin; split by cost instead, every feature shows the same
    margin %, the sign of blended revenue the method warns about.
    """
    with attribute(customer="bundle-co", tier="team"):
        with attribute(feature="chat"):
            for _ in range(6):
                world.call(5)
        with attribute(feature="search"):
            for text in ("alpha", "beta gamma", "delta"):
                world.embed(text)
            for _ in range(4):
                world.call(20)
    spans = world.store()
    world.import_file("revenue", f"customer,period,amount,currency,tier\nbundle-co,{world.month},100.00,USD,team\n")
    embeddings = sum(Decimal(s.attributes[a.MARGIN_COST_USD]) for s in spans
                     if s.attributes.get(a.GEN_AI_OPERATION_NAME) == "embeddings")
    assert embeddings > 0

    features = world.waterfall("feature")
    chat, search = features["chat"], features["search"]
    assert (chat.subscription_revenue_usd, search.subscription_revenue_usd) == (Decimal(60), Decimal(40))
    assert (chat.inference_calls, search.inference_calls, search.calls) == (6, 4, 7)
    assert (chat.inference_usd, search.inference_usd) == (Decimal("0.30"), Decimal("0.80"))
    assert (chat.orchestration_usd, search.orchestration_usd) == (0, embeddings)
    assert search.gross_margin_pct == percent(Decimal(40), Decimal("0.80") + embeddings) < chat.gross_margin_pct
    assert chat.gross_margin_pct == percent(Decimal(60), Decimal("0.30"))

    by_cost = world.waterfall("feature", allocate_by="cost")
    assert abs(by_cost["chat"].gross_margin_pct - by_cost["search"].gross_margin_pct) < Decimal("1e-9")
