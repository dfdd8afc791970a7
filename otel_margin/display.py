r"""Strings from outside shown harmlessly: to terminals, and in Markdown and HTML.

A feature, customer or model name can come from an upstream caller's baggage, a CSV file or
a provider's reply, and is stored byte for byte. Printed raw, an ANSI escape in it could
recolour or rewrite the terminal, a NUL or a carriage return hide text, and a right-to-left
override (U+202E) make ``evil<U+202E>fdp.exe`` read as ``evilexe.pdf``. Every human-facing
output passes such strings through :func:`printable`, which writes each of these characters
as a visible Python-style escape (``\x1b``, ``\u202e``) and leaves every other character as
it is; the stored data is never changed.

Distinct strings stay distinct when shown: a backslash that would otherwise read as the start
of an escape is doubled, so the four characters ``\x1b`` show as ``\\x1b`` and the escape
character itself as ``\x1b``. A backslash anywhere else (``C:\data``) is shown as it is.

Use :func:`rich_text` for a string in a rich table or line (no markup, no ``:emoji:`` codes),
:func:`markdown_text` for Markdown and :func:`html_text` for HTML.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Controls (C0, DEL, C1), format characters (bidi embeddings, overrides, isolates and marks,
zero-width spaces and joiners, soft hyphen, byte-order mark, tags), lone surrogates (which a
terminal cannot even encode) and the Unicode line and paragraph separators."""

_ESCAPE_LEADS = frozenset("\\xuU")
"""Characters that, after a backslash, read as an escape: a backslash before them is doubled."""

_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
"""Every ASCII punctuation character: CommonMark lets a backslash escape each of them."""


def printable(text: str) -> str:
    r"""``text`` with every control, format, bidi and separator character shown as an escape.

    ESC + ``[31mred`` → ``\x1b[31mred`` (a backslash, ``x1b``, ...); U+202E → ``\u202e``; plain
    text, accents, CJK and emoji unchanged. Injective: distinct inputs give distinct outputs.
    """
    if text.isprintable() and "\\" not in text:
        return text  # the common case, at C speed (isprintable() is False for every hidden class)
    pieces: list[str] = []
    for index, char in enumerate(text):
        if _hidden(char):
            pieces.append(_escape(char))
        elif char == "\\" and index + 1 < len(text) and _reads_as_escape(text[index + 1]):
            pieces.append("\\\\")
        else:
            pieces.append(char)
    return "".join(pieces)


def printable_lines(text: str) -> str:
    """:func:`printable` for a message of several lines: each ``\\n`` is kept, each line made printable."""
    return "\n".join(printable(line) for line in text.split("\n"))


def rich_text(text: str, style: str = "") -> Any:
    """A ``rich.text.Text`` showing ``text`` printably: never read as markup or emoji codes."""
    from rich.text import Text

    return Text(printable(text), style=style)


def markdown_text(text: str) -> str:
    """``text`` for Markdown (inline or in a table cell): printable, every ASCII punctuation escaped."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", printable(text))


def html_text(text: str) -> str:
    """``text`` for HTML element content or a quoted attribute: printable, then HTML-escaped."""
    return html.escape(printable(text), quote=True)


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN_CATEGORIES


def _reads_as_escape(following: str) -> bool:
    return following in _ESCAPE_LEADS or _hidden(following)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
