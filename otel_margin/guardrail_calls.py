"""A guardrail's own LLM calls: the semantic cache's embedding through the user's client, say.

Such a call is real spend and is recorded like any call (its own span and ``llm_calls`` row,
attributed to the feature and customer whose call caused it; an embedding counts as
orchestration in the margin views). What sets it apart, once marked
(``margin.orchestration.by`` = the guardrail's name):

- no guardrail runs before it (no cache lookup, limit or routing: it is part of another call's
  guardrail step, and a cache looking up its own embedding would recurse); ``margin_record``
  still runs, so spend trackers see it;
- its cost is handed back to the guardrail that made it, as it was priced (one price, so the
  guardrail's cost on the causing call, ``margin.cache.cost.usd``, equals the row's
  ``cost_usd`` to the last decimal), and it is priced on the caller's thread before the SDK
  call returns, so the guardrail has it in hand::

      with guardrail_calls("cache") as spent:
          client.embeddings.create(model="text-embedding-3-small", input=text)
      spent.total_usd    # Decimal; None when a call in the block was unpriced

Counting such a call's cost as well as the causing call's guardrail cost would count it twice:
the margin views count the row's ``cost_usd`` and never ``cache_cost_usd`` (which only nets
what the cache saved, docs/cache.md).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Iterator

from otel_margin import attributes as attr

if TYPE_CHECKING:
    from otel_margin.call import LLMCall

NOTE = "guardrail_calls.spent"
"""Where a marked call keeps its :class:`Spent` (``call.notes``) until it is priced."""


@dataclass(slots=True)
class Spent:
    """What the calls of one :func:`guardrail_calls` block cost, as they were priced."""

    by: str
    calls: int = 0
    unpriced: int = 0
    priced_usd: Decimal = Decimal(0)

    @property
    def total_usd(self) -> Decimal | None:
        """The exact total, or ``None`` when a call was unpriced (never a silent 0)."""
        return None if self.unpriced else self.priced_usd


_current: ContextVar[Spent | None] = ContextVar("otel_margin_guardrail_calls", default=None)


@contextmanager
def guardrail_calls(by: str) -> Iterator[Spent]:
    """Mark every instrumented LLM call made in the block as guardrail ``by``'s own; yield their cost."""
    spent = Spent(by)
    token = _current.set(spent)
    try:
        yield spent
    finally:
        _current.reset(token)


def mark(call: LLMCall) -> None:
    """Mark ``call`` when it is made inside a :func:`guardrail_calls` block (the pipeline, at the call's start)."""
    spent = _current.get()
    if spent is not None:
        call.attributes[attr.MARGIN_ORCHESTRATION_BY] = spent.by
        call.notes[NOTE] = spent


def is_own(call: LLMCall) -> bool:
    """``call`` is a guardrail's own (no guardrail runs before it; it is priced before it returns)."""
    return NOTE in call.notes


def settle(call: LLMCall) -> None:
    """Hand a marked call's cost, as priced, to its block (the pipeline, once the call is priced)."""
    spent = call.notes.pop(NOTE, None)
    if spent is None:
        return
    spent.calls += 1
    cost = call.cost
    if cost is None or (cost.total is None and cost.status != "error"):
        spent.unpriced += 1
    elif cost.total is not None:
        spent.priced_usd += cost.total
