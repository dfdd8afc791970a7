"""The response cache's key: which tenant a request belongs to, and the request itself, canonical.

A key is two parts. The **namespace** is the tenant scope (by default the customer): entries of
one namespace are never visible from another, whatever the request. The **request digest** is a
SHA-256 of the provider, the SDK surface, the model and every parameter that can change the
answer, written as JSON with sorted keys (which keeps ``1`` apart from ``1.0`` and a float's exact
``repr``), so two requests that differ in any such parameter never share an entry.

A request that cannot be keyed safely is not cached: no tenant where the scope needs one, a
parameter that has no canonical form (a generator, a file handle), or a request whose answer is
not repeatable (temperature above 0 or left at the provider's default, tool results, several
turns) unless the feature allows it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import json.encoder
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

TRANSPORT_PARAMS = frozenset({"timeout"})
"""Keyword arguments that change how long the client waits, never the answer: left out of the key.

``stream`` and ``stream_options`` stay in: a hit replays the provider's response as it came,
so a streamed answer (with or without its usage chunk) only serves the same kind of request.
"""

KEY_VERSION = "v1"
"""Bumped whenever the canonical form changes, so old entries are never read as new ones."""


class Scope(str, Enum):
    """Whose requests share entries. ``global`` shares across all tenants: only by explicit choice."""

    CUSTOMER = "customer"
    CUSTOMER_FEATURE = "customer+feature"
    FEATURE = "feature"
    GLOBAL = "global"


class NotCacheable(Exception):
    """Why a request is not cached (the message is the reason, for the span and the logs)."""


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where an entry lives: ``namespace`` (the tenant scope) and ``digest`` (the request)."""

    namespace: str
    digest: str

    @property
    def store_key(self) -> str:
        """One string for the stores: the namespace's own digest, then the request's."""
        return f"{KEY_VERSION}:{_namespace_id(self.namespace)}:{self.digest}"


@functools.lru_cache(maxsize=4096)
def _namespace_id(namespace: str) -> str:
    return hashlib.sha256(namespace.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=4096)
def namespace(scope: Scope, *, customer: str | None, feature: str | None) -> str:
    """The tenant namespace of a call under ``scope``; :class:`NotCacheable` without a tenant."""
    if scope is Scope.GLOBAL:
        return json.dumps(["global"])
    parts: list[Any] = [scope.value]
    if scope in (Scope.CUSTOMER, Scope.CUSTOMER_FEATURE):
        if not customer:
            raise NotCacheable(f"no customer on the call and the cache scope is {scope.value!r}")
        parts.append(customer)
    if scope in (Scope.CUSTOMER_FEATURE, Scope.FEATURE):
        if not feature:
            raise NotCacheable(f"no feature on the call and the cache scope is {scope.value!r}")
        parts.append(feature)
    return json.dumps(parts, ensure_ascii=False)


def cache_key(
    *,
    scope: Scope,
    customer: str | None,
    feature: str | None,
    provider: str,
    api: str,
    params: Mapping[str, Any],
    allow_nondeterministic: bool = False,
) -> CacheKey:
    """The key of a request, or :class:`NotCacheable` saying why it has none.

    ``params`` are the SDK call's keyword arguments as first asked (before routing), so a
    routed call and its repeat share an entry.
    """
    if not allow_nondeterministic:
        reason = nondeterminism(params)
        if reason:
            raise NotCacheable(reason)
    try:
        body = request_body(provider=provider, api=api, params=params)
    except (TypeError, ValueError) as error:
        raise NotCacheable(f"a parameter has no canonical form ({error})") from None
    return CacheKey(
        namespace=namespace(scope, customer=customer, feature=feature),
        digest=hashlib.sha256(body.encode()).hexdigest(),
    )


def request_body(*, provider: str, api: str, params: Mapping[str, Any]) -> str:
    """The request in its canonical form, without any tenant: what :func:`cache_key` digests.

    Also the input of the write path's request fingerprint (:mod:`otel_margin.request_hash`).
    Raises ``TypeError`` / ``ValueError`` for a parameter without a canonical form.
    """
    request = {name: value for name, value in params.items()
               if name not in TRANSPORT_PARAMS and (type(value) in _PLAIN or not _not_given(value))}
    try:
        return _encode([KEY_VERSION, provider, api, request])
    except RecursionError:  # circular (the encoder keeps no markers, see _encode) or absurdly deep
        raise ValueError("a parameter is circular or nested too deeply") from None


def nondeterminism(params: Mapping[str, Any]) -> str:
    """Why a request's answer is not repeatable ('' when it is)."""
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
        # ``type(x) is dict`` first: the ABC check costs several times as much, and messages are dicts
        if type(message) is not dict and not isinstance(message, Mapping):
            continue  # no role, no content: neither a turn nor a tool result
        role = message.get("role")
        if role in ("tool", "function") or _has_tool_result(message):
            return "the request carries tool results"
        if role == "assistant":
            return "the request has several turns"
        users += role == "user"
    if users > 1:
        return "the request has several turns"
    return ""


def _has_tool_result(message: Mapping[str, Any]) -> bool:
    content = message.get("content")
    if type(content) is str or not isinstance(content, (list, tuple)):
        return False
    for block in content:
        if (type(block) is dict or isinstance(block, Mapping)) and block.get("type") == "tool_result":
            return True
    return False


def _data_form(value: Any) -> Any:
    """JSON's fallback for what it cannot write: SDK models, bytes, the SDKs' "not given" sentinels.

    The request is written as JSON with sorted keys, which already tells ``1`` from ``1.0`` and
    keeps a float's exact ``repr``; anything else without a data form — a generator, a file —
    raises ``TypeError``, and the request is not cached.
    """
    if _not_given(value):
        return {"$not_given": True}  # nested: kept apart from absent, at worst a miss
    if isinstance(value, bytes):
        return {"$bytes": hashlib.sha256(value).hexdigest()}
    if isinstance(value, (set, frozenset)):
        raise TypeError(f"a {type(value).__name__} has no order")
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_unset=True)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _not_given(value: Any) -> bool:
    # openai.NOT_GIVEN / openai.Omit and anthropic's twins: "parameter not passed".
    return type(value).__name__ in ("NotGiven", "Omit")


_PLAIN = frozenset({str, int, float, bool, type(None), list, dict, tuple})
"""Types that are never a "not given" sentinel: their parameters skip the sentinel's name check."""


_ENCODER = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_data_form
)
"""One encoder for every key (``json.dumps`` with options builds a new one per call)."""


def _c_encoder() -> Any:
    """``_ENCODER``'s C encoder, made once: the same text, without building it again per key.

    ``JSONEncoder.encode`` makes a new C encoder (and a circular-reference dict filled with the
    id of every list and dict) on each call: about 30 % of writing a small request. This one keeps
    no such dict, so it can be shared by threads; a circular parameter ends in ``RecursionError``
    instead (turned into ``ValueError`` by :func:`request_body`). ``None`` where CPython's C
    encoder is missing or takes other arguments: :func:`_encode` then uses ``_ENCODER`` itself.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encoder = make(None, _data_form, json.encoder.encode_basestring, None, ":", ",", True, False, False)
        probe = ["v1", {"b": [1, 1.0, -0.0, 1e16, True, None], "a": "é\n\"x\u2028"}, (2,)]
        if "".join(encoder(probe, 0)) != _ENCODER.encode(probe):
            return None
    except Exception:  # noqa: BLE001 - another CPython's private signature: the public path is used
        return None
    return encoder


_C_ENCODER = _c_encoder()


def _encode(value: Any) -> str:
    """``value`` as ``_ENCODER.encode`` writes it (the key's canonical JSON)."""
    if _C_ENCODER is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODER(value, 0))
