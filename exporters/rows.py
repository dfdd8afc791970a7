"""One LLM span → one row of ``otel_margin.llm_calls``, and a batch of rows → the bytes ClickHouse ingests.

Spans come from our instrumentors, but also from other processes, other versions and
other languages (through the collector), so attribute types are not trusted: a value of
the wrong type is coerced when the meaning is unambiguous (``"12"`` tokens → 12), or the
column gets its empty value (NULL for the nullable money columns, never 0), and the
problem is counted. A row is never dropped for a bad attribute, and nothing here raises.
Labels stay true to the values: a token count the column cannot hold (beyond UInt64, negative,
not a number) is stored as 0 under cost status ``invalid`` with a NULL cost, never under a cost
priced from it, and a row without a cost is never ``priced`` or ``estimated`` (it is ``invalid``).

Rows are built straight into plain values, because this runs once per span and its cost
is the exporter's cost: a list in :data:`COLUMN_NAMES` order — the timestamp as Unix
microseconds (``DateTime64(6)``'s own value), money as exact decimal text with at most 12
decimals (never a float; ``None`` for NULL), tokens as integers. Well-formed values — what
our instrumentors write — are checked and passed through; no ``Decimal`` or ``datetime`` is
made for them.

:func:`encode_rows` turns a batch into one ClickHouse ``Native`` block (:data:`FORMAT`):
column by column, each column's distinct values encoded once. It is the format ClickHouse
reads cheapest — a row format costs the engine several times more per row, and in embedded
mode that engine runs in this process (``benchmarks/README.md``) — and it costs less to
build in Python than JSON text did. The low-cardinality string columns travel as
``String`` and are converted by ClickHouse on insert (``input_format_native_allow_types_conversion``,
which the exporter sets). Batches spooled by earlier releases (JSON rows) are still read and
inserted as they are (:data:`JSON_FORMAT`).
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any, Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otel_margin import attributes as a

TABLE = "llm_calls"
FORMAT = "Native"
"""The ClickHouse input format of :func:`encode_rows` bodies: a block that names its columns
(so the insert statement stays short: over HTTP a compressed insert's statement is a URL
parameter, which urllib3 re-encodes character by character). Several batches go into one
insert as one block (:func:`merge_blocks`), never as concatenated blocks."""
JSON_FORMAT = "JSONCompactEachRow"
"""The format of batches spooled by releases before the Native one (rows ``[…]`` joined by ``,``
or newlines); :func:`json_insert_block` makes them insertable."""
JSON_INSERT_FORMAT = "JSONCompactEachRowWithNames"

COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "DateTime64(6, 'UTC')"),
    ("trace_id", "String"),
    ("span_id", "String"),
    ("service_name", "LowCardinality(String)"),
    ("duration_ms", "Float64"),
    ("feature", "LowCardinality(String)"),
    ("tier", "LowCardinality(String)"),
    ("cohort", "LowCardinality(String)"),
    ("customer", "String"),
    ("provider", "LowCardinality(String)"),
    ("operation", "LowCardinality(String)"),
    ("request_model", "LowCardinality(String)"),
    ("response_model", "LowCardinality(String)"),
    ("usage_source", "LowCardinality(String)"),
    ("cost_status", "LowCardinality(String)"),
    ("price_version", "LowCardinality(String)"),
    ("cache_result", "LowCardinality(String)"),
    ("route_from_model", "LowCardinality(String)"),
    ("limit_action", "LowCardinality(String)"),
    ("error_type", "LowCardinality(String)"),
    ("unit_id", "String"),
    ("unit_kind", "LowCardinality(String)"),
    ("input_tokens", "UInt64"),
    ("output_tokens", "UInt64"),
    ("cache_read_tokens", "UInt64"),
    ("cache_write_tokens", "UInt64"),
    ("reasoning_tokens", "UInt64"),
    ("cost_usd", "Nullable(Decimal(38, 12))"),
    ("revenue_usd", "Nullable(Decimal(38, 12))"),
    ("cost_input_usd", "Decimal(38, 12)"),
    ("cost_cache_read_usd", "Decimal(38, 12)"),
    ("cost_cache_write_usd", "Decimal(38, 12)"),
    ("cost_output_usd", "Decimal(38, 12)"),
    ("cost_other_usd", "Decimal(38, 12)"),
    ("saved_usd", "Decimal(38, 12)"),
    ("cache_cost_usd", "Decimal(38, 12)"),
    ("stream", "Bool"),
    ("request_hash", "UInt64"),
)
"""Every column of ``llm_calls`` the exporter writes, in insert order (grouped by how they are
read; the table's own order does not matter to an insert), with its type."""

COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in COLUMNS)
COLUMN_TYPES: tuple[str, ...] = tuple(kind for _, kind in COLUMNS)

# The attribute behind each column, per kind, in COLUMNS order.
_STRINGS: tuple[tuple[str, str], ...] = (
    ("feature", a.MARGIN_FEATURE),
    ("tier", a.MARGIN_TIER),
    ("cohort", a.MARGIN_COHORT),
    ("customer", a.MARGIN_CUSTOMER),
    ("provider", a.GEN_AI_PROVIDER_NAME),
    ("operation", a.GEN_AI_OPERATION_NAME),
    ("request_model", a.GEN_AI_REQUEST_MODEL),
    ("response_model", a.GEN_AI_RESPONSE_MODEL),
    ("usage_source", a.MARGIN_USAGE_SOURCE),
    ("cost_status", a.MARGIN_COST_STATUS),
    ("price_version", a.MARGIN_PRICE_VERSION),
    ("cache_result", a.MARGIN_CACHE_RESULT),
    ("route_from_model", a.MARGIN_ROUTE_FROM_MODEL),
    ("limit_action", a.MARGIN_LIMIT_ACTION),
    ("error_type", a.ERROR_TYPE),
    ("unit_id", a.MARGIN_UNIT_ID),  # empty outside a unit: the row is its own unit (its span id)
    ("unit_kind", a.MARGIN_UNIT_KIND),
)
_TOKENS: tuple[tuple[str, str], ...] = (
    ("input_tokens", a.GEN_AI_USAGE_INPUT_TOKENS),
    ("output_tokens", a.GEN_AI_USAGE_OUTPUT_TOKENS),
    ("cache_read_tokens", a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
    ("cache_write_tokens", a.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
    ("reasoning_tokens", a.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
)
_MONEY: tuple[tuple[str, str], ...] = (  # the first two are nullable: NULL is "no price", never 0
    ("cost_usd", a.MARGIN_COST_USD),
    ("revenue_usd", a.MARGIN_REVENUE_USD),
    ("cost_input_usd", a.MARGIN_COST_INPUT_USD),
    ("cost_cache_read_usd", a.MARGIN_COST_CACHE_READ_USD),
    ("cost_cache_write_usd", a.MARGIN_COST_CACHE_WRITE_USD),
    ("cost_output_usd", a.MARGIN_COST_OUTPUT_USD),
    ("cost_other_usd", a.MARGIN_COST_OTHER_USD),
    ("saved_usd", a.MARGIN_SAVED_USD),
    ("cache_cost_usd", a.MARGIN_CACHE_COST_USD),  # nets the cache's saving; never added to cost
)
_NULLABLE_MONEY = 2
assert COLUMN_NAMES == (
    ("timestamp", "trace_id", "span_id", "service_name", "duration_ms")
    + tuple(c for c, _ in _STRINGS + _TOKENS + _MONEY) + ("stream", "request_hash")
)
_STRING_KEYS = tuple(key for _, key in _STRINGS)
_TOKEN_KEYS = tuple(key for _, key in _TOKENS)
_MONEY_KEYS = tuple(key for _, key in _MONEY)
_EMPTY_STRINGS = ("",) * len(_STRINGS)
_ZEROS = (0,) * len(_TOKENS)
_INDEX = {name: i for i, name in enumerate(COLUMN_NAMES)}
_FIRST_STRING, _FIRST_TOKEN, _FIRST_MONEY = _INDEX["feature"], _INDEX["input_tokens"], _INDEX["cost_usd"]
_FEATURE, _USAGE_SOURCE, _COST, _COST_STATUS, _ERROR_TYPE, _UNIT_ID, _SPAN_ID = (
    _INDEX[n] for n in ("feature", "usage_source", "cost_usd", "cost_status", "error_type", "unit_id", "span_id")
)
_STR, _INT = {str}, {int}
_COST_COMPONENTS = slice(_INDEX["cost_input_usd"], _INDEX["cost_other_usd"] + 1)
_ZERO_COMPONENTS = ["0"] * (_COST_COMPONENTS.stop - _COST_COMPONENTS.start)
_PRICED = ("priced", "estimated")

_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,26}(?:\.[0-9]{1,12})?").fullmatch
"""Money text ClickHouse reads into Decimal(38, 12) exactly as written (no rounding, no overflow)."""
_HASH_HEX = re.compile(r"[0-9a-f]{16}").fullmatch
"""A request fingerprint as :mod:`otel_margin.request_hash` writes it (the collector view reads the same)."""
_SCALE = Decimal(1).scaleb(-12)  # Decimal(38, 12)
_MAX_MONEY = Decimal(10) ** 26  # 38 digits, 12 after the point
_MAX_UINT64 = 2**64 - 1
_MAX_NS = 2**63  # span times are int64 nanoseconds; DateTime64(6) reaches 2299


def span_to_row(span: ReadableSpan, *, service_name: str, problems: Counter[str] | None = None) -> list[Any] | None:
    """The ``llm_calls`` row for ``span`` (JSON values in :data:`COLUMN_NAMES` order), or ``None``.

    ``None`` means it is not an LLM span (no ``gen_ai.operation.name``). ``problems``
    (optional) counts what had to be coerced or emptied, keyed ``"<column>:coerced"`` /
    ``"<column>:invalid"``.
    """
    attrs = _as_dict(span.attributes)
    if a.GEN_AI_OPERATION_NAME not in attrs:
        return None
    counter: Counter[str] = problems if problems is not None else Counter()
    context = span.context
    start = span.start_time or 0
    end = span.end_time or start
    if type(start) is not int or not 0 <= start < _MAX_NS:
        counter["timestamp:invalid"] += 1  # keep the row, stamped when it was exported
        start = end = time.time_ns()
    elif type(end) is not int:
        end = start
    get = attrs.get
    # Fetch each kind in one C-level pass; look closer only when a value is not well formed.
    strings = list(map(get, _STRING_KEYS, _EMPTY_STRINGS))
    if set(map(type, strings)) != _STR:
        for i, (column, _) in enumerate(_STRINGS):
            if type(strings[i]) is not str:
                strings[i] = _string(strings[i], column, counter)
    tokens = list(map(get, _TOKEN_KEYS, _ZEROS))
    usage_invalid = False
    if set(map(type, tokens)) != _INT or min(tokens) < 0 or max(tokens) > _MAX_UINT64:
        invalid = sum(counter[f"{column}:invalid"] for column, _ in _TOKENS)
        tokens = [_tokens(value, column, counter) for value, (column, _) in zip(tokens, _TOKENS)]
        usage_invalid = sum(counter[f"{column}:invalid"] for column, _ in _TOKENS) > invalid
    money = list(map(get, _MONEY_KEYS))
    for i, value in enumerate(money):
        if type(value) is str and _PLAIN_DECIMAL(value):
            continue
        if value is not None:
            value = money[i] = _money(value, _MONEY[i][0], counter)
        if value is None and i >= _NULLABLE_MONEY:
            money[i] = "0"
    stream = get(a.GEN_AI_REQUEST_STREAM, False)
    if type(stream) is not bool:
        stream = _flag(stream, "stream", counter)
    row: list[Any] = [
        start // 1000,
        format(context.trace_id, "032x") if context else "",
        format(context.span_id, "016x") if context else "",
        service_name,
        max(end - start, 0) / 1e6,
        *strings,
        *tokens,
        *money,
        stream,
        _request_hash(get(a.MARGIN_REQUEST_HASH), counter),
    ]
    if not row[_FEATURE]:
        row[_FEATURE] = a.UNATTRIBUTED
    if not row[_USAGE_SOURCE]:
        row[_USAGE_SOURCE] = "provider"
    if not row[_UNIT_ID]:
        row[_UNIT_ID] = row[_SPAN_ID]  # a call outside any unit is its own unit: its span id
    if usage_invalid:
        # A count the column cannot hold (beyond UInt64, negative, not a number) is stored as 0:
        # never under a cost priced from it.
        row[_COST_STATUS], row[_COST] = "invalid", None
        row[_COST_COMPONENTS] = _ZERO_COMPONENTS
    elif not row[_COST_STATUS]:
        # An unpriced call is never $0: no cost attribute means NULL and "unpriced".
        row[_COST_STATUS] = "unpriced" if row[_COST] is None else "priced"
    elif row[_COST] is None and row[_COST_STATUS] in _PRICED:
        row[_COST_STATUS] = "invalid"  # a row without a cost is never "priced"
    if not row[_ERROR_TYPE] and span.status is not None and span.status.status_code is StatusCode.ERROR:
        row[_ERROR_TYPE] = "_OTHER"  # the semantic conventions' fallback value
    return row


@dataclass(frozen=True, slots=True)
class Block:
    """Rows as one :data:`FORMAT` (``Native``) block, and the size of each column's data in it.

    The sizes are what lets :func:`merge_blocks` join blocks without decoding them: one
    insert must be one block, because ClickHouse deduplicates a retried insert of several
    blocks by their number as well as its token.
    """

    columns: tuple[str, ...]
    rows: int
    body: bytes
    sizes: tuple[int, ...]


def encode_rows(
    rows: Sequence[Sequence[Any]], problems: Counter[str] | None = None, columns: Sequence[str] = COLUMN_NAMES
) -> Block:
    """``rows`` (lists of values in ``columns`` order, as :func:`span_to_row` makes them) as one block.

    A string that UTF-8 cannot carry (a lone surrogate) has the offending characters replaced
    by U+FFFD and is counted in ``problems`` as ``"<column>:coerced"``; a value of another
    type than the column's is coerced the way :func:`span_to_row` coerces attributes.
    Raises ``KeyError`` for a column ``llm_calls`` does not have.
    """
    counter: Counter[str] = problems if problems is not None else Counter()
    values = list(zip(*rows)) if rows else [()] * len(columns)
    data = [_ENCODERS[_WIRE_TYPES[column]](column_values, column, counter)
            for column, column_values in zip(columns, values, strict=True)]
    return _block(tuple(columns), len(rows), data)


def merge_blocks(blocks: Sequence[Block]) -> Block:
    """One block of the rows of ``blocks`` (same columns), in order: equal to encoding all their rows at once.

    Raises ``ValueError`` when a block's sizes do not add up to its body (a damaged batch).
    """
    first = blocks[0]
    if len(blocks) == 1:
        return first
    pieces = [_column_data(block) for block in blocks]
    data = []
    for index, column in enumerate(first.columns):
        parts = [piece[index] for piece in pieces]
        if _WIRE_TYPES[column].startswith("Nullable("):  # every block's null map, then every block's values
            parts = [part[: block.rows] for part, block in zip(parts, blocks)] + [
                part[block.rows :] for part, block in zip(parts, blocks)]
        data.append(b"".join(parts))
    return _block(first.columns, sum(block.rows for block in blocks), data)


def check_block(block: Block) -> None:
    """Raise ``ValueError`` unless ``block``'s columns and sizes describe its body (a damaged batch)."""
    _column_data(block)


def _block(columns: tuple[str, ...], rows: int, data: list[bytes]) -> Block:
    out = [_varint(len(columns)), _varint(rows)]
    for column, column_data in zip(columns, data):
        out += (_HEADERS[column], column_data)
    return Block(columns, rows, b"".join(out), tuple(map(len, data)))


def _column_data(block: Block) -> list[memoryview]:
    body = memoryview(block.body)
    at = len(_varint(len(block.columns))) + len(_varint(block.rows))
    data = []
    for column, size in zip(block.columns, block.sizes, strict=True):
        header = _HEADERS[column]
        if body[at : at + len(header)] != header:
            raise ValueError(f"column {column!r} is not where the sizes put it")
        at += len(header)
        data.append(body[at : at + size])
        at += size
    if at != len(body):
        raise ValueError(f"the column sizes add up to {at} bytes, the block has {len(body)}")
    return data


def json_insert_block(columns: Sequence[str], body: bytes) -> bytes:
    """A :data:`JSON_FORMAT` body (an earlier release's batch, or several joined by newlines)
    as one :data:`JSON_INSERT_FORMAT` block: the column names in a first line."""
    return _names_line(tuple(columns)) + body


@functools.lru_cache(maxsize=16)
def _names_line(columns: tuple[str, ...]) -> bytes:
    return (json.dumps(list(columns), separators=(",", ":")) + "\n").encode()


# --- Native encoding ---------------------------------------------------------------------


def _varint(n: int) -> bytes:
    """ClickHouse's unsigned LEB128."""
    if n < 0x80:
        return _SMALL_VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS = [bytes((n,)) for n in range(0x80)]


def _string_bytes(text: str) -> bytes:
    data = text.encode()
    return _varint(len(data)) + data


class _Encoded(dict):
    """Value → its wire bytes, for one column of one batch: each distinct value is encoded once."""

    __slots__ = ("convert",)

    def __init__(self, convert: Any) -> None:
        super().__init__()
        self.convert = convert

    def __missing__(self, value: Any) -> bytes:
        encoded = self[value] = self.convert(value)
        return encoded


def _strings(values: Sequence[Any], column: str, problems: Counter[str]) -> bytes:
    if set(map(type, values)) - _STR:
        values = [value if type(value) is str else _string(value, column, problems) for value in values]
    repaired: set[str] = set()

    def convert(text: str) -> bytes:
        try:
            return _string_bytes(text)
        except UnicodeEncodeError:
            # Valid surrogate pairs become their character, lone ones U+FFFD.
            repaired.add(text)
            return _string_bytes(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))

    data = b"".join(map(_Encoded(convert).__getitem__, values))
    if repaired:
        problems[f"{column}:coerced"] += sum(value in repaired for value in values)
    return data


def _uint64s(values: Sequence[Any], column: str, problems: Counter[str]) -> bytes:
    try:
        return array("Q", values).tobytes()
    except (TypeError, OverflowError):
        return array("Q", [_tokens(value, column, problems) for value in values]).tobytes()


def _float64s(values: Sequence[Any], column: str, problems: Counter[str]) -> bytes:
    try:
        return array("d", values).tobytes()
    except (TypeError, OverflowError):
        return array("d", [value if type(value) is float else _number(value, column, problems)
                           for value in values]).tobytes()


def _micros(values: Sequence[Any], column: str, problems: Counter[str]) -> bytes:
    return array("q", values).tobytes()  # span_to_row's own values: a bad one is a bug, not input


def _flags(values: Sequence[Any], column: str, problems: Counter[str]) -> bytes:
    if set(map(type, values)) - _BOOL:
        values = [_flag(value, column, problems) for value in values]
    return bytes(values)


def _decimal_bytes(text: str) -> bytes:
    """Plain decimal text (:data:`_PLAIN_DECIMAL`) as Decimal(38, 12)'s Int128, little-endian."""
    whole, _, fraction = text.partition(".")
    return int(whole + fraction.ljust(12, "0")).to_bytes(16, "little", signed=True)


def _money_encoder(column: str, problems: Counter[str]) -> _Encoded:
    def convert(value: Any) -> bytes:
        if type(value) is not str or not _PLAIN_DECIMAL(value):
            value = _money(value, column, problems)  # an earlier release's text ("0E-12")
        return _ZERO_DECIMAL if value is None else _decimal_bytes(value)

    return _Encoded(convert)


def _decimals(values: Sequence[Any], column: str, problems: Counter[str]) -> bytes:
    return b"".join(map(_money_encoder(column, problems).__getitem__, values))


def _nullable_decimals(values: Sequence[Any], column: str, problems: Counter[str]) -> bytes:
    encoded = _money_encoder(column, problems)
    data = b"".join(map(encoded.__getitem__, values))
    return bytes(map(_IS_NONE, values)) + data  # the null map, then the values (0 under a NULL)


def _number(value: Any, column: str, problems: Counter[str]) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    problems[f"{column}:invalid"] += 1
    return 0.0


_ZERO_DECIMAL = bytes(16)
_IS_NONE = functools.partial(operator.is_, None)
_BOOL = {bool}
_ENCODERS = {
    "String": _strings,
    "UInt64": _uint64s,
    "Float64": _float64s,
    "Bool": _flags,
    "DateTime64(6, 'UTC')": _micros,
    "Decimal(38, 12)": _decimals,
    "Nullable(Decimal(38, 12))": _nullable_decimals,
}
_WIRE_TYPES = {name: "String" if kind.startswith("LowCardinality(") else kind for name, kind in COLUMNS}
"""The type each column travels as (ClickHouse converts ``String`` to ``LowCardinality``)."""
_HEADERS = {name: _string_bytes(name) + _string_bytes(kind) for name, kind in _WIRE_TYPES.items()}
assert set(_WIRE_TYPES.values()) <= set(_ENCODERS)


def register_columns(columns: Sequence[tuple[str, str]]) -> None:
    """Let :func:`encode_rows` encode the columns of another table (``outcomes``, ``cost_lines``).

    A name ``llm_calls`` already has must have its type; raises ``ValueError`` otherwise.
    """
    for name, kind in columns:
        wire = "String" if kind.startswith("LowCardinality(") else kind
        if _WIRE_TYPES.setdefault(name, wire) != wire or wire not in _ENCODERS:
            raise ValueError(f"column {name!r} of type {kind} clashes with {_WIRE_TYPES[name]}")
        _HEADERS.setdefault(name, _string_bytes(name) + _string_bytes(wire))


# --- coercion ----------------------------------------------------------------------------


def _as_dict(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    if not attributes:
        return {}
    if type(attributes) is dict:
        return attributes
    # The SDK's BoundedAttributes reads item by item in Python; its copy() is one C call.
    copy = getattr(attributes, "copy", None)
    plain = copy() if callable(copy) else None
    return plain if type(plain) is dict else dict(attributes)


def _string(value: Any, column: str, problems: Counter[str]) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bool, int, float)):
        problems[f"{column}:coerced"] += 1
        return str(value).lower() if isinstance(value, bool) else str(value)
    problems[f"{column}:invalid"] += 1  # a sequence: no single unambiguous string
    return ""


def _tokens(value: Any, column: str, problems: Counter[str]) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_UINT64:
        return int(value)
    number: int | None = None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is not None and 0 <= number <= _MAX_UINT64:
        problems[f"{column}:coerced"] += 1
        return number
    problems[f"{column}:invalid"] += 1
    return 0


def _money(value: Any, column: str, problems: Counter[str]) -> str | None:
    """Exact decimal text with 12 decimals (rounded half-even), or ``None``."""
    if value is None:
        return None
    amount: Decimal | None = None
    coerced = False
    if isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            amount = None
    elif isinstance(value, int) and not isinstance(value, bool):
        amount, coerced = Decimal(value), True
    elif isinstance(value, float) and math.isfinite(value):
        amount, coerced = Decimal(repr(value)), True  # the shortest repr, not the binary expansion
    if amount is None or not amount.is_finite() or amount.copy_abs() >= _MAX_MONEY:  # abs() rounds to 28 digits
        problems[f"{column}:invalid"] += 1
        return None
    try:
        with localcontext() as exact:
            exact.prec = 60  # 38 digits fit; the default 28 would reject large amounts
            amount = amount.quantize(_SCALE, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        problems[f"{column}:invalid"] += 1
        return None
    if coerced:
        problems[f"{column}:coerced"] += 1
    return format(amount, "f")


def _request_hash(value: Any, problems: Counter[str]) -> int:
    """``margin.request.hash`` (16 hex digits) as the ``UInt64`` it spells; 0 when absent or malformed."""
    if value is None:
        return 0
    if type(value) is str and _HASH_HEX(value):
        return int(value, 16)
    problems["request_hash:invalid"] += 1
    return 0


def _flag(value: Any, column: str, problems: Counter[str]) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        problems[f"{column}:coerced"] += 1
        return True
    if text in ("false", "0"):
        problems[f"{column}:coerced"] += 1
        return False
    problems[f"{column}:invalid"] += 1
    return False
