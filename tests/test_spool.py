"""The spool: atomic, ordered, bounded, lockable; survives half-written files; seals groups durably."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from otel_margin.exporters.rows import FORMAT, JSON_FORMAT, encode_rows, merge_blocks
from otel_margin.exporters.spool import Spool, SpoolCorruption

COLUMNS = ("timestamp", "span_id", "input_tokens", "cost_usd")


def rows(*span_ids: str) -> list[list]:
    return [[1767323045678901, s, 1, "0.5"] for s in span_ids]


def block(*span_ids: str):
    return encode_rows(rows(*span_ids), columns=COLUMNS)


def test_batches_read_back_in_append_order_byte_for_byte(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    for i in range(5):
        spool.append(f"token-{i}", block(f"s{i}", f"t{i}"))
    batches = [spool.read(path) for path in spool.pending()]
    assert [b.token for b in batches] == [f"token-{i}" for i in range(5)]
    assert batches[3].block() == block("s3", "t3") and batches[3].rows == 2 and batches[3].columns == COLUMNS
    assert batches[3].members == (batches[3].path,)


def test_the_oldest_pending_batch_says_since_when_rows_wait(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    assert spool.waiting_since_ns() is None
    before = time.time_ns()
    first = spool.append("a", block("s"))
    spool.append("b", block("t"))
    assert before <= spool.waiting_since_ns() <= time.time_ns()
    spool.remove(spool.read(first))
    assert spool.waiting_since_ns() >= before  # now the second's
    (tmp_path / "-foreign.batch").write_bytes(b"")  # a name without a time waits since 0
    assert spool.waiting_since_ns() == 0


def test_half_written_tmp_file_is_ignored_then_cleaned_when_stale(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append("good", block("s"))
    fresh = tmp_path / ".00000000000000000001-00000001-000001.batch.tmp"
    stale = tmp_path / ".00000000000000000002-00000001-000002.batch.tmp"
    for path in (fresh, stale):
        path.write_text('{"v": 2, "token": "half", "columns": [], "rows": 9}\n[1,')
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert [spool.read(p).token for p in spool.pending()] == ["good"]
    assert spool.clean_stale_tmp() == 1
    assert fresh.exists() and not stale.exists()


def test_a_damaged_batch_is_reported_not_guessed(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    path = spool.append("t", block("a", "b"))
    path.write_bytes(path.read_bytes()[:-5])  # damaged from outside: the body is shorter than its header says
    with pytest.raises(SpoolCorruption) as raised:
        spool.read(path)
    assert raised.value.path == path
    with pytest.raises(SpoolCorruption):
        spool.next_ingest(max_rows=100, max_bytes=10**6)


def test_append_refuses_beyond_max_bytes(tmp_path):
    spool = Spool(tmp_path, max_bytes=600)
    results = [spool.append(f"t{i}", block("x" * 100)) for i in range(10)]
    assert results[0] is not None
    assert None in results
    assert spool.size_bytes() <= 600


def test_remove_and_reject_take_a_batch_out_of_the_replay_order(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    first = spool.read(spool.append("a", block("a")))
    second = spool.append("b", block("b"))
    spool.remove(first)
    target = spool.reject(second)
    assert spool.pending() == [] and target.exists() and target.parent.name == "rejected"


def test_oldest_batches_are_sealed_into_one_group_within_the_limits(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    paths = [spool.append(f"t{i}", block(f"a{i}", f"b{i}")) for i in range(5)]
    group = spool.next_ingest(max_rows=6, max_bytes=10**6)
    assert group.members == tuple(paths[:3]) and group.rows == 6
    # One block, as if its rows had been encoded together: an insert of several blocks would
    # not be deduplicated by its token alone.
    assert group.block() == block(*[f"{x}{i}" for i in range(3) for x in "ab"])
    assert group.path.suffix == ".group" and group.path.exists()
    # Sealed: after a crash (a new Spool on the same directory), the same group comes back
    # first, with the same token, even though a newer batch is waiting too.
    again = Spool(tmp_path, max_bytes=10**6).next_ingest(max_rows=100, max_bytes=10**6)
    assert (again.path, again.token, again.members, again.body) == (group.path, group.token, group.members, group.body)
    spool.remove(group)
    assert spool.pending() == paths[3:] and not group.path.exists()
    rest = spool.next_ingest(max_rows=100, max_bytes=10**6)
    assert rest.members == tuple(paths[3:]) and rest.token != group.token
    spool.remove(rest)
    assert spool.next_ingest(max_rows=100, max_bytes=10**6) is None


def test_newest_bounds_what_is_taken_to_the_batches_that_were_waiting(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    waiting = [spool.append(f"t{i}", block(f"w{i}")) for i in range(2)]
    later = spool.append("late", block("late"))  # arrived after the drain looked
    first = spool.next_ingest(max_rows=100, max_bytes=10**6, newest=waiting[-1].name)
    assert first.members == tuple(waiting)
    spool.remove(first)
    assert spool.next_ingest(max_rows=100, max_bytes=10**6, newest=waiting[-1].name) is None
    assert spool.next_ingest(max_rows=100, max_bytes=10**6).path == later


def test_a_lone_batch_keeps_its_own_token_and_groups_do_not_mix_columns(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append("solo", block("a"))
    spool.append("other-columns", encode_rows([[0, "b"]], columns=COLUMNS[:2]))
    first = spool.next_ingest(max_rows=100, max_bytes=10**6)
    assert (first.token, first.path.suffix, first.rows) == ("solo", ".batch", 1)


def test_a_group_interrupted_while_removing_members_replays_the_rest_with_its_token(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    for i in range(3):
        spool.append(f"t{i}", block(f"s{i}"))
    group = spool.next_ingest(max_rows=100, max_bytes=10**6)
    group.members[0].unlink()  # the insert committed; the drainer died after the first removal
    again = spool.next_ingest(max_rows=100, max_bytes=10**6)
    assert again.token == group.token and again.members == group.members[1:] and again.rows == 2
    for path in again.members:
        path.unlink()  # ... and after the last one
    assert spool.next_ingest(max_rows=100, max_bytes=10**6) is None and not group.path.exists()


def test_a_dissolved_group_leaves_its_batches_to_go_one_by_one(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    for i in range(3):
        spool.append(f"t{i}", block(f"s{i}"))
    group = spool.next_ingest(max_rows=100, max_bytes=10**6)
    spool.dissolve(group)
    single = spool.next_ingest(max_rows=1, max_bytes=10**6)
    assert single.token == "t0" and single.members == group.members[:1]


def test_a_version_1_batch_from_the_previous_release_is_read_as_rows_of_today(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    header = {"v": 1, "token": "old", "columns": ["timestamp", "span_id", "cost_usd"], "rows": 2}
    lines = [json.dumps(header), json.dumps([1735787045678901, "a", "0E-12"]), json.dumps([0, "b\t", None])]
    path = tmp_path / "00000000000000000001-00000001-000001.batch"
    path.write_text("\n".join(lines) + "\n")
    batch = spool.read(path)
    assert (batch.token, batch.rows, batch.columns, batch.format) == ("old", 2, ("timestamp", "span_id", "cost_usd"),
                                                                      FORMAT)
    assert batch.block() == encode_rows([[1735787045678901, "a", "0"], [0, "b\t", None]], columns=batch.columns)


def test_a_version_2_batch_of_json_rows_is_inserted_as_it_was_and_never_grouped_with_native_ones(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    json_rows = b'["2025-01-02 03:04:05.678901","a",1,"0.5"]'
    header = {"v": 2, "token": "json", "format": JSON_FORMAT, "columns": list(COLUMNS), "rows": 1,
              "bytes": len(json_rows)}
    (tmp_path / "00000000000000000001-00000001-000001.batch").write_bytes(json.dumps(header).encode() + b"\n" + json_rows)
    spool.append("native", block("b"))
    first = spool.next_ingest(max_rows=100, max_bytes=10**6)
    assert (first.token, first.format, first.body) == ("json", JSON_FORMAT, json_rows)
    spool.remove(first)
    assert spool.next_ingest(max_rows=100, max_bytes=10**6).format == FORMAT


def test_a_batch_whose_column_sizes_do_not_match_its_body_is_damage(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    path = spool.append("t", block("a", "b"))
    header, body = path.read_bytes().split(b"\n", 1)
    fields = json.loads(header)
    fields["sizes"][1] += 1
    fields["sizes"][2] -= 1
    path.write_bytes(json.dumps(fields).encode() + b"\n" + body)
    with pytest.raises(SpoolCorruption):
        spool.read(path)


def test_drain_lock_is_exclusive_across_processes(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(tmp_path / '.drain.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()\n"
        )],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with spool.drain_lock() as acquired:
            assert acquired is False
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    with spool.drain_lock() as acquired:
        assert acquired is True
        with Spool(tmp_path, max_bytes=1).drain_lock() as second:
            assert second is False  # a second drainer in the same process is excluded too


_rows = st.lists(
    st.tuples(st.integers(min_value=0, max_value=2**62), st.text(max_size=30), st.integers(min_value=0, max_value=2**64 - 1),
              st.none() | st.decimals(min_value=-(10**20), max_value=10**20, places=12).map(lambda d: format(d, "f"))),
    min_size=1, max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(_rows, min_size=1, max_size=5), token=st.text(min_size=1, max_size=64))
def test_any_batch_round_trips_and_any_group_is_its_members_in_order(tmp_path_factory, batches, token):
    spool = Spool(tmp_path_factory.mktemp("spool"), max_bytes=10**7)
    columns = ("timestamp", "customer", "input_tokens", "revenue_usd")
    blocks = [encode_rows([list(row) for row in batch], columns=columns) for batch in batches]
    paths = [spool.append(f"{token}{i}", b) for i, b in enumerate(blocks)]
    assert [spool.read(p).block() for p in paths] == blocks
    assert [spool.read(p).token for p in paths] == [f"{token}{i}" for i in range(len(blocks))]
    taken = spool.next_ingest(max_rows=10**6, max_bytes=10**6)
    everything = encode_rows([list(row) for batch in batches for row in batch], columns=columns)
    assert taken.block() == everything == merge_blocks(blocks)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=8), waiting=st.integers(0, 8),
       max_rows=st.integers(1, 12))
def test_a_bounded_drain_takes_exactly_the_waiting_batches_oldest_first(tmp_path_factory, sizes, waiting, max_rows):
    spool = Spool(tmp_path_factory.mktemp("spool"), max_bytes=10**7)
    paths = [spool.append(f"t{i}", block(*[f"s{i}-{j}" for j in range(n)])) for i, n in enumerate(sizes)]
    waiting = min(waiting, len(paths))
    # What a drain saw when it began: the first ``waiting`` batches ("" sorts before every name).
    newest = paths[waiting - 1].name if waiting else ""
    taken = []
    while (batch := spool.next_ingest(max_rows=max_rows, max_bytes=10**7, newest=newest)) is not None:
        assert batch.rows <= max_rows or len(batch.members) == 1  # one batch goes alone, whatever its size
        taken.extend(batch.members)
        spool.remove(batch)
    assert taken == paths[:waiting]
    assert spool.pending() == paths[waiting:]
