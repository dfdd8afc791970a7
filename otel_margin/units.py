"""Units of work: group the LLM calls, embeddings and recorded costs that make one priced thing.

A business prices a document analysed, a ticket resolved, an agent run, not an LLM call::

    with unit("ticket", id=ticket.id):
        ...  # every call, embedding and recorded cost in here carries the ticket's unit id

:func:`unit` is a context manager and a decorator (sync and async). The id is generated (a
random 32-hex-digit id) when not given. The id and kind travel as W3C baggage entries
``margin.unit`` and ``margin.unit.kind``: :func:`unit` puts them into the current context's
baggage, so a service called from inside the unit (with the usual ``tracecontext,baggage``
propagators) records its calls under the same unit, and an upstream service may open the unit
for everything downstream. Units nest: the innermost one is the unit of a call.

A call outside any unit is its own unit: its row's ``unit_id`` is its span id and its
``unit_kind`` is empty (the exporter and the collector view fill that in).

Values passed here are checked like :func:`~otel_margin.attribution.attribute`'s (``ValueError``
at the line that passed them); values from upstream baggage that are not usable text are
refused, logged once and counted, and the call is recorded as its own unit.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from typing import Any, Callable, NamedTuple, TypeVar

from opentelemetry import baggage, context

from otel_margin import attributes as attr
from otel_margin.attribution import MAX_TEXT_LENGTH, _from_outside

F = TypeVar("F", bound=Callable[..., Any])


class Unit(NamedTuple):
    """The unit of work a call belongs to: its id and kind (``""`` when upstream named no kind)."""

    id: str
    kind: str


class unit:  # noqa: N801 - reads as a noun at the call site: ``with unit("ticket"):``
    """Group everything inside this scope under one unit of work of kind ``kind``.

    ``id`` names the unit (your ticket or document id, so a retry or another service joins
    the same unit); without one, a random id is generated each time the scope is entered (each
    run of a decorated function is a unit of its own). ``with unit("ticket") as u: u.id``
    reads it, e.g. to record the outcome later from elsewhere.
    """

    def __init__(self, kind: str, id: str | None = None) -> None:  # noqa: A002 - the domain's word
        _check("kind", kind, allow_empty=False)
        if id is not None:
            _check("id", id, allow_empty=False)
        self.kind = kind
        self._given_id = id
        self.id: str | None = id
        self._tokens: list[object] = []

    def __enter__(self) -> "unit":
        self.id = self._given_id if self._given_id is not None else uuid.uuid4().hex
        ctx = baggage.set_baggage(attr.BAGGAGE_UNIT, self.id)
        ctx = baggage.set_baggage(attr.BAGGAGE_UNIT_KIND, self.kind, ctx)
        self._tokens.append(context.attach(ctx))
        return self

    def __exit__(self, *exc_info: object) -> None:
        context.detach(self._tokens.pop())  # type: ignore[arg-type]

    async def __aenter__(self) -> "unit":
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()

    def __call__(self, function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_in_unit(*args: Any, **kwargs: Any) -> Any:
                with unit(self.kind, self._given_id):
                    return await function(*args, **kwargs)

            return async_in_unit  # type: ignore[return-value]

        @functools.wraps(function)
        def in_unit(*args: Any, **kwargs: Any) -> Any:
            # A fresh scope per run: runs may overlap in threads and tasks, and each run
            # without a given id is a unit of its own.
            with unit(self.kind, self._given_id):
                return function(*args, **kwargs)

        return in_unit  # type: ignore[return-value]


def current_unit() -> Unit | None:
    """The unit of work a call made now belongs to, or ``None`` (the call is its own unit)."""
    entries = baggage.get_all()
    if not entries or attr.BAGGAGE_UNIT not in entries:
        return None
    unit_id = _from_outside("baggage", attr.BAGGAGE_UNIT, entries.get(attr.BAGGAGE_UNIT))
    if unit_id is None:
        return None
    kind = entries.get(attr.BAGGAGE_UNIT_KIND)
    kind = _from_outside("baggage", attr.BAGGAGE_UNIT_KIND, kind) if kind is not None else None
    return Unit(unit_id, kind or "")


def unit_attributes() -> dict[str, str]:
    """The span attributes that put a call made now into its unit (empty outside any unit)."""
    found = current_unit()
    if found is None:
        return {}
    return {attr.MARGIN_UNIT_ID: found.id, attr.MARGIN_UNIT_KIND: found.kind}


def _check(name: str, value: object, *, allow_empty: bool) -> None:
    if not isinstance(value, str):
        raise TypeError(f"unit({name}=...) takes a string, got {type(value).__name__} {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"unit({name}=''): empty; pass a short name such as 'ticket' or your own id")
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(
            f"unit({name}={value[:40]!r}...): {len(value)} characters, more than the {MAX_TEXT_LENGTH} "
            f"a unit {name} may have; pass an identifier (an id or a short name)"
        )
