"""Values from outside that otel-margin refuses: logged once, counted, then dropped.

Some of what a call is recorded with comes from places the application does not control: the
provider's reply (its usage), an upstream service (W3C baggage ``margin.*``) and the mapping of
HTTP routes to features. None of it may raise into the user's call, and none of it may be
stored as something it is not. A value that cannot be used is refused: the call goes on
without it (usage is then recorded with cost status ``invalid``, an attribution key falls back
to the next source or to ``unattributed``), a warning is logged the first time each kind of
refusal happens for each subject (a model, a baggage key), and every refusal is counted.

The counts are process-wide and reported by the ``margin.refused`` counter (label
``margin.refused.what``: ``usage``, ``baggage:margin.customer``, ``route:margin.feature`` …)
of every meter the instrumentors were given (:func:`observe`); :func:`counts` reads them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any, Hashable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from otel_margin import attributes as attr

logger = logging.getLogger(__name__)

_MAX_WARNED = 4096
"""Subjects remembered as warned about; they come from outside (model ids), so the set is bounded."""

_counts: Counter[str] = Counter()
_warned: set[Hashable] = set()
_lock = threading.Lock()


def refuse(what: str, subject: Hashable, message: str, *args: Any) -> None:
    """Count one refused value of kind ``what``; log ``message % args`` the first time for ``subject``.

    ``what`` is the metric label (a small fixed set: ``usage``, ``baggage:<key>``,
    ``route:<key>``); ``subject`` says what "once" means (``("usage", provider, model)``).
    Never raises.
    """
    try:
        with _lock:
            _counts[what] += 1
            first = subject not in _warned
            if first:
                if len(_warned) >= _MAX_WARNED:
                    _warned.clear()
                _warned.add(subject)
        if first:
            logger.warning(message, *args)
    except Exception:  # noqa: BLE001 - refusing a value must not fail the call either
        pass


def counts() -> dict[str, int]:
    """Refusals so far in this process, by kind."""
    with _lock:
        return dict(_counts)


def observe(options: CallbackOptions | None = None) -> Iterable[Observation]:
    """The ``margin.refused`` observable counter's callback: the process's totals, by kind."""
    return [Observation(count, {attr.MARGIN_REFUSED_WHAT: what}) for what, count in counts().items()]
