"""Price a call before it runs: what a guardrail (a budget, a router) needs to decide in advance.

The same price lookup as a finished call's (:mod:`otel_margin.prices`: the policy file's prices,
then the catalog, contract discounts last), applied to token counts the caller supplies or that
the request implies. The answer is exact ``Decimal`` dollars, or ``None`` when nobody prices the
model (never ``0`` for an unknown price)::

    from otel_margin.estimate import estimate_cost

    estimate_cost(provider="openai", model="gpt-4o-mini", input_tokens=1200, output_tokens=300)

Inside a hook, :meth:`otel_margin.call.LLMCall.estimated_cost` prices the call at hand: its
provider, model, server and pre-call input-token count, and at most the output its request
allows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from otel_margin.call import Usage

if TYPE_CHECKING:
    from otel_margin.call import LLMCall

OUTPUT_LIMIT_PARAMS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
"""The request parameters that bound a call's output, by SDK surface (chat, Responses API, Anthropic)."""


def estimate_cost(
    *,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    server: tuple[str, int | None] | None = None,
) -> Decimal | None:
    """What a call of ``model`` at ``provider`` with these token counts would cost, in dollars.

    ``input_tokens`` includes ``cache_read_tokens`` (the semantic conventions' meaning);
    ``server`` (``(address, port)`` the client sends to) selects the policy file's ``[hosts]``
    prices. Returns ``None`` when the model has no price (or is priced per GPU-second, which
    needs the call's duration). Raises ``ValueError`` for a negative or non-integer count.
    """
    for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens),
                        ("cache_read_tokens", cache_read_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"estimate_cost: {name} = {value!r}; give a whole number of tokens, 0 or more")
    from otel_margin.prices import get_catalog

    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                  cache_read_tokens=min(cache_read_tokens, input_tokens), source="estimated")
    return get_catalog().price(provider, model, usage, server=server).total


def estimate_call_cost(call: LLMCall, output_tokens: int | None = None) -> Decimal | None:
    """:func:`estimate_cost` of ``call`` as it stands (see :meth:`LLMCall.estimated_cost`)."""
    input_tokens = call.estimated_input_tokens
    if input_tokens is None:
        from otel_margin.tokens import estimate_chat_input_tokens

        input_tokens = call.estimated_input_tokens = estimate_chat_input_tokens(call.provider, call.params)
    if output_tokens is None:
        output_tokens = request_output_limit(call) or 0
    server = (call.server_address, call.server_port) if call.server_address is not None else None
    return estimate_cost(provider=call.provider, model=call.model, input_tokens=input_tokens,
                         output_tokens=output_tokens, server=server)


def request_output_limit(call: LLMCall) -> int | None:
    """The most output tokens the request allows (its ``max_tokens``-style parameter), or ``None``."""
    for name in OUTPUT_LIMIT_PARAMS:
        value = call.params.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None
