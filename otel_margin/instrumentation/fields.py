"""Tolerant readers of provider response fields, shared by every endpoint.

A malformed or partial body may carry anything anywhere; these turn what is not the
expected type into "absent" instead of raising.
"""

from __future__ import annotations

from typing import Any


def items(value: Any) -> list[Any] | tuple[Any, ...]:
    """``value`` if it is a list or tuple, else empty."""
    return value if isinstance(value, (list, tuple)) else ()


def count(value: Any) -> int | None:
    """``value`` if it is a non-negative int (not a bool), else ``None``."""
    return value if type(value) is int and value >= 0 else None


def text(value: Any) -> str | None:
    """``value`` if it is a non-empty string, else ``None``."""
    return value if isinstance(value, str) and value else None


def get(value: Any, name: str) -> Any:
    """Field ``name`` of a response object or of a wire-JSON dict; ``None`` when absent."""
    return value.get(name) if type(value) is dict else getattr(value, name, None)
