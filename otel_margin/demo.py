"""The demo workload: real SDK calls against the local stand-in, through the plugin host.

A small SaaS with six LLM features, a dozen customers on three pricing tiers, OpenAI and
Anthropic models, streaming and not, prompt caching, reasoning, and the odd provider
error; support tickets and analysed documents are units of work (a ticket's outcome earns its
revenue), with a retrieval cost line per document and a day of fixed hosting and review costs. Every call goes through the real ``openai`` / ``anthropic`` SDKs over HTTP to
:class:`~otel_margin.standin.StandInServer`, instrumented by otel-margin, so what the demo
prints is what a real service would record.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterator

from opentelemetry.sdk.trace import SpanProcessor

from otel_margin import attribute, outcome, record_cost, unit

DAILY_SUBSCRIPTION = {"pro": Decimal("0.08"), "enterprise": Decimal("0.30")}
"""Subscription revenue per customer for the demo's one day, by tier (free tiers pay nothing).

A real month of subscription revenue against a few hundred demo calls would show 99.9%
margins everywhere; the demo scales revenue to its workload so the margin is interesting.
"""

VECTOR_QUERY_USD = Decimal("0.0004")
"""What the demo's vector database charges per query (a cost line in orchestration)."""

DAILY_PERIOD_COSTS = (
    ("infrastructure", "doc-analysis", Decimal("0.40")),  # the GPU box behind document analysis
    ("support", "support-bot", Decimal("0.25")),  # human review of escalated tickets
)
"""Fixed costs of the demo's one day, imported with ``otel-margin costs import``."""

CUSTOMERS = (
    ("acme", "enterprise", "2026-07"),
    ("globex", "enterprise", "2026-08"),
    ("initech", "pro", "2026-08"),
    ("umbrella", "pro", "2026-09"),
    ("hooli", "pro", "2026-09"),
    ("stark", "pro", "2026-10"),
    ("wayne", "free", "2026-10"),
    ("wonka", "free", "2026-10"),
    ("tyrell", "pro", "2026-11"),
    ("cyberdyne", "free", "2026-11"),
    ("soylent", "pro", "2026-11"),
    ("massive-dynamic", "enterprise", "2026-11"),
)


@dataclass(frozen=True, slots=True)
class Feature:
    """One LLM feature of the demo product and how it calls its model."""

    name: str
    weight: int
    run: Callable[[Any, Any, random.Random], None]
    revenue_per_call: Decimal | None = None


def run_workload(openai_client: Any, anthropic_client: Any, *, calls: int, seed: int = 7) -> Iterator[str]:
    """Serve ``calls`` user requests (one LLM call each, a support ticket one to three); yields
    each request's feature name as it completes (for progress)."""
    rng = random.Random(seed)
    features = FEATURES
    weights = [feature.weight for feature in features]
    clients = {"openai": openai_client, "anthropic": anthropic_client}
    for _ in range(calls):
        customer, tier, cohort = rng.choice(CUSTOMERS)
        feature = rng.choices(features, weights)[0]
        with attribute(
            feature=feature.name,
            customer=customer,
            tier=tier,
            cohort=cohort,
            revenue_usd=feature.revenue_per_call,
        ):
            try:
                feature.run(clients, tier, rng)
            except Exception as error:  # noqa: BLE001 - provider errors are part of the demo
                if type(error).__module__.split(".")[0] not in ("openai", "anthropic"):
                    raise
        yield feature.name


def revenue_csv(day: str) -> str:
    """The demo's subscription revenue for ``day`` (``YYYY-MM-DD``) as a revenue-import CSV."""
    lines = ["customer,period,amount,currency,tier"]
    for customer, tier, _cohort in CUSTOMERS:
        if tier in DAILY_SUBSCRIPTION:
            lines.append(f"{customer},{day}..{day},{DAILY_SUBSCRIPTION[tier]},USD,{tier}")
    return "\n".join(lines) + "\n"


def costs_csv(day: str) -> str:
    """The demo's fixed costs for ``day`` (``YYYY-MM-DD``) as a cost-import CSV."""
    lines = ["period,amount,category,feature"]
    lines += [f"{day}..{day},{amount},{category},{feature}" for category, feature, amount in DAILY_PERIOD_COSTS]
    return "\n".join(lines) + "\n"


def _headers(rng: random.Random, output_tokens: int, *scenarios: str) -> dict[str, str]:
    headers = {"x-standin-output-tokens": str(max(1, int(rng.gauss(output_tokens, output_tokens / 4))))}
    picked = [s for s in scenarios if s]
    if rng.random() < 0.02:
        picked.append("error-429")
    if picked:
        headers["x-standin-scenario"] = ",".join(picked)
    return headers


def _summarize(clients: dict[str, Any], tier: str, rng: random.Random) -> None:
    model = "gpt-4o-mini" if tier != "enterprise" else "gpt-4o"
    document = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(300, 1200)))
    stream = clients["openai"].chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Summarize the document in five bullet points."},
            {"role": "user", "content": document},
        ],
        stream=True,
        extra_headers=_headers(rng, 180),
    )
    for _chunk in stream:
        pass


def _assistant(clients: dict[str, Any], tier: str, rng: random.Random) -> None:
    system = [{"type": "text", "text": _PLAYBOOK, "cache_control": {"type": "ephemeral"}}]
    question = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(10, 60)))
    with clients["anthropic"].messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        system=system,
        messages=[{"role": "user", "content": question}],
        extra_headers=_headers(rng, 350),
    ) as stream:
        for _text in stream.text_stream:
            pass


def _doc_analysis(clients: dict[str, Any], tier: str, rng: random.Random) -> None:
    document = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2000, 6000)))
    with unit("document"):
        # Retrieval of the clauses to compare against: a vector-database query, priced per query.
        record_cost(VECTOR_QUERY_USD, "orchestration", description="vector search: similar clauses")
        clients["anthropic"].messages.create(
            model="claude-haiku-4-5",
            max_tokens=2048,
            messages=[{"role": "user", "content": f"Extract every obligation from this contract:\n{document}"}],
            extra_headers=_headers(rng, 600),
        )
        outcome("analysed")  # priced per analysed document in the policy


def _search(clients: dict[str, Any], tier: str, rng: random.Random) -> None:
    queries = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 30))) for _ in range(rng.randint(1, 8))]
    clients["openai"].embeddings.create(model="text-embedding-3-small", input=queries)


def _support_bot(clients: dict[str, Any], tier: str, rng: random.Random) -> None:
    # A ticket is a unit of work: a draft, sometimes a revision, then its outcome. The policy
    # prices a resolved ticket (docs/margin.md); an escalated or failed one earns nothing.
    with unit("ticket"):
        ticket = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 200)))
        for attempt in range(rng.choice((1, 1, 2, 3))):
            clients["openai"].responses.create(
                model="o4-mini" if tier == "free" else "gpt-5",
                input=f"{'Revise' if attempt else 'Draft'} a reply to this support ticket:\n{ticket}",
                extra_headers=_headers(rng, 500, "reasoning", "cached" if rng.random() < 0.5 else ""),
            )
        roll = rng.random()
        outcome("resolved" if roll < 0.7 else "escalated" if roll < 0.9 else "failed")


_FAQ = (
    "How do I change the billing email on my account?",
    "What does the pro tier include?",
    "How do I export my invoices as CSV?",
    "Can I move seats between workspaces?",
    "Where do I find my API usage for this month?",
)


def _faq(clients: dict[str, Any], tier: str, rng: random.Random) -> None:
    # Customers ask the same few questions: identical requests (temperature 0, the same
    # output length) that the demo policy's exact cache answers after the first time.
    index = rng.randrange(len(_FAQ))
    clients["openai"].chat.completions.create(
        model="gpt-4o",
        temperature=0,
        messages=[
            {"role": "system", "content": "Answer from the help centre in two sentences."},
            {"role": "user", "content": _FAQ[index]},
        ],
        extra_headers={"x-standin-output-tokens": str(40 + 15 * index)},
    )


FEATURES = (
    Feature("summarize", 30, _summarize, revenue_per_call=Decimal("0.003")),  # usage-priced
    Feature("assistant", 25, _assistant),
    Feature("doc-analysis", 15, _doc_analysis),
    Feature("search", 20, _search),
    Feature("support-bot", 10, _support_bot),
    Feature("faq", 15, _faq),
)

POLICY = """
[features.support-bot.outcome_prices]   # revenue per ticket, by outcome (others earn 0)
resolved = "0.04"

[features.doc-analysis.outcome_prices]  # revenue per analysed document
analysed = "0.01"

[plugins.cache]
store = "memory"

[plugins.cache.features.faq]
ttl_seconds = 3600
scope = "customer"
"""
"""The demo's policy: the price of a resolved ticket (docs/margin.md) and the exact response
cache on the ``faq`` feature (docs/cache.md)."""

_WORDS = (
    "margin revenue invoice contract customer feature tier latency token cache model route budget "
    "quarter forecast churn cohort seat usage pricing discount renewal subscription analysis report "
    "policy obligation liability payment delivery warranty termination clause schedule service"
).split()
_PLAYBOOK = " ".join(_WORDS * 60)


class CostTally(SpanProcessor):
    """A span processor that adds up LLM spans' tokens and cost per feature and per customer.

    The demo's live view; the margin report proper comes from ClickHouse.
    """

    def __init__(self) -> None:
        self.by_feature: dict[str, dict[str, Any]] = {}
        self.by_customer: dict[str, dict[str, Any]] = {}

    def on_end(self, span: Any) -> None:
        from otel_margin import attributes as attr

        values = span.attributes or {}
        if attr.GEN_AI_OPERATION_NAME not in values:
            return
        for key, table in ((attr.MARGIN_FEATURE, self.by_feature), (attr.MARGIN_CUSTOMER, self.by_customer)):
            row = table.setdefault(
                str(values.get(key, attr.UNATTRIBUTED)),
                {"calls": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "cost": Decimal(0),
                 "unpriced": 0, "revenue": Decimal(0)},
            )
            row["calls"] += 1
            row["errors"] += 1 if attr.ERROR_TYPE in values else 0
            row["input_tokens"] += int(values.get(attr.GEN_AI_USAGE_INPUT_TOKENS, 0))
            row["output_tokens"] += int(values.get(attr.GEN_AI_USAGE_OUTPUT_TOKENS, 0))
            if attr.MARGIN_COST_USD in values:
                row["cost"] += Decimal(str(values[attr.MARGIN_COST_USD]))
            elif values.get(attr.MARGIN_COST_STATUS) == "unpriced":
                row["unpriced"] += 1
            if attr.MARGIN_REVENUE_USD in values and attr.ERROR_TYPE not in values:
                row["revenue"] += Decimal(str(values[attr.MARGIN_REVENUE_USD]))
