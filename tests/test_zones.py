"""Floors and zones: zone() as a property, floors and exceptions from the policy file, and the
zone on every margin view of ``otel-margin report`` (terminal and JSON) over real chDB."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin.analysis import margin, zones
from otel_margin.cli import main
from otel_margin.policy import PolicyError, parse_policy

RANK = {"red": 0, "yellow": 1, "green": 2}
_numbers = st.decimals(min_value=-1000, max_value=100, allow_nan=False, allow_infinity=False, places=4)


@given(margin_pct=_numbers, floor=st.decimals(min_value=0, max_value=99, places=2),
       band=st.decimals(min_value="0.01", max_value=50, places=2))
def test_zone_is_red_below_the_floor_yellow_in_the_band_green_above(margin_pct, floor, band):
    found = zones.zone(margin_pct, floor, band)
    assert (found == "red") == (margin_pct < floor)
    assert (found == "yellow") == (floor <= margin_pct < floor + band)
    assert (found == "green") == (margin_pct >= floor + band)


@given(low=_numbers, high=_numbers, floor=st.decimals(min_value=0, max_value=99, places=2),
       band=st.decimals(min_value="0.01", max_value=50, places=2))
def test_a_higher_margin_is_never_in_a_worse_zone(low, high, floor, band):
    low, high = sorted((low, high))
    assert RANK[zones.zone(low, floor, band)] <= RANK[zones.zone(high, floor, band)]


def test_zone_edges():
    assert zones.zone(Decimal("54.999"), 55, 5) == "red"
    assert zones.zone(55, 55, 5) == "yellow"
    assert zones.zone(Decimal("59.99"), 55, 5) == "yellow"
    assert zones.zone(60, 55, 5) == "green"


POLICY = """
[features.search]
category = "growth"

[features.docs]
category = "premium"
yellow_band_pts = 10

[features.chat]
floor_pct = 62.5

[zones]
premium_floor_pct = 70

[[exceptions]]
feature = "search"
owner = "jane@example.com"
reason = "land-and-expand pricing until Q2"
review_date = 2027-03-31
"""


def test_floors_come_from_the_feature_its_category_or_the_default():
    floors = zones.Floors(parse_policy(POLICY))
    assert (floors.floor("search").floor_pct, floors.floor("search").band_pts) == (40, 5)  # growth's default
    assert (floors.floor("docs").floor_pct, floors.floor("docs").band_pts) == (70, 10)  # [zones] premium
    chat = floors.floor("chat")
    assert (chat.floor_pct, chat.category, chat.source) == (Decimal("62.5"), "core", "otel-margin.toml line 10")
    assert floors.floor("never-named").floor_pct == 55  # the default category, core
    other = zones.Floors(parse_policy('[zones]\ndefault_category = "growth"\nyellow_band_pts = 8\n'))
    assert (other.floor("x").floor_pct, other.floor("x").band_pts) == (40, 8)


def test_an_exception_covers_its_feature_until_its_review_date():
    floors = zones.Floors(parse_policy(POLICY))
    covering = floors.exception("search", date(2027, 3, 31))
    assert covering is not None and covering.owner == "jane@example.com"
    assert covering.where == "otel-margin.toml [[exceptions]] entry 1"
    assert floors.exception("search", date(2027, 4, 1)) is None
    assert floors.exception("chat", date(2027, 1, 1)) is None


def test_bad_floor_settings_name_the_line_and_the_fix():
    with pytest.raises(PolicyError) as raised:
        parse_policy('[features.chat]\nfloor_pct = 120\ncategory = "premum"\n[[exceptions]]\nfeature = "chat"\n'
                     'owner = "x"\nreason = "y"\nreview_date = "next spring"\n')
    assert raised.value.errors == [
        "otel-margin.toml line 2: [features.chat] floor_pct = 120 is not valid; expected a margin percentage "
        "from 0 to 99, like 55",
        'otel-margin.toml line 3: [features.chat] category = "premum" is not valid; expected one of growth, '
        "core, premium",
        'otel-margin.toml line 8: [[exceptions]] (entry 1) review_date = "next spring" is not valid; expected '
        "a date like 2027-03-31",
    ]


# --- every margin view shows the zone ---------------------------------------------------------------

TODAY = datetime.now(timezone.utc).date()


def _seed(client: Any, db: str) -> None:
    # chat: revenue 1.00, cost 0.42 → 58 % (core floor 55: yellow). search: 0.70 → 30 % (growth
    # floor 40: red, but under an exception). docs: 0.20 → 80 % (premium 70 + 10: green).
    moment = datetime.combine(TODAY, datetime.min.time(), timezone.utc) + timedelta(hours=1)
    rows = [call(timestamp=moment, feature=feature, cost_usd=Decimal(cost), revenue_usd=Decimal(1))
            for feature, cost in (("chat", "0.42"), ("search", "0.70"), ("docs", "0.20"))]
    insert_calls(client, db, rows)


def test_margin_rows_are_zoned_by_their_feature(chdb_client, database):
    _seed(chdb_client, database)
    rows = margin.margin_by(chdb_client, "feature", start=TODAY, end=TODAY, database=database,
                            policy=parse_policy(POLICY))
    found = {item.row.key: item for item in zones.zoned(rows, parse_policy(POLICY), today=TODAY)}
    assert {key: item.zone for key, item in found.items()} == {"chat": "red", "search": "red", "docs": "green"}
    assert found["search"].exception is not None and found["chat"].exception is None


def test_report_shows_the_zone_in_json_and_in_the_terminal(chdb_client, chdb_path, database, monkeypatch, capsys,
                                                           tmp_path):
    _seed(chdb_client, database)
    policy = tmp_path / "otel-margin.toml"
    policy.write_text(POLICY.replace("floor_pct = 62.5", "floor_pct = 55"))
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    monkeypatch.setenv("OTEL_MARGIN_POLICY", str(policy))
    capsys.readouterr()
    assert main(["report", "--format", "json", "--database", database]) == 0
    report = json.loads(capsys.readouterr().out)
    features = {row["key"]: row for row in report["zones"]["features"]}
    assert {key: row["zone"] for key, row in features.items()} == {"chat": "yellow", "search": "red", "docs": "green"}
    assert features["search"]["exception_owner"] == "jane@example.com"
    assert features["search"]["exception_review_date"] == "2027-03-31"
    assert (features["docs"]["floor_pct"], features["docs"]["band_pts"]) == ("70", "10")
    # The total (margin 56 %) against the default floor (core, 55 %): yellow.
    assert [row["zone"] for row in report["zones"]["total"]] == ["yellow"]
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["report", "--database", database]) == 0
    out = capsys.readouterr().out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if "(floor " in line}
    assert "yellow (floor 55%)" in lines["chat"]
    assert "red (floor 40%), exception until 2027-03-31: jane@example.com" in lines["search"]
    assert "green (floor 70%)" in lines["docs"]


_values = st.one_of(st.integers(-200, 200), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=6), st.booleans(), st.sampled_from(["55", "core", "PREMIUM", "x"]))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else "-inf" if value == -float("inf")
                                             else repr(value))
    if isinstance(value, str):  # a TOML basic string: JSON's escapes, and DEL, which TOML forbids raw
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return str(value)


@given(floor=_values, band=_values, category=_values)
def test_any_floor_setting_is_a_floor_in_range_or_an_error_naming_its_line(floor, band, category):
    text = (f"[features.chat]\nfloor_pct = {_toml(floor)}\nyellow_band_pts = {_toml(band)}\n"
            f"category = {_toml(category)}\n")
    try:
        policy = parse_policy(text)
    except PolicyError as error:
        assert all(message.startswith("otel-margin.toml line ") and "expected" in message for message in error.errors)
        return
    found = zones.Floors(policy).floor("chat")
    assert 0 <= found.floor_pct < 100 and 0 < found.band_pts <= 50 and found.category in zones.CATEGORY_FLOORS
    assert zones.zone(found.floor_pct, found.floor_pct, found.band_pts) == "yellow"
