"""Strings from outside are shown harmlessly and distinguishably, in every human-facing output."""

from __future__ import annotations

import html
import io
import re
import unicodedata
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin.display import html_text, markdown_text, printable, printable_lines, rich_text

HOSTILE = "\x1b[2J\x1b[31mred\x00nul\r\u202efdp.exe\u2066iso\u2069\u200b\x9b\x7f\ufeff\u2028"
"""A clear-screen and a colour escape, NUL, carriage return, right-to-left override, an isolate,
a zero-width space, a C1 CSI, DEL, a byte-order mark and a line separator."""

_DANGEROUS = (
    [chr(c) for c in range(0x20)] + [chr(c) for c in range(0x7F, 0xA0)]
    + list("\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069")
    + list("\u00ad\ufeff\u2028\u2029\U000e0001\U000e0041\ud800\udfff")
)

# Any string, weighted toward what matters: controls, bidi, lone surrogates, and the characters
# the escape syntax itself is made of.
_strings = st.text(
    st.one_of(
        st.characters(blacklist_categories=()),  # every category, lone surrogates included
        st.sampled_from(_DANGEROUS),
        st.sampled_from(list("\\xuU0123456789abcdefABCDEF")),
    ),
    max_size=40,
)


def _hidden(text: str) -> list[str]:
    """Characters a terminal would act on or hide: controls, format/bidi, surrogates, separators."""
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]


def _decode(shown: str) -> str:
    """The inverse of :func:`printable`, written from its documented escape rules."""
    out, i = [], 0
    widths = {"x": 2, "u": 4, "U": 8}
    while i < len(shown):
        if shown[i] == "\\" and i + 1 < len(shown):
            lead = shown[i + 1]
            if lead == "\\":
                out.append("\\")
                i += 2
                continue
            if lead in widths:
                digits = shown[i + 2 : i + 2 + widths[lead]]
                out.append(chr(int(digits, 16)))
                i += 2 + widths[lead]
                continue
        out.append(shown[i])
        i += 1
    return "".join(out)


@settings(max_examples=1000, deadline=None)
@given(text=_strings)
@example(text=HOSTILE)
@example(text="\\x1b")
@example(text="\\\x1b")
@example(text="\\")
@example(text="a\\\\")
def test_any_string_is_shown_without_hidden_characters_and_stays_distinguishable(text: str) -> None:
    shown = printable(text)
    assert _hidden(shown) == []
    shown.encode("utf-8")  # a lone surrogate would make printing raise
    assert _decode(shown) == text  # so distinct inputs never show the same


@settings(max_examples=300, deadline=None)
@given(first=_strings, second=_strings)
def test_distinct_strings_show_distinctly(first: str, second: str) -> None:
    assert (printable(first) == printable(second)) == (first == second)


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"))))
def test_ordinary_text_is_unchanged_unless_a_backslash_could_read_as_an_escape(text: str) -> None:
    expected = re.sub(r"\\(?=[\\xuU])", r"\\\\", text)
    assert printable(text) == expected


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("evil\u202efdp.exe", "evil\\u202efdp.exe"),
        ("nul\x00", "nul\\x00"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("C:\\data\\rev.csv", "C:\\data\\rev.csv"),
        ("\\x1b", "\\\\x1b"),
        ("café 数据 🚀", "café 数据 🚀"),
    ],
)
def test_examples(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_lines_keep_their_breaks_and_nothing_else() -> None:
    assert printable_lines("a\x1b\nb\u2028c\rd") == "a\\x1b\nb\\u2028c\\x0dd"


@settings(max_examples=300, deadline=None)
@given(text=_strings)
@example(text="[bold red]x[/] :rocket: [/nope]")
def test_rich_shows_the_printable_text_never_markup_emoji_or_escapes(text: str) -> None:
    from rich.console import Console
    from rich.table import Table

    out = io.StringIO()
    console = Console(file=out, width=4000, color_system=None, force_terminal=False)
    table = Table("feature")
    table.add_row(rich_text(text))
    console.print(table)
    console.print(rich_text(text))
    rendered = out.getvalue()
    assert [c for c in _hidden(rendered) if c != "\n"] == []
    assert rendered.count(printable(text)) >= 2


@settings(max_examples=300, deadline=None)
@given(text=_strings)
def test_markdown_and_html_show_the_printable_text(text: str) -> None:
    markdown = markdown_text(text)
    assert _hidden(markdown) == [] and "|" not in markdown.replace("\\|", "")
    assert re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown) == printable(text)
    shown = html_text(text)
    assert _hidden(shown) == [] and not set("<>\"'") & set(shown)
    assert html.unescape(shown) == printable(text)


def test_report_shows_stored_escapes_harmlessly_and_stores_them_byte_for_byte(
        chdb_client, chdb_path, database, monkeypatch, capsys) -> None:  # noqa: F811 - fixtures
    import json

    from otel_margin.cli import main

    now = datetime.now(timezone.utc)
    customer = "cust\x1b]0;owned\x07"
    insert_calls(chdb_client, database, [
        call(timestamp=now, feature=HOSTILE, customer=customer, cost_usd=Decimal("3"), revenue_usd=Decimal("1")),
        call(timestamp=now, feature="[bold]markup[/] :rocket:", cost_usd=Decimal("0.5"), revenue_usd=Decimal("2")),
    ])
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["report", "--since", "2", "--database", database]) == 0
    out = capsys.readouterr().out
    assert [c for c in _hidden(out) if c != "\n"] == []
    assert printable(HOSTILE) in out and "[bold]markup[/] :rocket:" in out
    # The stored data is untouched, and the JSON output carries it exactly.
    stored = chdb_client.query(
        f"SELECT feature FROM {database}.llm_calls WHERE customer = {{c:String}}", parameters={"c": customer}
    ).result_rows
    assert stored == [(HOSTILE,)]
    assert main(["report", "--since", "2", "--format", "json", "--database", database]) == 0
    report = json.loads(capsys.readouterr().out)
    assert HOSTILE in {row["key"] for row in report["features"]}


def test_report_feature_filter_is_shown_harmlessly(
        chdb_client, chdb_path, database, monkeypatch, capsys) -> None:  # noqa: F811 - fixtures
    from otel_margin.cli import main

    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    assert main(["report", "--since", "2", "--database", database, "--feature", f"x\x1b[8m{uuid.uuid4().hex}"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "x\\x1b[8m" in out


def test_command_errors_are_shown_harmlessly(tmp_path, capsys) -> None:
    from otel_margin.cli import main

    assert main(["prices", "gpt\x1b[2J\u202e-4o", "--provider", "openai"]) == 1
    err = capsys.readouterr().err
    assert [c for c in _hidden(err) if c != "\n"] == [] and "'gpt\\x1b[2J\\u202e-4o'" in err
    path = tmp_path / "revenue.csv"
    path.write_text("customer,period,amount,currency,tier\nacme\x1b[2J,2024-05,ten\u202e,USD,pro\n", encoding="utf-8")
    assert main(["revenue", "import", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert [c for c in _hidden(err) if c != "\n"] == [] and "line 2" in err


def test_prices_shows_a_policy_model_id_harmlessly(tmp_path, capsys, monkeypatch) -> None:
    from otel_margin.cli import main

    model = "evil\x1b[2J[bold]\u202e:rocket:"
    path = tmp_path / "p[red].toml"
    path.write_text(f'[prices.models."{model.encode("unicode_escape").decode()}"]\n'
                    'input_per_mtok = "1"\noutput_per_mtok = "2"\n'.replace("\\x1b", "\\u001b"))
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["prices", model, "--policy", str(path)]) == 0
    out = capsys.readouterr().out
    assert [c for c in _hidden(out) if c != "\n"] == []
    assert printable(model) in out and f"{path} line 1" in out


def test_revenue_import_names_its_file_harmlessly(tmp_path, capsys) -> None:
    from otel_margin.cli import main

    path = tmp_path / "rev\x1b[2J\u202e.csv"
    path.write_text("customer,period,amount,currency,tier\nacme,2024-05,10,USD,pro\n", encoding="utf-8")
    assert main(["revenue", "import", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert [c for c in _hidden(out) if c != "\n"] == [] and f"{printable(str(path))}: 1 rows are valid" in out


def test_demo_tables_show_names_from_the_spans_harmlessly() -> None:
    from rich.console import Console

    from otel_margin.cli.demo import _table

    row = {"calls": 1, "errors": 0, "input_tokens": 10, "output_tokens": 5, "cost": Decimal("0.001"),
           "unpriced": 0, "revenue": Decimal("0")}
    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(_table("t", "feature", {HOSTILE: row, "[b]x[/b]": row}))
    rendered = out.getvalue()
    assert [c for c in _hidden(rendered) if c != "\n"] == []
    assert printable(HOSTILE) in rendered and "[b]x[/b]" in rendered
