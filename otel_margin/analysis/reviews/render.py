"""A review as a document — titled sections of text, a table and a chart — and its Markdown.

The weekly and quarterly reviews build a :class:`Review`; :func:`markdown` writes it as
Markdown and :mod:`otel_margin.analysis.reviews.html` as a self-contained HTML page with the
charts. Names come from outside (features, customers, models), so every cell is escaped: a ``|``
or a line break in a name never breaks a table, and HTML in a name stays text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Table:
    """Column headers and rows of cell text (already formatted)."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart the HTML page draws: one line or bar per series over the ``x`` labels."""

    kind: str
    """``line`` or ``bar``."""
    title: str
    x: tuple[str, ...]
    series: tuple[tuple[str, tuple[float | None, ...]], ...]
    y_title: str


@dataclass(frozen=True, slots=True)
class Section:
    """One agenda item: what it says, its table, notes under it, and a chart for the HTML page."""

    title: str
    text: tuple[str, ...] = ()
    table: Table | None = None
    notes: tuple[str, ...] = ()
    chart: Chart | None = None


@dataclass(frozen=True, slots=True)
class Review:
    """A whole review: title, the lines under it, and the agenda's sections in order."""

    title: str
    summary: tuple[str, ...]
    sections: tuple[Section, ...] = field(default_factory=tuple)


def markdown(review: Review) -> str:
    """The review as Markdown: ``#`` title, ``##`` numbered sections, pipe tables."""
    out = [f"# {_inline(review.title)}", ""]
    for line in review.summary:
        out += [_inline(line), ""]
    for number, section in enumerate(review.sections, 1):
        if out[-1]:
            out.append("")
        out += [f"## {number}. {_inline(section.title)}", ""]
        for line in section.text:
            out += [_inline(line), ""]
        if section.table is not None:
            out += _table(section.table) + [""]
        out += [f"- {_inline(note)}" for note in section.notes] + ([""] if section.notes else [])
    return "\n".join(out).rstrip("\n") + "\n"


def _table(table: Table) -> list[str]:
    if not table.rows:
        return ["(none)"]
    lines = ["| " + " | ".join(_cell(h) for h in table.headers) + " |",
             "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in table.rows]
    return lines


def _inline(text: str) -> str:
    """One Markdown line: line breaks of outside text become spaces."""
    return " ".join(text.splitlines()) if text else ""


def _cell(text: str) -> str:
    """One table cell: no line break, ``|`` and ``\\`` escaped, empty shown as ``''``."""
    flat = _inline(text).replace("\\", "\\\\").replace("|", "\\|")
    return flat if flat.strip() else "''"
