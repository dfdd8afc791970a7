"""The request fingerprint: which calls asked the identical thing (``margin.request.hash``).

The weekly review's backlog estimates what a response cache would have saved from the calls that
repeated an identical request. That needs one number per call: 64 bits (16 hex digits) of the
SHA-256 of the request's canonical form — the response cache's own
(:func:`otel_margin.plugins.cache.key.request_body`: provider, SDK surface, model and every
parameter that can change the answer, as JSON with sorted keys), without the tenant, so the
read side can group repeats by customer, by feature or across both.

When the cache already keyed the call, its digest is reused (the first 16 hex digits are this
fingerprint by construction), so the cache pays nothing more. Otherwise the request is encoded and
hashed once, on the finisher thread (:mod:`otel_margin.pipeline`), never on the caller's. A request
without a canonical form (a generator, a file handle among its parameters) gets no fingerprint.
"""

from __future__ import annotations

import hashlib

from otel_margin import attributes as attr
from otel_margin.call import LLMCall
from otel_margin.plugins.cache.key import request_body

HEX_DIGITS = 16
"""64 bits: the ``llm_calls.request_hash`` column is a ``UInt64``."""

_CACHE_KEY_NOTE = "cache.key"
"""Where the cache plugin leaves the call's :class:`~otel_margin.plugins.cache.key.CacheKey`."""


def request_hash(call: LLMCall) -> str | None:
    """The call's fingerprint (16 lowercase hex digits), or ``None`` without a canonical form."""
    key = call.notes.get(_CACHE_KEY_NOTE)
    digest = getattr(key, "digest", None)
    if isinstance(digest, str) and len(digest) >= HEX_DIGITS:
        return digest[:HEX_DIGITS]
    try:
        body = request_body(provider=call.provider, api=call.api, params=call.params)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(body.encode()).hexdigest()[:HEX_DIGITS]


def set_request_hash(call: LLMCall) -> None:
    """Put the fingerprint on the call's span attributes (nothing when it has none)."""
    fingerprint = request_hash(call)
    if fingerprint is not None:
        call.attributes[attr.MARGIN_REQUEST_HASH] = fingerprint
