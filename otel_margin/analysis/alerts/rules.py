"""Alert rules as files: the built-in ones in ``rules/``, the user's in directories of their own.

A rule is one SQL file, ``NAME.sql`` (the rule file's name is its stem). ``$database`` is filled
in (quoted) and every ``{name:Type}`` is a bound parameter, given from
:func:`otel_margin.analysis.alerts.thresholds.parameters`. It returns one row per breach with
:data:`COLUMNS` (extra columns are kept as details). docs/alerts.md, *Writing your own rule*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Iterable

from otel_margin.schema import DEFAULT_DATABASE, quote_identifier

BUILTIN_RULES_DIR: Traversable = resources.files(__package__).joinpath("rules")
"""The shipped rule files."""

SEVERITIES: tuple[str, ...] = ("info", "yellow", "red")
"""A rule's severities, least severe first."""

COLUMNS: tuple[tuple[str, str], ...] = (
    ("rule", "String"), ("severity", "String"), ("feature", "String"), ("customer", "String"),
    ("value", "Float64"), ("threshold", "Float64"), ("trend", "String"), ("driver", "String"),
)
"""The columns every rule returns, with their types."""

COLUMNS_TEXT = ", ".join(f"{name} {type_name}" for name, type_name in COLUMNS)

_PARAMETER = re.compile(r"\{(\w+):")
_COMMENT = re.compile(r"--[^\n]*")


@dataclass(frozen=True, slots=True)
class RuleFailure:
    """A rule that could not be loaded or run: ``message`` names the file and the fix."""

    name: str
    label: str
    message: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule file."""

    name: str
    """The file's stem."""
    label: str
    """How messages name the file (``rules/margin_3d_red.sql`` for a built-in one, else its path)."""
    sql: str
    parameters: tuple[str, ...]
    """The ``{name:Type}`` parameters it refers to, in order of first use."""

    def render(self, *, database: str = DEFAULT_DATABASE) -> str:
        """The SQL with its database filled in, ready to run with its parameters bound."""
        return self.sql.replace("$database", quote_identifier(database)).strip().rstrip(";")


def rule_from_text(name: str, label: str, sql: str) -> Rule:
    """A :class:`Rule` from its file's text (parameters found outside ``--`` comments)."""
    found = _PARAMETER.findall(_COMMENT.sub("", sql))
    return Rule(name, label, sql, tuple(dict.fromkeys(found)))


def load_rules(directories: Iterable[str | Path], *, builtin: bool = True) -> tuple[list[Rule], list[RuleFailure]]:
    """The built-in rules (unless ``builtin`` is false), then each directory's ``*.sql`` in name order.

    A file named like an earlier one replaces it (so a user's ``margin_3d_red.sql`` replaces the
    built-in). A file or directory that cannot be read is a :class:`RuleFailure`; the others load.
    """
    found: dict[str, Rule] = {}
    failures: list[RuleFailure] = []
    if builtin:
        for entry in sorted(BUILTIN_RULES_DIR.iterdir(), key=lambda item: item.name):
            if entry.name.endswith(".sql"):
                name = entry.name[: -len(".sql")]
                found[name] = rule_from_text(name, f"rules/{entry.name}", entry.read_text("utf-8"))
    for directory in directories:
        path = Path(directory)
        if not path.is_dir():
            failures.append(RuleFailure(str(path), str(path), f"{path}: no such rules directory; create it, or fix "
                                        "[alerts] rules_dir in the policy file or --rules"))
            continue
        for file in sorted(path.glob("*.sql")):
            try:
                text = file.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as error:
                failures.append(RuleFailure(file.stem, str(file), f"{file}: cannot be read ({error}); save it as "
                                            "UTF-8 text readable by this user"))
                continue
            if not _COMMENT.sub("", text).strip():
                failures.append(RuleFailure(file.stem, str(file), f"{file}: is empty; write one SELECT returning "
                                            f"{COLUMNS_TEXT}"))
                continue
            found[file.stem] = rule_from_text(file.stem, str(file), text)
    return list(found.values()), failures
