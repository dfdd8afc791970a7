"""Exact-cache lookup latency at 10k, 100k and 1M entries, per store, and memory per entry.

    python benchmarks/cache_latency.py                          # memory and host stores; Redis if redis-server is installed
    python benchmarks/cache_latency.py --sizes 10000 100000 --stores memory redis
    python benchmarks/cache_latency.py --lookups 20000 --value-bytes 2048

A lookup is what the cache plugin does before every call of a cached feature: the tenant-scoped
key of the request (canonical JSON of the full request, SHA-256) and one store ``get``. Each
store is filled with N entries of --value-bytes (a small chat completion's recorded response is
about 1 KiB), then timed on --lookups requests, half of them stored (hits) and half not (misses),
in random order. Printed: the key's own time, and for each store and size the lookup's p50 / p99
(key + get) and the process's resident memory per entry (memory store) or the store's bytes per
entry (host, Redis). Target: exact in-process lookup under 50 µs p99 at 1M entries.

Redis runs as a local ``redis-server`` on a free loopback port (Debian's package), started and
stopped by the script. Filling the host store with 1M entries takes a few minutes (SQLite).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from otel_margin.plugins.cache.key import Scope, cache_key
from otel_margin.plugins.cache.stores import HostStore, MemoryStore, RedisStore


def request(i: int) -> dict:
    """A realistic request: a system prompt, one user question with a number that varies."""
    return {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "max_tokens": 300,
        "messages": [
            {"role": "system", "content": "You answer questions about invoices in one short paragraph."},
            {"role": "user", "content": f"What is the total of invoice {i} including VAT?"},
        ],
    }


def key_of(i: int) -> str:
    return cache_key(
        scope=Scope.CUSTOMER, customer=f"customer-{i % 500}", feature="invoices", provider="openai",
        api="chat.completions", params=request(i),
    ).store_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--stores", nargs="+", default=["memory", "host", "redis"], choices=["memory", "host", "redis"])
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--value-bytes", type=int, default=1024)
    args = parser.parse_args()

    value = os.urandom(args.value_bytes)
    keys = [key_of(i) for i in range(2_000)]
    started = time.perf_counter_ns()
    for i in range(2_000, 12_000):
        key_of(i)
    key_us = (time.perf_counter_ns() - started) / 10_000 / 1000
    print(f"key (canonical JSON + SHA-256 of a 2-message request): {key_us:.1f} µs mean over 10,000")
    del keys
    print(f"{'store':<8} {'entries':>10} {'fill s':>8} {'p50 µs':>8} {'p99 µs':>8} {'hit rate':>9} {'bytes/entry':>12}")
    for kind in args.stores:
        if kind == "redis" and shutil.which("redis-server") is None:
            print("redis    (skipped: apt-get install -y redis-server)")
            continue
        for size in args.sizes:
            with store_of(kind, size * (args.value_bytes + 200)) as store:
                rss_before = _rss()
                fill = _fill(store, size, value)
                per_entry = _per_entry(kind, store, size, rss_before)
                p50, p99, hits = _lookups(store, size, args.lookups)
                print(f"{kind:<8} {size:>10,} {fill:>8.1f} {p50:>8.1f} {p99:>8.1f} {hits:>9.0%} {per_entry:>12,.0f}")


class store_of:
    """A fresh store of ``kind`` (a context manager that removes what it made)."""

    def __init__(self, kind: str, max_bytes: int) -> None:
        self.kind, self.max_bytes = kind, max_bytes
        self.directory = tempfile.mkdtemp(prefix="cache-bench-")
        self.server = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        if self.kind == "memory":
            self.store = MemoryStore(self.max_bytes)
        elif self.kind == "host":
            self.store = HostStore(self.directory, self.max_bytes, timeout_s=1.0)
        else:
            import sys

            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.redis_server import RedisServer, free_port

            self.server = RedisServer(free_port())
            self.server.start()
            self.store = RedisStore(self.server.url, timeout_s=1.0)
        return self.store

    def __exit__(self, *exc: object) -> None:
        close = getattr(self.store, "close", None)
        if close:
            close()
        if self.server is not None:
            self.server.stop()
        self.store = None
        shutil.rmtree(self.directory, ignore_errors=True)


def _fill(store, size: int, value: bytes) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    if isinstance(store, RedisStore):
        pipe = store._redis.pipeline(transaction=False)
        for i in range(size):
            pipe.set(store.PREFIX + key_of(i), value, px=3_600_000)
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
    else:
        for i in range(size):
            store.put(key_of(i), value, 3600)
    return time.perf_counter() - started


def _per_entry(kind: str, store, size: int, rss_before: int) -> float:  # type: ignore[no-untyped-def]
    if kind == "memory":
        return (_rss() - rss_before) / size
    stats = store.stats()
    if kind == "redis":
        return stats.bytes / size
    return stats.bytes / size


def _lookups(store, size: int, count: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    indices = [rng.randrange(size) if rng.random() < 0.5 else size + rng.randrange(size) for _ in range(count)]
    timings = []
    hits = 0
    for i in indices:
        started = time.perf_counter_ns()
        found = store.get(key_of(i))
        timings.append(time.perf_counter_ns() - started)
        hits += found is not None
    timings.sort()
    return statistics.median(timings) / 1000, timings[int(len(timings) * 0.99)] / 1000, hits / count


def _rss() -> int:
    """Resident memory now, in bytes (Linux /proc; ru_maxrss as a fallback)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
