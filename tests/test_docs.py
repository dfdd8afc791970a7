"""Every hook appears in the plugin-author docs with its exact signature (datasette's rule)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from otel_margin import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("margin_"))


def signature_line(name: str) -> str:
    function = getattr(hookspecs, name)
    parameters = ", ".join(
        f"{p.name}: {p.annotation}" for p in inspect.signature(function).parameters.values()
    )
    return f"def {name}({parameters}) -> {inspect.signature(function).return_annotation}"


def test_there_are_hooks():
    assert HOOKS == ["margin_cache_lookup", "margin_configure", "margin_limit_check", "margin_record", "margin_route"]


@pytest.mark.parametrize("name", HOOKS)
def test_hook_documented_with_exact_signature(name):
    text = DOCS.read_text()
    assert f"### {name}" in text
    assert signature_line(name) in text, signature_line(name)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_docstring_with_call_style(name):
    doc = getattr(hookspecs, name).__doc__ or ""
    assert "raises" in doc, f"{name} docstring must say what happens when an implementation raises"
