"""The spool: atomic, ordered, bounded, lockable; survives half-written files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from otel_margin.exporters.spool import Spool

COLUMNS = ("timestamp", "span_id", "input_tokens", "cost_usd", "saved_usd", "stream")
T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def test_batches_read_back_in_append_order_with_exact_types(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    for i in range(5):
        spool.append(f"token-{i}", COLUMNS, [[T0, f"s{i}", i, Decimal("0.000000000001") * i, Decimal(0), True]])
    batches = [spool.read(path) for path in spool.pending()]
    assert [b.token for b in batches] == [f"token-{i}" for i in range(5)]
    assert batches[3].rows == [[T0, "s3", 3, Decimal("0.000000000003"), Decimal(0), True]]
    assert batches[0].columns == COLUMNS


def test_null_cost_stays_null(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append("t", COLUMNS, [[T0, "s", 1, None, Decimal("1.5"), False]])
    (batch,) = [spool.read(p) for p in spool.pending()]
    assert batch.rows[0][3] is None and batch.rows[0][4] == Decimal("1.5")


def test_half_written_tmp_file_is_ignored_then_cleaned_when_stale(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append("good", COLUMNS, [[T0, "s", 1, None, Decimal(0), False]])
    fresh = tmp_path / ".00000000000000000001-00000001-000001.batch.tmp"
    stale = tmp_path / ".00000000000000000002-00000001-000002.batch.tmp"
    for path in (fresh, stale):
        path.write_text('{"v": 1, "token": "half", "columns": [], "rows": 9}\n[1,')
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert [spool.read(p).token for p in spool.pending()] == ["good"]
    assert spool.clean_stale_tmp() == 1
    assert fresh.exists() and not stale.exists()


def test_append_refuses_beyond_max_bytes(tmp_path):
    spool = Spool(tmp_path, max_bytes=600)
    row = [T0, "x" * 100, 1, None, Decimal(0), False]
    results = [spool.append(f"t{i}", COLUMNS, [row]) for i in range(10)]
    assert results[0] is not None
    assert None in results
    assert spool.size_bytes() <= 600


def test_remove_and_reject_take_a_batch_out_of_the_replay_order(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    first = spool.append("a", COLUMNS, [])
    second = spool.append("b", COLUMNS, [])
    spool.remove(first)
    target = spool.reject(second)
    assert spool.pending() == [] and target.exists() and target.parent.name == "rejected"


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


_values = st.tuples(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)).map(
        lambda d: d.replace(tzinfo=timezone.utc)
    ),
    st.text(max_size=30),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.none() | st.decimals(min_value=-(10**25), max_value=10**25, places=12, allow_nan=False),
    st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(_values.map(list), max_size=5), token=st.text(min_size=1, max_size=64))
def test_any_batch_round_trips(tmp_path_factory, rows, token):
    spool = Spool(tmp_path_factory.mktemp("spool"), max_bytes=10**7)
    path = spool.append(token, COLUMNS, rows)
    batch = spool.read(path)
    assert batch.token == token and batch.rows == rows
