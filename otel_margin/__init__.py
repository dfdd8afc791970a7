"""otel-margin: the gross margin of LLM features, observable and defended.

Public API::

    from otel_margin import attribute, MarginLimitExceeded

    with attribute(feature="summarize", customer="acme", tier="pro"):
        client.chat.completions.create(...)
"""

__version__ = "0.1.0"

from otel_margin.attribution import attribute  # noqa: E402
from otel_margin.finisher import flush  # noqa: E402
from otel_margin.guardrails import CacheHit, LimitDecision, MarginLimitExceeded  # noqa: E402
from otel_margin.hookspecs import hookimpl  # noqa: E402
from otel_margin.replay import Exchange  # noqa: E402
from otel_margin.units import unit  # noqa: E402
from otel_margin.outcomes import outcome  # noqa: E402
from otel_margin.costs import record_cost  # noqa: E402

__all__ = [
    "attribute", "flush", "hookimpl", "unit", "outcome", "record_cost", "CacheHit", "Exchange", "LimitDecision", "MarginLimitExceeded", "__version__",
]
