"""The cache key made faster is the same key: byte for byte what the previous implementation made.

``_Reference`` below is a frozen copy of ``plugins/cache/key.py``'s key building as of commit
01ffb40 (before the C encoder was reused and the ``Mapping`` checks got their ``dict`` fast
path). Every stored entry and every ``margin.request.hash`` already written was made by it, so
for any request — hypothesis-generated: plain JSON, SDK models, "not given" sentinels, bytes,
tool results, several turns, non-dict mappings, values without a canonical form — the new code
must give the same digest, the same store key, the same "not cacheable" reason and the same body.
"""

from __future__ import annotations

import hashlib
import json
import types
from collections.abc import Iterator
from typing import Any, Mapping

import openai
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessage

from otel_margin.plugins.cache import key as new
from otel_margin.plugins.cache.key import NotCacheable, Scope


class _Reference:
    """The key's request part as commit 01ffb40 wrote it (copied, not imported: it must not change)."""

    TRANSPORT_PARAMS = frozenset({"timeout"})
    KEY_VERSION = "v1"

    @staticmethod
    def _not_given(value: Any) -> bool:
        return type(value).__name__ in ("NotGiven", "Omit")

    @staticmethod
    def _data_form(value: Any) -> Any:
        if _Reference._not_given(value):
            return {"$not_given": True}
        if isinstance(value, bytes):
            return {"$bytes": hashlib.sha256(value).hexdigest()}
        if isinstance(value, (set, frozenset)):
            raise TypeError(f"a {type(value).__name__} has no order")
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            return dump(mode="json", exclude_unset=True)
        raise TypeError(f"{type(value).__name__} is not JSON data")

    @classmethod
    def request_body(cls, *, provider: str, api: str, params: Mapping[str, Any]) -> str:
        request = {n: v for n, v in params.items() if n not in cls.TRANSPORT_PARAMS and not cls._not_given(v)}
        return _REFERENCE_ENCODER.encode([cls.KEY_VERSION, provider, api, request])

    @staticmethod
    def _has_tool_result(message: Any) -> bool:
        content = message.get("content") if isinstance(message, Mapping) else None
        return isinstance(content, (list, tuple)) and any(
            isinstance(block, Mapping) and block.get("type") == "tool_result" for block in content
        )

    @classmethod
    def nondeterminism(cls, params: Mapping[str, Any]) -> str:
        temperature = params.get("temperature")
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
            return "temperature is not set (the provider's default samples)"
        if temperature > 0:
            return f"temperature is {temperature} (sampled answers differ)"
        if params.get("n") not in (None, 1):
            return "n asks for several sampled answers"
        messages = params.get("messages") or ()
        if not isinstance(messages, (list, tuple)):
            return "messages are not a list"
        users = 0
        for message in messages:
            role = message.get("role") if isinstance(message, Mapping) else None
            if role in ("tool", "function") or cls._has_tool_result(message):
                return "the request carries tool results"
            if role == "assistant":
                return "the request has several turns"
            users += role == "user"
        if users > 1:
            return "the request has several turns"
        return ""

    @classmethod
    def cache_key(cls, *, scope: Scope, customer: str | None, feature: str | None, provider: str, api: str,
                  params: Mapping[str, Any], allow_nondeterministic: bool = False) -> tuple[str, str, str]:
        if not allow_nondeterministic:
            reason = cls.nondeterminism(params)
            if reason:
                raise NotCacheable(reason)
        try:
            body = cls.request_body(provider=provider, api=api, params=params)
        except (TypeError, ValueError) as error:
            raise NotCacheable(f"a parameter has no canonical form ({error})") from None
        space = new.namespace(scope, customer=customer, feature=feature)  # unchanged, memoised
        digest = hashlib.sha256(body.encode()).hexdigest()
        store_key = f"{cls.KEY_VERSION}:{hashlib.sha256(space.encode()).hexdigest()[:32]}:{digest}"
        return space, digest, store_key


_REFERENCE_ENCODER = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_Reference._data_form
)


class _Headers(Mapping[str, Any]):
    """A mapping that is not a dict (SDK users pass such things: it is keyed by the ABC path)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _generator() -> Iterator[int]:
    yield 1


# Surrogates and control characters included: a lone surrogate cannot be UTF-8, and both must say so alike.
texts = st.text(st.characters(blacklist_categories=()), max_size=8)
leaves = (
    st.none() | st.booleans() | st.integers() | st.floats() | texts | st.binary(max_size=8)
    | st.sampled_from([openai.NOT_GIVEN, openai.Omit(), frozenset({1}), types.MappingProxyType({"a": 1})])
    | st.builds(lambda: _generator())
    | st.builds(ChatCompletionMessage, role=st.just("assistant"), content=st.none() | texts)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(texts, inner, max_size=3) | st.dictionaries(texts, inner, max_size=2).map(_Headers)
    ),
    max_leaves=8,
)
typed_blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "tool_result", "tool_use", "image"])}, optional={"text": texts, "tool_use_id": texts}
)
blocks = typed_blocks | typed_blocks.map(_Headers) | values
contents = texts | st.lists(blocks, max_size=3) | st.lists(blocks, max_size=2).map(tuple) | values
messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", "function", "developer", None, 3])},
    optional={"content": contents, "name": texts},
)
message_lists = (
    st.lists(messages | messages.map(_Headers) | values, max_size=4)
    | st.lists(messages, max_size=3).map(tuple) | values
)
# Mostly a repeatable temperature, so the message checks behind it are reached.
temperatures = st.sampled_from([0, 0, 0, 0.0, -0.0, 1, 0.7, True, False, None, "0", float("nan")]) | st.floats()
params = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku-latest"]) | texts,
     "temperature": temperatures, "messages": message_lists},
    optional={
        "n": st.sampled_from([None, 1, 2, 1.0, "1"]),
        "system": contents,
        "max_tokens": st.integers(0, 4096) | st.sampled_from([openai.NOT_GIVEN, openai.Omit()]),
        "timeout": values,
        "stream": st.booleans(),
        "tools": st.lists(values, max_size=2),
        "response_format": values,
        "metadata": st.dictionaries(texts, values, max_size=2),
    },
) | st.dictionaries(texts, values, max_size=4)


def _outcome(make: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "value", make(**kwargs)
    except NotCacheable as error:
        return "not cacheable", str(error)
    except Exception as error:  # noqa: BLE001 - which error it is must agree too
        return "raises", type(error)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    request=params,
    scope=st.sampled_from(list(Scope)),
    customer=st.none() | st.sampled_from(["acme", "globex", "客户"]),
    feature=st.none() | st.sampled_from(["qa", "invoices"]),
    allow=st.booleans(),
)
# The rarer shapes, always tried: tool results in a tuple, in a non-dict block, a non-dict message.
@example(request={"model": "m", "temperature": 0, "messages": [{"role": "user", "content": ({"type": "tool_result"},)}]},
         scope=Scope.GLOBAL, customer=None, feature=None, allow=False)
@example(request={"model": "m", "temperature": 0,
                  "messages": [{"role": "user", "content": [_Headers({"type": "tool_result"})]}]},
         scope=Scope.GLOBAL, customer=None, feature=None, allow=False)
@example(request={"model": "m", "temperature": 0.0, "messages": ("hi", _Headers({"role": "assistant"}))},
         scope=Scope.CUSTOMER, customer="acme", feature=None, allow=False)
def test_the_key_of_any_request_is_byte_identical_to_the_previous_implementation(
    request, scope, customer, feature, allow
):
    where = {"scope": scope, "customer": customer, "feature": feature, "provider": "openai",
             "api": "chat.completions", "params": request, "allow_nondeterministic": allow}
    expected = _outcome(_Reference.cache_key, **where)

    def made(**kwargs: Any) -> tuple[str, str, str]:
        key = new.cache_key(**kwargs)
        return key.namespace, key.digest, key.store_key

    assert _outcome(made, **where) == expected
    assert new.nondeterminism(request) == _Reference.nondeterminism(request)
    body = {"provider": "anthropic", "api": "messages.create", "params": request}
    assert _outcome(new.request_body, **body) == _outcome(_Reference.request_body, **body)


def test_the_benchmarks_request_keys_as_before():
    # The request benchmarks/cache_latency.py times, at many numbers: the case the speed-up is for.
    for i in range(0, 2_000_000, 9_973):
        request = {
            "model": "gpt-4o-mini", "temperature": 0, "max_tokens": 300,
            "messages": [
                {"role": "system", "content": "You answer questions about invoices in one short paragraph."},
                {"role": "user", "content": f"What is the total of invoice {i} including VAT?"},
            ],
        }
        where = {"scope": Scope.CUSTOMER, "customer": f"customer-{i % 500}", "feature": "invoices",
                 "provider": "openai", "api": "chat.completions", "params": request}
        key = new.cache_key(**where)
        assert (key.namespace, key.digest, key.store_key) == _Reference.cache_key(**where)


def _circular() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


def _deep() -> list[Any]:
    value: list[Any] = []
    inner = value
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    return value


@pytest.mark.parametrize("make", [_circular, _deep])
def test_a_circular_or_absurdly_deep_parameter_is_not_cached_and_never_raises_anything_else(make):
    # The reused encoder keeps no circular-reference markers: a cycle ends in RecursionError inside
    # it, which must come out as "not cacheable" (and as ValueError for the request fingerprint).
    # (The previous key let a 100,000-deep list's RecursionError out to the caller.)
    for value in (make(), {"a": make()}):
        request = {"model": "m", "temperature": 0, "metadata": value}
        with pytest.raises(NotCacheable, match="no canonical form"):
            new.cache_key(scope=Scope.GLOBAL, customer=None, feature=None, provider="openai",
                          api="chat.completions", params=request)
        with pytest.raises(ValueError):
            new.request_body(provider="openai", api="chat.completions", params=request)


def test_the_encoder_in_use_writes_what_json_writes():
    # Where CPython's private C encoder is missing or changed, the public encoder is used instead.
    value = ["v1", {"b": [1, 1.0, 1e300, -0.0, "ü\u2028"], "a": None}, (True,)]
    assert new._encode(value) == json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
