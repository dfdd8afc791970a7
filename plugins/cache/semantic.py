"""The semantic cache: a near-identical single-turn request of the same tenant is served a stored answer.

On an exact miss for a feature with ``semantic = true``, the request's user text is embedded
(:mod:`.embedder`) and looked up in its tenant namespace's nearest-neighbour index
(:mod:`.index`, fed by the shared :mod:`.journal`). A neighbour is served only when

1. it was asked with the **same everything else** — provider, API, model, system prompt, every
   parameter — only the user's words differ (the *shape* digest);
2. its cosine similarity is at least the feature's ``similarity``;
3. the **guard** finds the same facts in both texts (:mod:`.guard`: numbers, amounts, dates,
   negations, names, IDs, scope words);
4. the **verifier**, if one is set (:func:`set_verifier`), does not veto it;
5. its exact entry still holds the answer.

Only single-turn requests (system messages plus one user message, no tools results) are matched
semantically. The embedding's cost is the cache's own (``margin.cache.cost.usd``, on every
call that embedded, hit or miss); a hit's ``margin.saved.usd`` is the stored call's cost, and
the report nets the cache's costs from the hits' savings.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping

from otel_margin import attributes as attr
from otel_margin.guardrails import CacheHit
from otel_margin.plugins.cache import guard
from otel_margin.plugins.cache.embedder import Embedder, MiniLMEmbedder
from otel_margin.plugins.cache.index import Record, SemanticIndex
from otel_margin.plugins.cache.journal import Journal
from otel_margin.plugins.cache.key import CacheKey, NotCacheable, Scope, cache_key

logger = logging.getLogger(__name__)

NOTE = "cache.semantic"
"""Where the lookup leaves the request's text, shape and vector for the record hook."""
MAX_TEXT = 4000
"""Requests whose user text is longer are not matched semantically (they are rarely paraphrased)."""
PLACEHOLDER = "\u0000semantic-text\u0000"

Verifier = Callable[[str, str, float, Any], bool]
"""``verifier(new_text, stored_text, similarity, call) -> bool``: ``False`` vetoes a hit."""

_embedder: Embedder | None = None
_verifier: Verifier | None = None


def set_embedder(embedder: Embedder | None) -> None:
    """Use ``embedder`` (see :mod:`.embedder`) instead of the built-in model; ``None`` restores it.

    Takes effect when the cache is next configured; entries of another embedder are not matched.
    """
    global _embedder
    _embedder = embedder


def set_verifier(verifier: Verifier | None) -> None:
    """Ask ``verifier`` before serving any semantic hit; ``None`` removes it."""
    global _verifier
    _verifier = verifier


def embedder() -> Embedder:
    global _embedder
    if _embedder is None:
        _embedder = MiniLMEmbedder()
    return _embedder


@dataclass(frozen=True, slots=True)
class Request:
    """The part of a request the semantic cache compares: its user text, and a digest of the rest."""

    text: str
    shape: str


def single_turn(provider: str, api: str, params: Mapping[str, Any], scope: Scope, customer: str | None,
                feature: str | None) -> Request | None:
    """The user text and shape of a single-turn request, or ``None`` (not matched semantically)."""
    messages = params.get("messages")
    if api == "responses":
        value = params.get("input")
        if not isinstance(value, str):
            return None
        text, replaced = value, {**params, "input": PLACEHOLDER}
    else:
        if not isinstance(messages, (list, tuple)):
            return None
        users = [i for i, m in enumerate(messages) if isinstance(m, Mapping) and m.get("role") == "user"]
        others = [m for m in messages if not (isinstance(m, Mapping) and m.get("role") in ("user", "system", "developer"))]
        if len(users) != 1 or others:
            return None
        text = _text(messages[users[0]].get("content"))
        if text is None:
            return None
        copy = list(messages)
        copy[users[0]] = {**messages[users[0]], "content": PLACEHOLDER}
        replaced = {**params, "messages": copy}
    if not text.strip() or len(text) > MAX_TEXT:
        return None
    try:
        shape = cache_key(scope=scope, customer=customer, feature=feature, provider=provider, api=api,
                          params=replaced, allow_nondeterministic=True).digest
    except NotCacheable:
        return None
    return Request(text, shape)


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)) and all(isinstance(b, Mapping) and b.get("type") == "text" for b in content):
        return "\n".join(str(b.get("text", "")) for b in content)
    return None  # images, files, tool blocks: not compared by meaning


def _warm(warm: Callable[[], Any]) -> None:
    try:
        warm()
    except Exception as error:  # noqa: BLE001 - reported here; lookups then fail open as misses
        logger.warning("otel-margin cache: the semantic cache's embedder could not load (%s: %s); "
                       "semantic lookups are misses until it can", type(error).__name__, error)


class SemanticLayer:
    """The semantic half of the cache, called by the exact cache's hooks on a miss and on record."""

    def __init__(self, store: Any, directory: str | None, embedder_: Embedder | None = None) -> None:
        self.store = store
        self.embedder = embedder_ or embedder()
        self.index = SemanticIndex(Journal(store), self.embedder.dimensions, directory=directory)
        self.refused = 0
        self.vetoed = 0
        self.failures = 0
        # Load the model beside the service's start rather than inside its first semantic lookup.
        warm = getattr(self.embedder, "warm", None)
        self.warming: threading.Thread | None = None
        if warm is not None:
            self.warming = threading.Thread(target=_warm, args=(warm,), name="otel-margin-cache-warm", daemon=True)
            self.warming.start()

    def lookup(self, call: Any, key: CacheKey, feature: Any, unpack: Callable[[bytes], tuple[Decimal | None, Any]]
               ) -> CacheHit | None:
        request = single_turn(call.provider, call.api, call.params, feature.scope, call.customer, call.feature)
        if request is None:
            return None
        embedding = self.embedder.embed(request.text)
        if embedding.cost_usd is not None:  # None: the embedding call was unpriced (its own row says so)
            call.attributes[attr.MARGIN_CACHE_COST_USD] = format(embedding.cost_usd, "f")
        call.notes[NOTE] = (request, embedding.vector)
        for similarity, record in self.index.search(key.namespace, embedding.vector):
            if similarity < feature.similarity:
                break
            if record.shape != request.shape:
                continue
            if not guard.allows(request.text, record.text):
                self.refused += 1
                continue
            verifier = _verifier
            if verifier is not None and not verifier(request.text, record.text, similarity, call):
                self.vetoed += 1
                continue
            stored = self.store.get(record.entry_key)
            if stored is None:
                continue
            saved, exchange = unpack(stored)
            call.attributes[attr.MARGIN_CACHE_SIMILARITY] = round(similarity, 4)
            return CacheHit(exchange=exchange, saved_usd=saved, kind="semantic")  # gross: the cost is netted apart
        return None

    def record(self, call: Any, key: CacheKey, ttl_s: float) -> None:
        noted = call.notes.get(NOTE)
        if noted is None:
            return
        request, vector = noted
        record = Record(key.store_key, request.shape, request.text, time.time() + ttl_s)
        self.index.journal.append(key.namespace, record.to_bytes(vector), ttl_s)

    def lookup_safely(self, call: Any, key: CacheKey, feature: Any,
                      unpack: Callable[[bytes], tuple[Decimal | None, Any]]) -> CacheHit | None:
        """:meth:`lookup`, failing open: an embedder or index failure is a miss, logged once."""
        try:
            return self.lookup(call, key, feature, unpack)
        except Exception as error:  # noqa: BLE001 - the cache never breaks a call
            self.failures += 1
            if self.failures == 1:
                logger.warning("otel-margin cache: semantic lookup failed (%s: %s); calls continue as misses",
                               type(error).__name__, error, exc_info=True)
            return None
