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

Semantic lookup (``--semantic``): the tenant namespace's usearch index filled with N random
unit vectors of the built-in model's 384 dimensions (random vectors are HNSW's hardest case),
then timed on --lookups queries near stored vectors: the journal check and the index search,
**excluding** embedding; and the built-in model embedding a 50-token request (median, p99).
Targets: semantic lookup under 1 ms p99 at 1M entries; embedding under 10 ms median on 2 cores.

    python benchmarks/cache_latency.py --semantic --sizes 10000 100000 1000000

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
    parser.add_argument("--semantic", action="store_true", help="time the semantic lookup and embedding instead")
    args = parser.parse_args()
    if args.semantic:
        semantic(args.sizes, args.lookups)
        return

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


def semantic(sizes: list[int], lookups: int) -> None:
    """Semantic lookup excluding embedding at each size, then the built-in model's embedding time."""
    import numpy as np

    from otel_margin.plugins.cache.embedder import MiniLMEmbedder
    from otel_margin.plugins.cache.index import Record, SemanticIndex
    from otel_margin.plugins.cache.journal import Journal
    from otel_margin.plugins.cache.stores import FailOpen

    rng = np.random.default_rng(19)
    tenant = "[\"customer\", \"acme\"]"
    print(f"{'semantic':<8} {'entries':>10} {'fill s':>8} {'p50 µs':>8} {'p99 µs':>8} {'recall@1':>9} {'bytes/entry':>12}")
    for size in sizes:
        journal = Journal(FailOpen(MemoryStore(1 << 30), "memory"))
        index = SemanticIndex(journal, 384)
        space = index._space(tenant)
        rss_before = _rss()
        started = time.perf_counter()
        vectors = rng.standard_normal((size, 384), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        space.index.add(np.arange(1, size + 1), vectors)  # all cores, as a catch-up of many records does
        record = Record("v1:entry", "shape", "text", time.time() + 3600)
        space.records = dict.fromkeys(range(1, size + 1), record)
        for _ in range(size):  # the journal's counter at the index's position: nothing to catch up
            journal._incr(journal._counter_key(tenant))
        space.position = size
        fill = time.perf_counter() - started
        per_entry = (_rss() - rss_before) / size
        picks = rng.integers(0, size, lookups)
        queries = vectors[picks] + rng.standard_normal((lookups, 384), dtype=np.float32) * 0.02
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        times, found = [], 0
        for query, pick in zip(queries, picks):
            began = time.perf_counter_ns()
            nearest = index.search(tenant, query)
            times.append(time.perf_counter_ns() - began)
            found += bool(nearest) and nearest[0][0] >= float(query @ vectors[pick]) - 1e-2
        times.sort()
        p50, p99 = times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000
        print(f"{'semantic':<8} {size:>10,} {fill:>8.1f} {p50:>8.1f} {p99:>8.1f} {found / lookups:>9.0%} {per_entry:>12,.0f}")
        del index, space, vectors, journal
    embedder = MiniLMEmbedder()
    embedder.warm()
    text = " ".join(["refund"] * 48)  # [CLS] + 48 word pieces + [SEP] = 50 tokens
    embedder.embed(text)
    times = []
    for _ in range(100):
        began = time.perf_counter_ns()
        embedder.embed(text)
        times.append(time.perf_counter_ns() - began)
    times.sort()
    print(f"embedding a 50-token request (built-in all-MiniLM-L6-v2, NumPy, BLAS threads "
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}): median {times[50] / 1e6:.1f} ms, p99 {times[98] / 1e6:.1f} ms")


if __name__ == "__main__":
    main()
