"""The policy file: loading, the schema, and errors that name file, line, key and fix."""

from __future__ import annotations

import sys
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_margin.environment_variables import OTEL_MARGIN_POLICY
from otel_margin.policy import SCHEMA, Policy, PolicyError, load_policy, parse_policy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

FULL = """\
# every documented key
[attribution.routes]
"/api/summarize" = "summarize"
"/api/chat/{id}" = "chat"

[features.summarize]
unit_price_usd = "0.02"

[features.chat]
unit_price_usd = 0.005

[[prices.discounts]]
provider = "openai"
model = "gpt-4o*"
percent = 15

[[prices.discounts]]
provider = "anthropic"
percent = "7.5"

[prices.models."ft:gpt-4o-mini:acme:2024"]
provider = "openai"
input_per_mtok = "0.30"
output_per_mtok = "1.20"
cache_read_per_mtok = "0.15"
cache_write_per_mtok = "0.375"

[prices.self_hosted."llama-3.1-70b"]
provider = "vllm"
gpu_second_usd = "0.0011"
gpus = 2

[prices.self_hosted.qwen]
input_per_mtok = 1
output_per_mtok = "2"
"""


def _error(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="otel-margin.toml")
    return str(info.value)


def test_full_policy_parses_to_exact_values() -> None:
    policy = parse_policy(FULL, source="p.toml")
    assert policy.source == "p.toml" and len(policy.version) == 8
    assert dict(policy.routes) == {"/api/summarize": "summarize", "/api/chat/{id}": "chat"}
    assert policy.features["summarize"].unit_price_usd == Decimal("0.02")
    assert policy.features["chat"].unit_price_usd == Decimal("0.005")  # float via str(), not binary
    first, second = policy.discounts
    assert (first.provider, first.model, first.percent, first.line) == ("openai", "gpt-4o*", 15, 12)
    assert (second.model, second.percent, second.line) == (None, Decimal("7.5"), 17)
    model = policy.models["ft:gpt-4o-mini:acme:2024"]
    assert (model.input_per_mtok, model.cache_write_per_mtok, model.line) == (Decimal("0.30"), Decimal("0.375"), 21)
    hosted = policy.self_hosted["llama-3.1-70b"]
    assert (hosted.gpu_second_usd, hosted.gpus, hosted.provider) == (Decimal("0.0011"), 2, "vllm")
    assert policy.self_hosted["qwen"].input_per_mtok == Decimal(1)
    assert policy.self_hosted["qwen"].gpu_second_usd is None


def test_version_is_a_stable_hash_of_the_content() -> None:
    assert parse_policy(FULL).version == parse_policy(FULL).version
    assert parse_policy(FULL).version != parse_policy(FULL + "\n").version
    assert Policy().version == "" and Policy().source is None


def test_discount_matching() -> None:
    first, second = parse_policy(FULL).discounts
    assert first.applies_to(("openai",), ("gpt-4o-mini",))
    assert first.applies_to(("azure.ai.openai", "OpenAI"), ("something", "GPT-4o"))
    assert not first.applies_to(("openai",), ("gpt-4.1",))
    assert not first.applies_to(("anthropic",), ("gpt-4o",))
    assert second.applies_to(("anthropic",), ("anything",))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[prices.models."gpt-4o-mni"]\nprovider = "openai"\ninptu_per_mtok = "0.1"\noutput_per_mtok = "1"\n',
            "otel-margin.toml line 3: [prices.models.\"gpt-4o-mni\"] unknown key 'inptu_per_mtok'; "
            "did you mean 'input_per_mtok'?",
        ),
        ("\n[pricess]\n", "otel-margin.toml line 2: unknown top-level key 'pricess'; did you mean 'prices'?"),
        ("[prices]\nmodel = 1\n", "otel-margin.toml line 2: [prices] unknown key 'model'; did you mean 'models'?"),
        (
            "[features.x]\nunit_price_usd = true\n",
            "otel-margin.toml line 2: [features.x] unit_price_usd = true is not valid; "
            'expected a money amount like "0.30"',
        ),
        (
            '[[prices.discounts]]\nprovider = "a"\npercent = 5\n\n[[prices.discounts]]\npercent = 100\n'
            'provider = "b"\n',
            "otel-margin.toml line 6: [[prices.discounts]] (entry 2) percent = 100 is not valid; "
            "expected a percentage strictly between 0 and 100, like 15",
        ),
        (
            "[[prices.discounts]]\npercent = 5\n",
            "otel-margin.toml line 1: [[prices.discounts]] (entry 1) missing required key 'provider'; "
            'add provider = "openai"',
        ),
        (
            '[prices.self_hosted.m]\ngpu_second_usd = "1"\ninput_per_mtok = "1"\n',
            "otel-margin.toml line 1: [prices.self_hosted.m] sets both gpu_second_usd and per-token prices; "
            "keep one way of pricing",
        ),
        (
            "[prices.self_hosted.m]\ngpus = 2\n",
            "otel-margin.toml line 1: [prices.self_hosted.m] has no price; add gpu_second_usd = \"0.0011\" "
            "or input_per_mtok and output_per_mtok",
        ),
        (
            '[prices.self_hosted.m]\ngpu_second_usd = "1"\ngpus = 0\n',
            "otel-margin.toml line 3: [prices.self_hosted.m] gpus = 0 is not valid; "
            "expected a whole number of at least 1",
        ),
        (
            '[prices.models.m]\ninput_per_mtok = "-1"\noutput_per_mtok = "1"\n',
            'otel-margin.toml line 2: [prices.models.m] input_per_mtok = "-1" is not valid; '
            'expected a finite, non-negative money amount like "0.30"',
        ),
        ('prices.discounts = "x"\n', "otel-margin.toml line 1: [prices] discounts must be an array of tables"),
        ("[attribution]\nroutes = 3\n", "otel-margin.toml line 2: [attribution] routes must be a table, not a number"),
        ("a = \n", "otel-margin.toml line 1, column 5: not valid TOML: Invalid value"),
    ],
)
def test_errors_name_file_line_key_and_fix(text: str, expected: str) -> None:
    assert _error(text).startswith(expected)


def test_model_priced_twice_is_an_error() -> None:
    text = '[prices.models.a]\ninput_per_mtok=1\noutput_per_mtok=1\n[prices.self_hosted.A]\ngpu_second_usd=1\n'
    assert "priced in both" in _error(text) and "line 4" in _error(text)


def test_load_policy_from_argument_env_cwd_or_empty(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(OTEL_MARGIN_POLICY, raising=False)
    assert load_policy() == Policy()
    (tmp_path / "otel-margin.toml").write_text(FULL)
    assert load_policy().source == "otel-margin.toml"
    other = tmp_path / "other.toml"
    other.write_text('[features.a]\nunit_price_usd = "1"\n')
    monkeypatch.setenv(OTEL_MARGIN_POLICY, str(other))
    assert set(load_policy().features) == {"a"}
    assert set(load_policy(tmp_path / "otel-margin.toml").features) == {"summarize", "chat"}


def test_missing_files_are_errors_with_a_fix(tmp_path, monkeypatch) -> None:
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "nope.toml")
    monkeypatch.setenv(OTEL_MARGIN_POLICY, str(tmp_path / "nope.toml"))
    with pytest.raises(PolicyError, match=f"unset {OTEL_MARGIN_POLICY}"):
        load_policy()


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


def test_schema_is_the_single_source_of_keys() -> None:
    assert set(SCHEMA.keys) == {"alerts", "attribution", "exceptions", "features", "hosts", "plugins", "prices", "reviews",
                                "tiers", "zones"}


# Arbitrary TOML-shaped documents: the validator either accepts them or raises PolicyError.
_scalars = st.one_of(
    st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True), st.text(max_size=8),
)
_names = st.sampled_from(
    ["prices", "models", "self_hosted", "discounts", "features", "attribution", "routes", "provider",
     "percent", "gpus", "gpu_second_usd", "input_per_mtok", "output_per_mtok", "unit_price_usd", "x"]
)
_documents = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(_names, children, max_size=4)),
    max_leaves=12,
)


def _toml(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if value in (float("inf"), -float("inf")) else repr(value)
    if isinstance(value, (int, str)):
        return json.dumps(value) if isinstance(value, str) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(_names, _documents, max_size=4))
def test_arbitrary_documents_never_crash_the_validator(document: dict) -> None:
    text = "\n".join(f"{name} = {_toml(value)}" for name, value in document.items())
    try:
        policy = parse_policy(text)
    except PolicyError as error:
        assert str(error).split("\n") == error.errors
        assert all(line.startswith("otel-margin.toml") for line in error.errors)
    else:
        assert isinstance(policy, Policy)


_prices = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(lambda d: f'"{d}"'),
    st.sampled_from(['"x"', "true", "nan", "-inf", '"-0"', "-0", "[]"]),
)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_prices, min_size=1, max_size=8))
def test_every_bad_value_is_reported_with_its_own_line(values: list[str]) -> None:
    text = "".join(f"[features.f{index}]\nunit_price_usd = {value}\n" for index, value in enumerate(values))
    bad = []
    for index, value in enumerate(values):
        parsed = tomllib.loads(f"v = {value}")["v"]  # what the value is in TOML, judged without our checker
        try:
            amount = Decimal(str(parsed)) if isinstance(parsed, (int, float, str)) and parsed is not True else None
        except ArithmeticError:  # "x": not a number at all
            amount = None
        if amount is None or not (amount.is_finite() and amount >= 0):
            bad.append(f"otel-margin.toml line {2 * index + 2}: [features.f{index}] unit_price_usd = ")
    if not bad:
        assert len(parse_policy(text).features) == len(values)
        return
    errors = _error(text).split("\n")
    assert len(errors) == len(bad) and all(e.startswith(b) for e, b in zip(errors, bad))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_loader(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyError:
        pass


def test_the_documented_example_is_valid() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "policy.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    policy = parse_policy(example, source="docs/policy.md")
    assert set(policy.models) == {"ft:gpt-4o-mini:acme:2024"}
    assert set(policy.self_hosted) == {"llama-3.1-70b", "qwen2.5-7b"}
    assert len(policy.discounts) == 2 and set(policy.features) == {"summarize"}


@pytest.mark.parametrize(
    ("text", "line", "shown"),
    [
        ('[prices.models.m]\ninput_per_mtok = -1\noutput_per_mtok = "1"\n', 2, "input_per_mtok = -1"),
        ('[prices.models.m]\ninput_per_mtok = "1"\noutput_per_mtok = -7\n', 3, "output_per_mtok = -7"),
        ("[features.f]\nunit_price_usd = -1\n", 2, "unit_price_usd = -1"),
        ("[prices.self_hosted.g]\ngpu_second_usd = -3\n", 2, "gpu_second_usd = -3"),
        ('[[prices.discounts]]\nprovider = "openai"\npercent = -5\n', 3, "percent = -5"),
    ],
)
def test_negative_whole_numbers_are_rejected_like_negative_strings(text: str, line: int, shown: str) -> None:
    message = _error(text)
    assert message.startswith(f"otel-margin.toml line {line}: ") and f"{shown} is not valid" in message


@settings(max_examples=100, deadline=None)
@given(amount=st.integers(max_value=-1), spelled=st.sampled_from(["{}", '"{}"', "{}.0", '"{}.5"']))
def test_no_negative_money_in_any_spelling_is_accepted(amount: int, spelled: str) -> None:
    with pytest.raises(PolicyError, match="is not valid; expected a .*money amount"):
        parse_policy(f"[features.f]\nunit_price_usd = {spelled.format(amount)}\n")


BROKEN = """\
[pricess]
[features.a]
unit_price_usd = -1
[[prices.discounts]]
percent = 100
[prices.models."m"]
inptu_per_mtok = "0.1"
output_per_mtok = "x"
[prices.self_hosted.M]
gpu_second_usd = "1"
gpus = 0
"""


def test_every_error_of_the_file_is_reported_in_one_run_in_line_order() -> None:
    lines = _error(BROKEN).splitlines()
    assert lines == [
        "otel-margin.toml line 1: unknown top-level key 'pricess'; did you mean 'prices'?",
        "otel-margin.toml line 3: [features.a] unit_price_usd = -1 is not valid; "
        'expected a finite, non-negative money amount like "0.30"',
        "otel-margin.toml line 4: [[prices.discounts]] (entry 1) missing required key 'provider'; "
        'add provider = "openai"',
        "otel-margin.toml line 5: [[prices.discounts]] (entry 1) percent = 100 is not valid; "
        "expected a percentage strictly between 0 and 100, like 15",
        "otel-margin.toml line 7: [prices.models.m] unknown key 'inptu_per_mtok'; "
        "did you mean 'input_per_mtok'?",
        'otel-margin.toml line 8: [prices.models.m] output_per_mtok = "x" is not valid; '
        'expected a money amount like "0.30"',
        "otel-margin.toml line 9: model 'M' is priced in both [prices.models] and [prices.self_hosted]; keep one",
        "otel-margin.toml line 11: [prices.self_hosted.M] gpus = 0 is not valid; "
        "expected a whole number of at least 1",
    ]
    with pytest.raises(PolicyError) as info:
        parse_policy(BROKEN, source="otel-margin.toml")
    assert info.value.errors == lines


def test_an_invalid_price_is_not_also_reported_as_a_missing_one() -> None:
    text = '[prices.self_hosted.q]\ninput_per_mtok = "-1"\noutput_per_mtok = "1"\n'
    assert _error(text).splitlines() == [
        'otel-margin.toml line 2: [prices.self_hosted.q] input_per_mtok = "-1" is not valid; '
        'expected a finite, non-negative money amount like "0.30"'
    ]


def test_a_policy_or_environment_problem_is_logged_once_per_process_not_per_instrumentor(
        tmp_path, monkeypatch, caplog) -> None:
    import logging
    import uuid

    import anthropic  # noqa: F401 - imported SDKs are patched (and their settings read) at instrument time
    import openai  # noqa: F401
    from opentelemetry.sdk.trace import TracerProvider

    from otel_margin.environment_variables import OTEL_MARGIN_OPENAI_INCLUDE_USAGE
    from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor
    from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
    from otel_margin.prices import set_catalog

    path = tmp_path / "broken.toml"  # a fresh path and value: nothing this process logged before
    path.write_text("[prices.models.x]\ninptu_per_mtok = 1\n")
    flag = f"maybe-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(OTEL_MARGIN_POLICY, str(path))
    monkeypatch.setenv(OTEL_MARGIN_OPENAI_INCLUDE_USAGE, flag)
    instrumentors = (OpenAIMarginInstrumentor(), AnthropicMarginInstrumentor())
    set_catalog(None)
    try:
        with caplog.at_level(logging.WARNING, logger="otel_margin"):
            for _cycle in range(2):
                for instrumentor in instrumentors:
                    instrumentor.instrument(tracer_provider=TracerProvider())
                for instrumentor in instrumentors:
                    instrumentor.uninstrument()
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
        set_catalog(None)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("inptu_per_mtok" in m and str(path) in m for m in messages) == 1, messages
    assert sum(flag in m for m in messages) == 1, messages
