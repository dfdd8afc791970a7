"""The price catalog: exact components, catalog agreement, fallbacks, policy overrides, CLI."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal, localcontext

import genai_prices
import pytest
from genai_prices import data_snapshot
from genai_prices import types as catalog_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_margin import prices
from otel_margin.call import Usage
from otel_margin.cli import main
from otel_margin.environment_variables import OTEL_MARGIN_POLICY
from otel_margin.policy import parse_policy
from otel_margin.prices import CATALOG_VERSION, PriceCatalog, get_catalog, set_catalog

AT = datetime(2025, 6, 2, 12, 0, tzinfo=timezone.utc)
"""A fixed request time, so time-dependent catalog prices are the same on both sides."""

_TOKEN_KEYS = {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok"}


def _eligible_models(*, tiered: bool | None) -> list[tuple[str, str]]:
    """Catalog models priced only by the token components we compare (five, with 1h cache writes)."""
    found = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            model_price = model.get_prices(AT)
            keys = {k for k, v in model_price.__dict__.items() if v is not None}
            if not keys <= _TOKEN_KEYS or not {"input_mtok", "output_mtok"} <= keys:
                continue
            is_tiered = any(isinstance(model_price.__dict__[k], catalog_types.TieredPrices) for k in keys)
            try:  # a few catalog ids do not match their own match rules; neither side can price them
                data_snapshot.get_snapshot().find_provider_model(model.id, None, provider.id, None)
            except LookupError:
                continue
            if tiered is None or is_tiered == tiered:
                found.append((provider.id, model.id))
    return found


ALL_MODELS = _eligible_models(tiered=None)
UNTIERED_MODELS = _eligible_models(tiered=False)
TIERED_MODELS = _eligible_models(tiered=True)


@st.composite
def usages(draw: st.DrawFn, max_input: int = 400_000) -> Usage:
    """Consistent usage: cache reads + writes never exceed input, the 1h part of the writes never
    exceeds the writes, reasoning never exceeds output."""
    input_tokens = draw(st.integers(0, max_input))
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    cache_write_1h = draw(st.integers(0, cache_write))
    output_tokens = draw(st.integers(0, 100_000))
    reasoning = draw(st.integers(0, output_tokens))
    return Usage(input_tokens, output_tokens, cache_read, cache_write, reasoning, cache_write_1h_tokens=cache_write_1h)


def _has_one_hour_price(catalog: PriceCatalog, provider: str, model: str) -> bool:
    resolved = catalog.lookup(provider, model, at=AT)
    return resolved is not None and resolved.cache_write_1h is not None


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog(log_unpriced=False)


def test_catalog_has_enough_models_to_compare() -> None:
    assert len(ALL_MODELS) > 200 and len(TIERED_MODELS) > 10


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(ALL_MODELS), usage=usages())
def test_components_sum_to_total_exactly(catalog: PriceCatalog, model: tuple[str, str], usage: Usage) -> None:
    cost = catalog.price(*model, usage, at=AT)
    assert cost.status == "priced"
    assert cost.total == cost.input + cost.cache_read + cost.cache_write + cost.output + cost.other
    assert all(isinstance(part, Decimal) for part in (cost.total, cost.input, cost.output, cost.other))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(ALL_MODELS), usage=usages())
def test_agrees_with_genai_prices_calc_price(
    catalog: PriceCatalog, model: tuple[str, str], usage: Usage
) -> None:
    provider_id, model_id = model
    if not _has_one_hour_price(catalog, provider_id, model_id):
        # genai-prices bills 1h writes at the 5m price then; ours follows Anthropic's rule (tested below).
        usage = replace(usage, cache_write_1h_tokens=0)
    expected = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,  # the total, 1h included, as ours
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
        ),
        model_id,
        provider_id=provider_id,
        genai_request_timestamp=AT,
    ).total_price
    cost = catalog.price(provider_id, model_id, usage, at=AT)
    assert cost.total is not None
    assert abs(cost.total - expected) <= Decimal("1e-9"), (model, usage, cost, expected)


def test_agrees_with_genai_prices_for_every_eligible_model(catalog: PriceCatalog) -> None:
    usage = Usage(input_tokens=250_000, output_tokens=3_000, cache_read_tokens=40_000, cache_write_tokens=9_000)
    reference = genai_prices.Usage(
        input_tokens=250_000, output_tokens=3_000, cache_read_tokens=40_000, cache_write_tokens=9_000
    )
    one_hour = replace(usage, cache_write_1h_tokens=4_000)
    one_hour_reference = genai_prices.Usage(
        input_tokens=250_000, output_tokens=3_000, cache_read_tokens=40_000, cache_write_tokens=9_000,
        cache_write_1h_tokens=4_000,
    )
    with_one_hour_price = 0
    for provider_id, model_id in ALL_MODELS:
        expected = genai_prices.calc_price(
            reference, model_id, provider_id=provider_id, genai_request_timestamp=AT
        ).total_price
        assert catalog.price(provider_id, model_id, usage, at=AT).total == expected, (provider_id, model_id)
        if _has_one_hour_price(catalog, provider_id, model_id):
            with_one_hour_price += 1
            expected = genai_prices.calc_price(
                one_hour_reference, model_id, provider_id=provider_id, genai_request_timestamp=AT
            ).total_price
            assert catalog.price(provider_id, model_id, one_hour, at=AT).total == expected, (provider_id, model_id)
    assert with_one_hour_price >= 10  # the Anthropic models are among those compared


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(UNTIERED_MODELS), a=usages(), b=usages())
def test_cost_is_linear_in_tokens_for_untiered_models(
    catalog: PriceCatalog, model: tuple[str, str], a: Usage, b: Usage
) -> None:
    both = Usage(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.cache_read_tokens + b.cache_read_tokens,
        a.cache_write_tokens + b.cache_write_tokens,
        a.reasoning_tokens + b.reasoning_tokens,
        cache_write_1h_tokens=a.cache_write_1h_tokens + b.cache_write_1h_tokens,
    )
    cost_a, cost_b, cost_both = (catalog.price(*model, u, at=AT) for u in (a, b, both))
    assert cost_both.total == cost_a.total + cost_b.total
    assert cost_both.cache_read == cost_a.cache_read + cost_b.cache_read


def test_components_are_priced_separately(catalog: PriceCatalog) -> None:
    resolved = catalog.lookup("anthropic", "claude-3-5-sonnet-20241022")
    assert resolved is not None and resolved.cache_read is not None and resolved.cache_write is not None
    usage = Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=3_000, cache_write_tokens=1_000,
                  reasoning_tokens=500)
    cost = catalog.price("anthropic", "claude-3-5-sonnet-20241022", usage)
    mtok = Decimal(1_000_000)
    assert cost.input == 6_000 * resolved.input.base / mtok
    assert cost.cache_read == 3_000 * resolved.cache_read.base / mtok
    assert cost.cache_write == 1_000 * resolved.cache_write.base / mtok
    assert cost.output == 2_000 * resolved.output.base / mtok  # reasoning is inside output
    assert cost.other == 0
    assert (cost.price_source, cost.priced_as, cost.price_version) == ("catalog", "claude-3-5-sonnet", CATALOG_VERSION)


def test_cache_write_without_a_catalog_price_falls_back_to_input(catalog: PriceCatalog) -> None:
    resolved = catalog.lookup("openai", "gpt-4o")
    assert resolved is not None and resolved.cache_write is None
    cost = catalog.price("openai", "gpt-4o", Usage(input_tokens=1_000, cache_write_tokens=1_000))
    assert cost.cache_write == 1_000 * resolved.input.base / Decimal(1_000_000)
    assert cost.input == 0


def test_one_hour_cache_writes_are_priced_apart_at_the_catalog_price(catalog: PriceCatalog) -> None:
    resolved = catalog.lookup("anthropic", "claude-sonnet-4-5", at=AT)
    assert resolved is not None and resolved.cache_write is not None and resolved.cache_write_1h is not None
    assert (resolved.cache_write.base, resolved.cache_write_1h.base) == (Decimal("3.75"), Decimal("6"))
    usage = Usage(input_tokens=10_000, output_tokens=100, cache_write_tokens=4_000, cache_write_1h_tokens=1_000)
    cost = catalog.price("anthropic", "claude-sonnet-4-5", usage, at=AT)
    assert cost.cache_write == (3_000 * Decimal("3.75") + 1_000 * Decimal("6")) / 1_000_000
    assert cost.input == 6_000 * Decimal("3") / 1_000_000
    assert cost.price_source == "catalog"
    # Tiered like the rest: above 200k input tokens every 1h write costs the tier's price.
    above = catalog.price("anthropic", "claude-sonnet-4-5", replace(usage, input_tokens=250_000), at=AT)
    assert resolved.cache_write_1h.at(250_000) == Decimal("12")
    assert above.cache_write == (3_000 * resolved.cache_write.at(250_000) + 1_000 * Decimal("12")) / 1_000_000


def test_one_hour_cache_writes_without_a_one_hour_price_cost_twice_the_input_price(catalog: PriceCatalog) -> None:
    # Claude on Vertex AI: the catalog has a 5m cache-write price but no 1h one.
    resolved = catalog.lookup("google", "claude-3-5-sonnet", at=AT)
    assert resolved is not None and resolved.cache_write_1h is None
    assert (resolved.input.base, resolved.cache_write.base) == (Decimal("3"), Decimal("3.75"))
    usage = Usage(input_tokens=10_000, output_tokens=100, cache_write_tokens=4_000, cache_write_1h_tokens=1_000)
    cost = catalog.price("google", "claude-3-5-sonnet", usage, at=AT)
    # Anthropic's rule: 1h writes at 2x the input price ($6), the rest at the 5m write price.
    assert cost.cache_write == (3_000 * Decimal("3.75") + 1_000 * 2 * Decimal("3")) / 1_000_000
    assert cost.total == cost.input + cost.cache_read + cost.cache_write + cost.output + cost.other
    assert (cost.status, cost.price_source) == ("priced", "catalog" + prices.ONE_HOUR_WRITE_RULE)
    # Never silent, never an under-charge: more than genai-prices' 5m price for the 1h part.
    five_minute_only = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=10_000, output_tokens=100, cache_write_tokens=4_000,
                           cache_write_1h_tokens=1_000),
        "claude-3-5-sonnet", provider_id="google", genai_request_timestamp=AT,
    ).total_price
    assert cost.total - five_minute_only == 1_000 * (6 - Decimal("3.75")) / 1_000_000
    # Without 1h writes the rule is not used and not mentioned.
    plain = catalog.price("google", "claude-3-5-sonnet", replace(usage, cache_write_1h_tokens=0), at=AT)
    assert plain.price_source == "catalog"
    assert plain.cache_write == 4_000 * Decimal("3.75") / 1_000_000


def test_one_hour_rule_and_prices_take_the_contract_discount(catalog: PriceCatalog) -> None:
    policy = parse_policy(
        '[[prices.discounts]]\nprovider = "google"\npercent = 10\n\n'
        '[[prices.discounts]]\nprovider = "anthropic"\npercent = 20\n',
        source="acme.toml",
    )
    discounted = PriceCatalog(policy, log_unpriced=False)
    usage = Usage(input_tokens=10_000, output_tokens=100, cache_write_tokens=4_000, cache_write_1h_tokens=1_000)
    for provider, model, factor in [("google", "claude-3-5-sonnet", Decimal("0.9")),  # by the rule
                                    ("anthropic", "claude-sonnet-4-5", Decimal("0.8"))]:  # the catalog's 1h price
        listed = catalog.price(provider, model, usage, at=AT)
        paid = discounted.price(provider, model, usage, at=AT)
        assert paid.cache_write == listed.cache_write * factor
        assert paid.total == listed.total * factor
        assert paid.price_source == listed.price_source
    resolved = discounted.lookup("anthropic", "claude-sonnet-4-5", at=AT)
    assert resolved is not None and resolved.cache_write_1h is not None
    assert resolved.cache_write_1h.base == Decimal("6") * Decimal("0.8")


def test_policy_one_hour_cache_write_price_and_rule() -> None:
    policy = parse_policy(
        '[prices.models."claude-private"]\nprovider = "anthropic"\ninput_per_mtok = "1"\noutput_per_mtok = "5"\n'
        'cache_write_per_mtok = "1.25"\ncache_write_1h_per_mtok = "1.9"\n\n'
        '[prices.models."odd-cache"]\ninput_per_mtok = "1"\noutput_per_mtok = "5"\ncache_write_per_mtok = "3"\n',
        source="acme.toml",
    )
    catalog = PriceCatalog(policy, log_unpriced=False)
    usage = Usage(input_tokens=2_000_000, output_tokens=0, cache_write_tokens=2_000_000,
                  cache_write_1h_tokens=1_000_000)
    priced = catalog.price("anthropic", "claude-private", usage)
    assert (priced.cache_write, priced.price_source) == (Decimal("1.25") + Decimal("1.9"), "policy")
    # No 1h price and a 5m price above 2x input: 1h writes are never cheaper than 5m ones.
    odd = catalog.price("openai", "odd-cache", usage)
    assert (odd.cache_write, odd.price_source) == (Decimal("6"), "policy" + prices.ONE_HOUR_WRITE_RULE)


def test_tier_is_chosen_by_total_input_tokens_for_all_tokens(catalog: PriceCatalog) -> None:
    resolved = catalog.lookup("google", "gemini-2.5-pro")
    assert resolved is not None and resolved.input is not None and resolved.input.tiers
    tier = resolved.input.tiers[0]
    below = catalog.price("google", "gemini-2.5-pro", Usage(input_tokens=tier.start))
    above = catalog.price("google", "gemini-2.5-pro", Usage(input_tokens=tier.start + 1))
    assert below.input == tier.start * resolved.input.base / Decimal(1_000_000)
    assert above.input == (tier.start + 1) * tier.per_mtok / Decimal(1_000_000)


@pytest.mark.parametrize(
    ("provider", "model", "family", "matched_by"),
    [
        ("openai", "gpt-4o-2099-01-01", "gpt-4o", "date suffix stripped"),
        ("openai", "gpt-4o-mini-20990101", "gpt-4o-mini", "date suffix stripped"),
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini", "catalog alias"),
        ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet", "catalog alias"),
        ("anthropic", "claude-sonnet-4-5@20250929", "claude-sonnet-4-5", "catalog alias"),
        ("openai", "gpt-4o-latest-2099-01-01", "gpt-4o", "date suffix stripped"),
        ("openai", "gpt-4o", "gpt-4o", "exact"),
    ],
)
def test_snapshot_falls_back_to_family(
    catalog: PriceCatalog, provider: str, model: str, family: str, matched_by: str
) -> None:
    resolved = catalog.lookup(provider, model)
    assert resolved is not None
    assert (resolved.priced_as, resolved.matched_by) == (family, matched_by)
    usage = Usage(input_tokens=1_234, output_tokens=567)
    assert catalog.price(provider, model, usage) == catalog.price(provider, family, usage)


def test_unknown_model_is_unpriced_never_zero(caplog: pytest.LogCaptureFixture) -> None:
    catalog = PriceCatalog()
    with caplog.at_level(logging.WARNING, logger="otel_margin.prices"):
        for _ in range(3):
            cost = catalog.price("openai", "gpt-4o-mni", Usage(input_tokens=100, output_tokens=10))
            assert (cost.status, cost.total, cost.priced_as) == ("unpriced", None, "")
    assert catalog.lookup("openai", "gpt-4o-mni") is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "gpt-4o-mni" in warnings[0] and "[prices.models]" in warnings[0]


@pytest.mark.parametrize(("provider", "model"), [("vllm", "gpt-4o"), ("", "gpt-4o"), ("openai", "")])
def test_unknown_provider_or_empty_ids_are_unpriced(catalog: PriceCatalog, provider: str, model: str) -> None:
    assert catalog.price(provider, model, Usage(input_tokens=5)).status == "unpriced"


def test_estimated_usage_gives_estimated_status(catalog: PriceCatalog) -> None:
    exact = catalog.price("openai", "gpt-4o", Usage(input_tokens=100, output_tokens=20))
    estimated = catalog.price("openai", "gpt-4o", Usage(input_tokens=100, output_tokens=20, source="estimated"))
    assert (exact.status, estimated.status) == ("priced", "estimated")
    assert estimated.total == exact.total


POLICY = """\
[[prices.discounts]]
provider = "openai"
model = "gpt-4o*"
percent = 15

[[prices.discounts]]
provider = "anthropic"
percent = "12.5"

[prices.models."ft:gpt-4o-mini:acme:2024"]
provider = "openai"
input_per_mtok = "0.30"
output_per_mtok = "1.20"
cache_read_per_mtok = "0.15"

[prices.self_hosted."llama-3.1-70b"]
provider = "vllm"
gpu_second_usd = "0.0011"
gpus = 2

[prices.self_hosted."qwen-7b"]
input_per_mtok = "0.05"
output_per_mtok = 0.1
"""


@pytest.fixture(scope="module")
def policy_catalog() -> PriceCatalog:
    return PriceCatalog(parse_policy(POLICY, source="acme.toml"), log_unpriced=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=usages())
def test_discount_is_exact_percentage_of_catalog_price(
    catalog: PriceCatalog, policy_catalog: PriceCatalog, usage: Usage
) -> None:
    for provider, model, factor in [
        ("openai", "gpt-4o-mini-2024-07-18", Decimal("0.85")),
        ("openai", "gpt-4o", Decimal("0.85")),
        ("anthropic", "claude-3-5-haiku-20241022", Decimal("0.875")),
    ]:
        listed = catalog.price(provider, model, usage, at=AT)
        paid = policy_catalog.price(provider, model, usage, at=AT)
        assert paid.total == listed.total * factor
        assert paid.cache_read == listed.cache_read * factor
        assert paid.price_version == f"{CATALOG_VERSION}+policy-{policy_catalog.policy.version}"
        assert paid.price_source == listed.price_source  # "catalog", "+1h_write_rule" where gpt-4o* has 1h writes
        assert paid.price_source.startswith("catalog")


def test_discount_applies_only_to_its_provider_and_models(
    catalog: PriceCatalog, policy_catalog: PriceCatalog
) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    for provider, model in [("openai", "gpt-4.1"), ("openai", "o3-mini"), ("google", "gemini-2.5-pro")]:
        assert policy_catalog.price(provider, model, usage) == catalog.price(provider, model, usage)
    resolved = policy_catalog.lookup("openai", "gpt-4o")
    assert resolved is not None and resolved.discount is not None and resolved.discount.line == 1
    assert "acme.toml line 1" in resolved.origin


def test_policy_custom_model(policy_catalog: PriceCatalog) -> None:
    usage = Usage(input_tokens=2_000_000, output_tokens=1_000_000, cache_read_tokens=1_000_000,
                  cache_write_tokens=500_000)
    cost = policy_catalog.price("openai", "ft:gpt-4o-mini:acme:2024", usage)
    assert (cost.input, cost.cache_read, cost.cache_write, cost.output) == (
        Decimal("0.15"), Decimal("0.15"), Decimal("0.15"), Decimal("1.20"),
    )  # cache writes fall back to the input price; the gpt-4o* discount is for catalog prices only
    assert cost.total == Decimal("1.65")
    assert (cost.price_source, cost.priced_as) == ("policy", "ft:gpt-4o-mini:acme:2024")
    assert cost.price_version.endswith(f"+policy-{policy_catalog.policy.version}")
    assert policy_catalog.price("anthropic", "ft:gpt-4o-mini:acme:2024", usage).status == "unpriced"


def test_self_hosted_per_gpu_second(policy_catalog: PriceCatalog, caplog: pytest.LogCaptureFixture) -> None:
    usage = Usage(input_tokens=10_000, output_tokens=500)
    cost = policy_catalog.price("vllm", "llama-3.1-70b", usage, duration_s=2.5)
    assert cost.other == Decimal("2.5") * 2 * Decimal("0.0011") == cost.total
    assert (cost.status, cost.price_source, cost.input) == ("priced", "self_hosted", 0)
    noisy = PriceCatalog(policy_catalog.policy)
    with caplog.at_level(logging.WARNING, logger="otel_margin.prices"):
        unpriced = noisy.price("vllm", "llama-3.1-70b", usage)
    assert (unpriced.status, unpriced.total, unpriced.price_source) == ("unpriced", None, "self_hosted")
    assert "no duration" in caplog.text


def test_self_hosted_per_token_matches_any_provider(policy_catalog: PriceCatalog) -> None:
    cost = policy_catalog.price("openai", "qwen-7b", Usage(input_tokens=1_000_000, output_tokens=1_000_000))
    assert (cost.total, cost.price_source) == (Decimal("0.15"), "self_hosted")


def test_prices_ignore_the_applications_decimal_context(catalog: PriceCatalog) -> None:
    usage = Usage(input_tokens=123_457, output_tokens=98_765, cache_read_tokens=1_111)
    expected = catalog.price("openai", "gpt-4o", usage)
    with localcontext() as context:
        context.prec = 3
        assert catalog.price("openai", "gpt-4o", usage) == expected


def test_get_catalog_loads_the_policy_once_across_threads(tmp_path, monkeypatch) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    monkeypatch.setenv(OTEL_MARGIN_POLICY, str(path))
    set_catalog(None)
    try:
        seen: list[PriceCatalog] = []
        threads = [threading.Thread(target=lambda: seen.append(get_catalog())) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len({id(c) for c in seen}) == 1
        assert seen[0].policy.source == str(path)
        assert seen[0] is get_catalog()
    finally:
        set_catalog(None)


def test_get_catalog_survives_a_broken_policy(tmp_path, monkeypatch, caplog) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[prices.models.x]\ninptu_per_mtok = 1\n")
    monkeypatch.setenv(OTEL_MARGIN_POLICY, str(path))
    set_catalog(None)
    try:
        with caplog.at_level(logging.ERROR, logger="otel_margin.prices"):
            catalog = get_catalog()
        assert catalog.policy.source is None
        assert "inptu_per_mtok" in caplog.text and "line 2" in caplog.text
    finally:
        set_catalog(None)


def test_instrumenting_builds_the_catalog_from_the_policy_before_any_call(tmp_path, monkeypatch) -> None:
    import anthropic  # noqa: F401 - an SDK already imported is patched (and the catalog built) at instrument time
    from opentelemetry.sdk.trace import TracerProvider

    from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor

    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    monkeypatch.setenv(OTEL_MARGIN_POLICY, str(path))
    set_catalog(None)
    instrumentor = AnthropicMarginInstrumentor()
    try:
        # Not left to the first call's finishing job, on a thread that may get little time.
        instrumentor.instrument(tracer_provider=TracerProvider())
        assert prices._default_catalog is not None and prices._default_catalog.policy.source == str(path)
        assert get_catalog(parse_policy("")) is prices._default_catalog  # built once; later policies do not rebuild
    finally:
        instrumentor.uninstrument()
        set_catalog(None)


def test_set_catalog_replaces_the_default(policy_catalog: PriceCatalog) -> None:
    set_catalog(policy_catalog)
    try:
        assert get_catalog() is policy_catalog
    finally:
        set_catalog(None)


def test_candidates_strip_date_suffixes() -> None:
    assert [c for c, _ in prices._candidates("claude-3-5-sonnet@20241022")] == [
        "claude-3-5-sonnet@20241022", "claude-3-5-sonnet",
    ]
    assert [c for c, _ in prices._candidates("x-latest-2024-01-02")] == ["x-latest-2024-01-02", "x-latest", "x"]
    assert [c for c, _ in prices._candidates("gpt-4o")] == ["gpt-4o"]


# --- otel-margin prices -----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps table cells to the terminal width; keep long paths on one line."""
    monkeypatch.setenv("COLUMNS", "200")


def test_cli_shows_components_family_source_and_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "gpt-4o-mini-2024-07-18"]) == 0
    out = capsys.readouterr().out
    for expected in ("gpt-4o-mini", "catalog alias", "genai-prices", "uncached input", "cache read",
                     "cache write", "output", "$0.15", "$0.6", "1,000 input + 1,000 output tokens cost $0.00075"):
        assert expected in out, expected


def test_cli_shows_tiers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "gemini-2.5-pro", "--provider", "google"]) == 0
    assert "above 200,000 input tokens" in capsys.readouterr().out


def test_cli_shows_the_one_hour_cache_write_price_where_the_catalog_lists_one(
        catalog: PriceCatalog, capsys: pytest.CaptureFixture[str]) -> None:
    listed = catalog.lookup("anthropic", "claude-sonnet-4-5")
    assert listed is not None and listed.cache_write_1h is not None
    assert main(["prices", "claude-sonnet-4-5", "--provider", "anthropic", "--json"]) == 0
    one_hour = json.loads(capsys.readouterr().out)["per_mtok_usd"]["cache_write_1h"]
    assert Decimal(one_hour["base"]) == listed.cache_write_1h.base
    assert main(["prices", "claude-sonnet-4-5", "--provider", "anthropic"]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "cache write (1 hour)" in line]
    assert f"${listed.cache_write_1h.base} " in line
    assert main(["prices", "gpt-4o-mini", "--json"]) == 0
    assert "cache_write_1h" not in json.loads(capsys.readouterr().out)["per_mtok_usd"]


def test_cli_json_with_policy_discount(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(POLICY)
    assert main(["prices", "gpt-4o", "--provider", "openai", "--policy", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["discount_percent"] == "15"
    assert report["priced_as"] == "gpt-4o" and report["source"] == "catalog"
    assert Decimal(report["per_mtok_usd"]["uncached_input"]["base"]) == Decimal("2.125")
    assert report["price_version"].startswith(CATALOG_VERSION + "+policy-")
    assert f"{path} line 1" in report["origin"]


def test_cli_policy_model_names_its_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(POLICY)
    assert main(["prices", "ft:gpt-4o-mini:acme:2024", "--policy", str(path)]) == 0
    out = capsys.readouterr().out
    assert "acme.toml line 10" in out and "$0.3" in out


def test_cli_unknown_model_exits_1_with_suggestions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "gpt-4o-mni", "--provider", "openai"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'gpt-4o-mni'" in err and "did you mean 'gpt-4o-mini'" in err


def test_cli_broken_policy_exits_1_naming_the_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[prices.models."x"]\ninput_per_mtok = "1"\noutput_per_mtok = "nope"\n')
    assert main(["prices", "x", "--policy", str(path)]) == 1
    assert f"{path} line 3" in capsys.readouterr().err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prices", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--provider" in out and "--policy" in out and "examples:" in out


def _listed_at(model: str) -> list[str]:
    """Independently of the CLI: the catalog providers with a model entry matching ``model``."""
    return [p.id for p in data_snapshot.get_snapshot().providers if any(m.is_match(model) for m in p.models)]


def test_cli_prices_a_catalog_model_no_provider_pattern_claims(capsys: pytest.CaptureFixture[str]) -> None:
    # text-embedding-3-small is no gpt-*: OpenAI's model patterns do not claim it, yet OpenAI lists it.
    with pytest.raises(LookupError):
        data_snapshot.get_snapshot().find_provider("text-embedding-3-small", None, None)
    assert {"openai", "azure"} <= set(_listed_at("text-embedding-3-small"))
    assert main(["prices", "text-embedding-3-small", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    _, info = data_snapshot.get_snapshot().find_provider_model("text-embedding-3-small", None, "openai", None)
    assert (report["provider"], report["priced_as"]) == ("openai", "text-embedding-3-small")
    listed = info.get_prices(datetime.now(timezone.utc)).input_mtok
    assert Decimal(report["per_mtok_usd"]["uncached_input"]["base"]) == listed


def test_cli_model_at_a_provider_that_lacks_it_says_where_it_is_priced(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "text-embedding-3-small", "--provider", "anthropic"]) == 1
    err = capsys.readouterr().err
    assert "did you mean 'text-embedding-3-small'" not in err
    assert "the catalog prices it at openai, azure" in err and "--provider openai" in err


def test_cli_a_listed_model_without_a_token_price_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert "openai" in _listed_at("whisper-1")
    assert main(["prices", "whisper-1"]) == 1
    err = capsys.readouterr().err
    assert "lists 'whisper-1' at 'openai' without a per-token price" in err and "did you mean" not in err


@pytest.mark.parametrize(
    ("provider", "expected"),
    [("nosuch", "Known providers: anthropic, "), ("opnai", "did you mean 'openai'?"), ("x-ia", "did you mean 'x-ai'")],
)
def test_cli_unknown_provider_is_named_as_a_provider(
        provider: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "gpt-4o", "--provider", provider]) == 1
    err = capsys.readouterr().err
    assert f"unknown provider '{provider}'" in err and expected in err and "unknown model" not in err


def test_cli_providers_named_by_the_policy_or_the_conventions_are_known(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[prices.self_hosted."llama-3.1-8b"]\nprovider = "vllm"\ngpu_second_usd = "0.001"\n')
    assert main(["prices", "llama-3.1-8b", "--provider", "vllm", "--policy", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "self_hosted"
    assert main(["prices", "grok-3", "--provider", "x_ai", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["priced_as"] == "grok-3"
    assert main(["prices", "text-embedding-3-small", "--provider", "azure.ai.openai", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "catalog"


_CATALOG_IDS = sorted({m.id for p in data_snapshot.get_snapshot().providers for m in p.models})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(_CATALOG_IDS), provider=st.sampled_from([None, "openai", "anthropic", "google"]))
def test_cli_never_suggests_the_id_typed(model: str, provider: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["prices", model, "--json", *(["--provider", provider] if provider else [])])
    out, err = capsys.readouterr()
    if status == 0:
        assert json.loads(out)["model"] == model
    else:
        assert status == 1 and err.count(f"'{model}'") == 1, err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(provider=st.text(min_size=1, max_size=20).filter(str.strip))
def test_cli_any_provider_text_is_priced_or_named_unknown(provider: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["prices", "gpt-4o-mini", "--json", f"--provider={provider}"])
    out, err = capsys.readouterr()
    if prices.catalog_provider_id(provider) is None:
        assert status == 1 and "unknown provider" in err and "unknown model" not in err
    else:
        assert (status == 0 and json.loads(out)["model"] == "gpt-4o-mini") or "unknown model" in err
