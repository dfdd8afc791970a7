"""Usage no call can have is refused, never priced.

A reply may claim any token count (a broken proxy, a provider bug, a hostile stand-in):
``prompt_tokens: 10**30`` priced as real is $1.5e23, and one such call makes every margin sum
meaningless. A call whose input plus output tokens exceed the bound is recorded with cost
status ``invalid`` and no cost (``margin.cost.usd`` absent, ``cost_usd`` NULL, counted among
the unpriced calls of every rollup); its token counts stay off the span and the token metrics;
the first such call of each model logs a warning and every one is counted in ``margin.refused``
(``what="usage"``, :mod:`otel_margin.refusals`).

The bound is one number per call, :data:`DEFAULT_MAX_TOKENS_PER_CALL` (10 million) unless
``OTEL_MARGIN_MAX_TOKENS_PER_CALL`` says otherwise. Not the model's context window, although
genai-prices lists one for about 60 % of its models: it is not a bound on what one call is
billed for. ``n`` choices multiply the output, a Responses call with built-in tools bills every
model turn it made, and the catalog's own window can be too small (it lists 200,000 tokens for
``claude-sonnet-4-5`` and prices input tiers above 200,000 tokens, the 1M-token context beta).
A real call refused as ``invalid`` would hide real spend; a generous fixed bound does not.
"""

from __future__ import annotations

import logging
import os

from otel_margin import attributes as attr
from otel_margin.call import Cost, LLMCall, Usage
from otel_margin.environment_variables import OTEL_MARGIN_MAX_TOKENS_PER_CALL
from otel_margin.refusals import refuse

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS_PER_CALL = 10_000_000
"""Input plus output tokens of one call, at most, unless configured."""

_max_tokens = DEFAULT_MAX_TOKENS_PER_CALL


def load_bound() -> int:
    """Read ``OTEL_MARGIN_MAX_TOKENS_PER_CALL`` (at instrument time); a bad value is logged, the default kept."""
    global _max_tokens
    raw = os.environ.get(OTEL_MARGIN_MAX_TOKENS_PER_CALL, "").strip()
    bound = DEFAULT_MAX_TOKENS_PER_CALL
    if raw:
        try:
            bound = int(raw.replace("_", ""))
        except ValueError:
            bound = 0
        if bound < 1:
            logger.warning(
                "otel-margin: %s=%r is not a whole number of tokens; using %d (set a positive integer)",
                OTEL_MARGIN_MAX_TOKENS_PER_CALL, raw, DEFAULT_MAX_TOKENS_PER_CALL,
            )
            bound = DEFAULT_MAX_TOKENS_PER_CALL
    _max_tokens = bound
    return bound


def refuse_absurd(call: LLMCall) -> bool:
    """True, with ``call.cost`` set to ``invalid``, when ``call.usage`` is beyond any call; else False."""
    usage = call.usage
    if usage is None or usage.input_tokens + usage.output_tokens <= _max_tokens and _counts_valid(usage):
        return False
    call.cost = Cost(status="invalid")
    model = call.response_model or call.model
    refuse(
        "usage", ("usage", call.provider, model),
        "otel-margin: a reply of %r at %r claims %s input and %s output tokens, more than one call can use "
        "(at most %d, %s); such calls are recorded with cost status 'invalid' and no cost, and counted in %s. "
        "If calls this large are real, raise %s.",
        model, call.provider, _shown(usage.input_tokens), _shown(usage.output_tokens), _max_tokens,
        OTEL_MARGIN_MAX_TOKENS_PER_CALL, attr.METRIC_REFUSED, OTEL_MARGIN_MAX_TOKENS_PER_CALL,
    )
    return True


def is_refused(call: LLMCall) -> bool:
    """Whether the call's usage was refused (its token counts must not be reported)."""
    return call.cost is not None and call.cost.status == "invalid"


def _counts_valid(usage: Usage) -> bool:
    # Our readers only build non-negative counts; a plugin or a caller building a Usage might not.
    return min(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
               usage.reasoning_tokens, usage.cache_write_1h_tokens) >= 0


def _shown(tokens: int) -> str:
    # str() of an int beyond 4,300 digits raises (CPython's limit); the magnitude is what matters.
    if abs(tokens) < 10**30:
        return f"{tokens:,}"
    return f"about 10^{abs(tokens).bit_length() * 0.30103:.0f}"
