"""How the stand-in counts tokens and writes text: deterministic, documented, not tiktoken.

The rule (every usage number the stand-in reports follows from it, so tests can assert exact
numbers):

* ``count_text(s)`` is the number of runs of word characters plus the number of other
  non-space characters: ``"Hello, world!"`` is 4 tokens (``Hello`` ``,`` ``world`` ``!``).
* ``count_value(v)`` counts a JSON value: strings by ``count_text``; lists and objects by the sum
  of their items, skipping the keys ``type``, ``role`` and ``cache_control`` (they are framing,
  not content); numbers and booleans are 1 token; ``null`` is 0.
* A request's input is ``PROMPT_OVERHEAD`` plus, for each message, ``MESSAGE_OVERHEAD`` plus
  ``count_value`` of its content (and ``name``), plus ``count_value`` of the system prompt /
  instructions and of each tool definition. The provider modules apply it.

Generated text is ``n`` lower-case words from a fixed vocabulary joined by single spaces, so
``count_text(words(seed, n)) == n``: the text really is as long as the usage says.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

PROMPT_OVERHEAD = 3
"""Tokens added once per request (the provider's reply priming)."""

MESSAGE_OVERHEAD = 4
"""Tokens added per message (role and separators)."""

DEFAULT_OUTPUT_TOKENS = 20
"""Output tokens of a reply when the request neither forces nor caps its length."""

_TOKEN = re.compile(r"\w+|[^\w\s]")
_FRAMING_KEYS = frozenset({"type", "role", "cache_control"})
_VOCABULARY = (
    "margin cost token feature customer tier budget cache route limit model price revenue "
    "invoice usage latency answer summary request reply context prompt stream chunk signal "
    "report growth value quality review floor share trend window batch record event metric "
    "trace span query ledger plan credit account region green yellow red daily weekly steady "
    "rising falling ready clear exact cheap fast small large"
).split()


def count_text(text: str) -> int:
    """Return the stand-in's token count of ``text`` (word runs plus punctuation marks)."""
    return len(_TOKEN.findall(text))


def count_value(value: Any) -> int:
    """Return the token count of a JSON value (see the module docstring for the rule)."""
    if isinstance(value, str):
        return count_text(value)
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return 1
    if isinstance(value, dict):
        return sum(count_value(item) for key, item in value.items() if key not in _FRAMING_KEYS)
    if isinstance(value, list):
        return sum(count_value(item) for item in value)
    return 0


def words(seed: str, n: int) -> list[str]:
    """Return ``n`` deterministic words for ``seed``; joined by spaces they count as ``n`` tokens."""
    out: list[str] = []
    block = 0
    while len(out) < n:
        digest = hashlib.sha256(f"{seed}:{block}".encode()).digest()
        out.extend(_VOCABULARY[byte % len(_VOCABULARY)] for byte in digest)
        block += 1
    return out[:n]


def text_deltas(seed: str, n: int) -> list[str]:
    """Return the stream deltas of an ``n``-word reply: one word per delta, spaces leading."""
    return [word if index == 0 else " " + word for index, word in enumerate(words(seed, n))]


def split_deltas(text: str) -> list[str]:
    """Split reply text back into its stream deltas (one word each, the inverse of joining)."""
    return [word if index == 0 else " " + word for index, word in enumerate(text.split(" "))] if text else []


def json_pieces(text: str, size: int = 8) -> list[str]:
    """Split a JSON string into the small pieces a provider streams tool arguments in."""
    return [text[start : start + size] for start in range(0, len(text), size)] or [""]


def fingerprint(*parts: Any) -> str:
    """Return a stable hex digest of JSON-able parts (seeds, ids, cache prefixes)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def arguments_for(schema: Any) -> dict[str, Any]:
    """Return deterministic arguments that satisfy the top level of a JSON schema's properties."""
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    samples = {"string": "standin", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
    out: dict[str, Any] = {}
    for name, spec in properties.items() if isinstance(properties, dict) else ():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("enum"), list) and spec["enum"]:
            out[name] = spec["enum"][0]
        else:
            out[name] = samples.get(kind if isinstance(kind, str) else "string", "standin")
    return out

