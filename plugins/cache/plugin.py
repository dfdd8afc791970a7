"""The exact response cache, as a guardrail plugin: an identical request of the same tenant is served from the store.

Off unless the policy file configures it for a feature::

    [plugins.cache]
    store = "memory"                 # memory | host | redis://host:6379/0
    max_bytes = 67108864             # memory and host stores; Redis uses its maxmemory
    directory = ".otel-margin/cache" # host store
    timeout_ms = 50                  # host and Redis stores: longer fails open

    [plugins.cache.features.summarize]
    ttl_seconds = 3600
    scope = "customer"               # customer | customer+feature | feature | global
    allow_nondeterministic = false   # cache temperature > 0, tool results, several turns too

A miss is recorded as the provider's HTTP response (:mod:`otel_margin.replay`); a hit hands
that response to the SDK, which builds exactly what it would have returned. The key is made at
lookup, from the request as first asked (before routing), and kept in the call's notes for the
record hook.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping

from otel_margin import attributes as attr
from otel_margin import hookimpl
from otel_margin.guardrails import CACHE_HIT_NOTE, CACHE_UNSTORABLE_NOTE, CacheHit
from otel_margin.plugins.cache.key import NotCacheable, Scope, cache_key
from otel_margin.plugins.cache.stores import FailOpen, HostStore, MemoryStore, RedisStore
from otel_margin.replay import Exchange

logger = logging.getLogger(__name__)

NAME = "cache"
NOTE_KEY = "cache.key"
"""Where the lookup leaves the call's key for :func:`margin_record` (``call.notes``)."""


DEFAULT_SIMILARITY = 0.85
"""The least cosine similarity for a semantic hit when a feature gives none (docs/cache.md's quality table)."""


@dataclass(frozen=True, slots=True)
class FeatureCache:
    """How one feature is cached."""

    ttl_s: float
    scope: Scope = Scope.CUSTOMER
    allow_nondeterministic: bool = False
    semantic: bool = False
    similarity: float = DEFAULT_SIMILARITY


class CacheSettingsError(ValueError):
    """A ``[plugins.cache]`` setting that cannot be used: names the key, the value and the fix."""


@hookimpl
def margin_configure(policy: Any) -> None:
    """Read ``[plugins.cache]``: with a feature table, register the cache; without one, stay off.

    The hooks that run per call live on :class:`ExactCache`, registered only when configured
    (pytest's way for a plugin that adds plugins), so an installed but unconfigured cache
    costs calls nothing.
    """
    from otel_margin.pluginhost import pm

    previous = pm.get_plugin(ExactCache.NAME)
    if previous is not None:
        pm.unregister(previous)
        if previous.semantic is not None:
            previous.semantic.index.close()  # its background thread would keep the old index alive
    settings = (getattr(policy, "plugins", None) or {}).get(NAME) or {}
    where = getattr(policy, "where", None)
    features, store = parse_settings(
        settings, where=(lambda *path: where("plugins", NAME, *path)) if where else _nowhere
    )
    if store is not None:
        _observe_stores()
        semantic = None
        if any(f.semantic for f in features.values()):
            from otel_margin.plugins.cache.semantic import SemanticLayer

            directory = None if store.name == "memory" else f"{settings.get('directory', '.otel-margin/cache')}/semantic"
            semantic = SemanticLayer(store, directory)
        pm.register(ExactCache(features, store, semantic), name=ExactCache.NAME)


class ExactCache:
    """The per-call hooks of the exact cache, over one store."""

    NAME = "cache.exact"

    def __init__(self, features: Mapping[str, FeatureCache], store: FailOpen, semantic: Any = None) -> None:
        self.features = features
        self.store = store
        self.semantic = semantic  # plugins.cache.semantic.SemanticLayer when a feature is semantic

    @hookimpl
    def margin_cache_lookup(self, call: Any) -> CacheHit | None:
        """The stored response of an identical earlier request of the same tenant, or ``None``."""
        feature = self.features.get(call.feature or attr.UNATTRIBUTED)
        if feature is None:
            return None
        try:
            key = cache_key(
                scope=feature.scope, customer=call.customer, feature=call.feature, provider=call.provider,
                api=call.api, params=call.params, allow_nondeterministic=feature.allow_nondeterministic,
            )
        except NotCacheable as reason:
            call.attributes[attr.MARGIN_CACHE_RESULT] = "off"
            call.notes["cache.skipped"] = str(reason)
            return None
        call.notes[NOTE_KEY] = key
        stored = self.store.get(key.store_key)
        try:
            if stored is not None:
                saved, exchange = _unpack(stored)
                return CacheHit(exchange=exchange, saved_usd=saved, kind="exact")
        except (ValueError, KeyError, TypeError, InvalidOperation):
            logger.debug("otel-margin cache: an unreadable entry was ignored", exc_info=True)
        if self.semantic is not None and feature.semantic:
            hit = self.semantic.lookup_safely(call, key, feature, _unpack)
            if hit is not None:
                return hit
        call.attributes[attr.MARGIN_CACHE_RESULT] = "miss"
        return None

    @hookimpl
    def margin_record(self, call: Any, exchange: Exchange | None) -> None:
        """Store a successful, complete answer under the key its lookup made."""
        key = call.notes.get(NOTE_KEY)
        feature = self.features.get(call.feature or attr.UNATTRIBUTED)
        if key is None or feature is None or exchange is None or call.notes.get(CACHE_HIT_NOTE):
            return
        if call.notes.get(CACHE_UNSTORABLE_NOTE):
            return  # a limit capped the request after it was keyed
        if call.error_type is not None or exchange.status != 200:
            return
        cost = call.cost.total if call.cost is not None else None
        self.store.put(key.store_key, _pack(cost, exchange), feature.ttl_s)
        if self.semantic is not None and feature.semantic:
            self.semantic.record(call, key, feature.ttl_s)


_observed = False


def _observe_stores() -> None:
    """The store's entries, bytes and evictions as OTel gauges, once per process (the
    callbacks read whichever cache is registered when the meter collects)."""
    global _observed
    if _observed:
        return
    _observed = True
    from opentelemetry import metrics

    meter = metrics.get_meter("otel_margin.plugins.cache")
    for name, field, description in (
        (attr.METRIC_CACHE_ENTRIES, "entries", "Entries in the response cache's store."),
        (attr.METRIC_CACHE_BYTES, "bytes", "Bytes in the response cache's store."),
        (attr.METRIC_CACHE_EVICTIONS, "evictions", "Entries the cache store evicted for room (when it counts them)."),
    ):
        meter.create_observable_gauge(name, callbacks=[_store_callback(field)], description=description)


def _store_callback(field: str) -> Callable[[Any], Any]:
    def observe(options: Any) -> Any:
        from opentelemetry.metrics import Observation

        from otel_margin.pluginhost import pm

        cache = pm.get_plugin(ExactCache.NAME)
        stats = cache.store.stats() if cache is not None else None
        value = getattr(stats, field, None) if stats is not None else None
        return [] if value is None else [Observation(value, {attr.MARGIN_CACHE_STORE: cache.store.name})]

    return observe


def parse_settings(
    settings: Mapping[str, Any], *, where: Callable[..., str] | None = None
) -> tuple[dict[str, FeatureCache], FailOpen | None]:
    """The feature tables and the store of ``[plugins.cache]``; :class:`CacheSettingsError` when unusable.

    ``where(*path)`` names the file and line of a key under ``[plugins.cache]`` for messages.
    """
    where = where or _nowhere
    unknown = sorted(set(settings) - {"store", "max_bytes", "directory", "timeout_ms", "features"})
    if unknown:
        raise CacheSettingsError(
            f"{where(unknown[0])}: [plugins.cache] has unknown key {unknown[0]!r}; "
            "use store, max_bytes, directory, timeout_ms or features"
        )
    features = {
        name: _feature_settings(name, table, where) for name, table in (settings.get("features") or {}).items()
    }
    if not features:
        return {}, None
    return features, _store(settings, where)


def _nowhere(*path: str) -> str:
    return "policy"


def _feature_settings(name: str, table: Any, at: Callable[..., str]) -> FeatureCache:
    where = f"{at('features', name)}: [plugins.cache.features.{name}]"
    if not isinstance(table, Mapping):
        raise CacheSettingsError(f"{where} must be a table, e.g. ttl_seconds = 3600")
    unknown = sorted(set(table) - {"ttl_seconds", "scope", "allow_nondeterministic", "semantic", "similarity"})
    if unknown:
        raise CacheSettingsError(
            f"{where} has unknown key {unknown[0]!r}; use ttl_seconds, scope, allow_nondeterministic, semantic or similarity"
        )
    ttl = table.get("ttl_seconds", 3600)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= 366 * 86400:
        raise CacheSettingsError(f"{where} ttl_seconds = {ttl!r}: give a number of seconds from 1 to 31622400")
    scope = table.get("scope", Scope.CUSTOMER.value)
    try:
        scope = Scope(scope)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in Scope)
        raise CacheSettingsError(f"{where} scope = {scope!r}: use one of {choices}") from None
    allow = table.get("allow_nondeterministic", False)
    if not isinstance(allow, bool):
        raise CacheSettingsError(f"{where} allow_nondeterministic = {allow!r}: use true or false")
    semantic = table.get("semantic", False)
    if not isinstance(semantic, bool):
        raise CacheSettingsError(f"{where} semantic = {semantic!r}: use true or false")
    similarity = table.get("similarity", DEFAULT_SIMILARITY)
    if isinstance(similarity, bool) or not isinstance(similarity, (int, float)) or not 0.5 <= similarity <= 1:
        raise CacheSettingsError(f"{where} similarity = {similarity!r}: give a cosine similarity from 0.5 to 1, e.g. 0.9")
    return FeatureCache(ttl_s=float(ttl), scope=scope, allow_nondeterministic=allow, semantic=semantic,
                        similarity=float(similarity))


def _store(settings: Mapping[str, Any], where: Callable[..., str]) -> FailOpen:
    kind = settings.get("store", "memory")
    max_bytes = settings.get("max_bytes", 64 * 1024 * 1024)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise CacheSettingsError(
            f"{where('max_bytes')}: [plugins.cache] max_bytes = {max_bytes!r}: give a positive whole number of bytes"
        )
    timeout_ms = settings.get("timeout_ms", 50)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or not 0 < timeout_ms <= 10_000:
        raise CacheSettingsError(
            f"{where('timeout_ms')}: [plugins.cache] timeout_ms = {timeout_ms!r}: give milliseconds from 1 to 10000"
        )
    if kind == "memory":
        return FailOpen(MemoryStore(max_bytes), "memory")
    if kind == "host":
        directory = settings.get("directory", ".otel-margin/cache")
        return FailOpen(HostStore(str(directory), max_bytes, timeout_s=timeout_ms / 1000), f"host:{directory}")
    if isinstance(kind, str) and kind.startswith(("redis://", "rediss://", "unix://")):
        return FailOpen(RedisStore(kind, timeout_s=timeout_ms / 1000), "redis")
    raise CacheSettingsError(
        f'{where("store")}: [plugins.cache] store = {kind!r}: use "memory", "host" or a Redis URL '
        'such as "redis://localhost:6379/0"'
    )


def _pack(cost: Decimal | None, exchange: Exchange) -> bytes:
    head = json.dumps({"cost_usd": None if cost is None else format(cost, "f")})
    return head.encode() + b"\n" + exchange.to_bytes()


def _unpack(data: bytes) -> tuple[Decimal | None, Exchange]:
    head, separator, rest = data.partition(b"\n")
    if not separator:
        raise ValueError("not a cache entry")
    cost = json.loads(head)["cost_usd"]
    return (None if cost is None else Decimal(cost)), Exchange.from_bytes(rest)
