"""The read side's SQL: ``otel_margin/analysis/sql/<name>.sql`` with its database filled in.

Values in a query are ``{name:Type}`` placeholders, passed as ``parameters=``; the database
is the only thing filled in here, always through :func:`otel_margin.schema.quote_identifier`.
"""

from __future__ import annotations

from importlib import resources
from string import Template

from otel_margin.schema import DEFAULT_DATABASE, quote_identifier


def query(name: str, *, database: str = DEFAULT_DATABASE) -> str:
    """The query ``sql/<name>.sql`` of this package, ready to run with its parameters bound."""
    text = resources.files(__package__).joinpath("sql", f"{name}.sql").read_text("utf-8")
    return Template(text).substitute(database=quote_identifier(database)).strip().rstrip(";")
