"""Exact-cache lookup latency at 10k, 100k and 1M entries, per store, and memory per entry.

    python benchmarks/cache_latency.py                          # memory and host stores; Redis if redis-server is installed
    python benchmarks/cache_latency.py --sizes 10000 100000 --stores memory redis
    python benchmarks/cache_latency.py --lookups 20000 --value-bytes 2048

A lookup is what the cache plugin does before every call of a cached feature: the tenant-scoped
key of the request (canonical JSON of the full request, SHA-256) and one store ``get``. Each
store is filled with N entries of --value-bytes each (a small chat completion's recorded
response is about 1 KiB; every entry its own bytes), then timed on --lookups requests, half of
them stored (hits) and half not (misses), in random order. Printed for each store and size: the
lookup's p50 / p99 (key + get) in wall-clock time and in this thread's CPU time (what the code
costs, without the waits for a core that a busy machine adds), the get alone, and the process's
resident memory per entry (memory store) or the store's bytes per entry (host, Redis); the load
average is printed beside each row. Target: exact in-process lookup under 50 µs p99 at 1M entries.

Semantic lookup (``--semantic``): the tenant namespace's index filled with N unit vectors of the
built-in model's 384 dimensions, then timed on --lookups queries near stored vectors (cosine about
0.93): the journal check, the index search and the re-scoring, **excluding** embedding; and the
built-in model embedding a 50-token request (median, p99). ``--vectors model`` (the default) draws
them from a Gaussian with the mean and covariance of the built-in model's embeddings of the
standard library's docstring sentences (embedded at the start, about a minute); ``--vectors
random`` uniformly on the sphere, HNSW's hardest case. recall@1: how often the stored vector a
query was made from comes back first. Targets: semantic lookup under 1 ms p99 at 1M entries;
embedding under 10 ms median on 2 cores.

    python benchmarks/cache_latency.py --semantic --sizes 10000 100000 1000000 --keep-index /tmp/cache-bench

Building a 1M-vector index takes minutes (about 3.5 on two threads, a line per tenth says
how far it got); ``--keep-index DIR`` saves each size's index there and reuses it on the next run
(the vectors are regenerated from a fixed seed; the model's vector shape is kept there too),
``--build-threads 1`` leaves the other cores free.
``--expansion-search`` times the search at other breadths on the same index. The embedding is
timed with the model's session on one thread and on two.

Catching up (``--catch-up N``): N records wait in the namespace's journal, as when a process
starts without its index file or other replicas wrote a burst, and lookups run back to back (2 ms
apart) until the index has read them all: their latency (p50, p99, max) and how long the catch-up
took. A lookup adds at most a few new records itself; the rest are the index's background thread's.

Redis runs as a local ``redis-server`` on a free loopback port (Debian's package), started and
stopped by the script. Filling the host store with 1M entries takes a few minutes (SQLite).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
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
    parser.add_argument("--keep-index", metavar="DIR", help="--semantic: save each size's index in DIR, reuse it next time")
    parser.add_argument("--expansion-search", type=int, nargs="+", metavar="EF",
                        help="--semantic: search breadths to time (default: the cache's own)")
    parser.add_argument("--no-embedding", action="store_true", help="--semantic: skip the embedding timing")
    parser.add_argument("--vectors", choices=["model", "random"], default="model",
                        help="--semantic: vectors shaped like the built-in model's (default), or uniformly random")
    parser.add_argument("--build-threads", type=int, default=0, metavar="N",
                        help="--semantic: threads that build an index not kept from an earlier run (default: all cores)")
    parser.add_argument("--catch-up", type=int, metavar="N",
                        help="time semantic lookups while the index catches up on N records instead")
    args = parser.parse_args()
    if args.catch_up:
        catch_up(args.catch_up)
        return
    if args.semantic:
        semantic(args.sizes, args.lookups, keep=args.keep_index, breadths=args.expansion_search,
                 embedding=not args.no_embedding, build_threads=args.build_threads, shape=args.vectors)
        return

    value = os.urandom(args.value_bytes)
    keys = [key_of(i) for i in range(2_000)]
    started = time.perf_counter_ns()
    for i in range(2_000, 12_000):
        key_of(i)
    key_us = (time.perf_counter_ns() - started) / 10_000 / 1000
    print(f"key (canonical JSON + SHA-256 of a 2-message request): {key_us:.1f} µs mean over 10,000")
    del keys
    print(f"{'store':<8} {'entries':>10} {'fill s':>7} {'p50 µs':>7} {'p99 µs':>7} {'cpu p50':>8} {'cpu p99':>8} "
          f"{'get p99':>8} {'hits':>5} {'bytes/entry':>12}  load average")
    for kind in args.stores:
        if kind == "redis" and shutil.which("redis-server") is None:
            print("redis    (skipped: apt-get install -y redis-server)")
            continue
        for size in args.sizes:
            with store_of(kind, size * (args.value_bytes + 200)) as store:
                rss_before = _rss()
                fill = _fill(store, size, value)
                per_entry = _per_entry(kind, store, size, rss_before)
                t = _lookups(store, size, args.lookups)
                print(f"{kind:<8} {size:>10,} {fill:>7.1f} {t['p50']:>7.1f} {t['p99']:>7.1f} {t['cpu_p50']:>8.1f} "
                      f"{t['cpu_p99']:>8.1f} {t['get_p99']:>8.1f} {t['hits']:>5.0%} {per_entry:>12,.0f}  {_load()}", flush=True)


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


def _value(value: bytes, i: int) -> bytes:
    """Entry ``i``'s own value (entries sharing one bytes object would hide the values' memory)."""
    return value[:-8] + i.to_bytes(8, "little")


def _fill(store, size: int, value: bytes) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    if isinstance(store, RedisStore):
        pipe = store._redis.pipeline(transaction=False)
        for i in range(size):
            pipe.set(store.PREFIX + key_of(i), _value(value, i), px=3_600_000)
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
    else:
        for i in range(size):
            store.put(key_of(i), _value(value, i), 3600)
    return time.perf_counter() - started


def _per_entry(kind: str, store, size: int, rss_before: int) -> float:  # type: ignore[no-untyped-def]
    if kind == "memory":
        return (_rss() - rss_before) / size
    stats = store.stats()
    if kind == "redis":
        return stats.bytes / size
    return stats.bytes / size


def _lookups(store, size: int, count: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    indices = [rng.randrange(size) if rng.random() < 0.5 else size + rng.randrange(size) for _ in range(count)]
    wall, cpu, gets = [], [], []
    hits = 0
    for i in indices:
        started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
        key = key_of(i)
        before_get = time.perf_counter_ns()
        found = store.get(key)
        ended = time.perf_counter_ns()
        cpu.append(time.thread_time_ns() - started_cpu)
        wall.append(ended - started)
        gets.append(ended - before_get)
        hits += found is not None
    return {"p50": _pct(wall, 0.5), "p99": _pct(wall, 0.99), "cpu_p50": _pct(cpu, 0.5), "cpu_p99": _pct(cpu, 0.99),
            "get_p99": _pct(gets, 0.99), "hits": hits / count}


def _pct(nanoseconds: list[int], q: float) -> float:
    """The ``q`` quantile in µs."""
    ordered = sorted(nanoseconds)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _rss() -> int:
    """Resident memory now, in bytes (Linux /proc; ru_maxrss as a fallback)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def semantic(sizes: list[int], lookups: int, *, keep: str | None = None, breadths: list[int] | None = None,
             embedding: bool = True, build_threads: int = 0, shape: str = "model") -> None:
    """Semantic lookup excluding embedding at each size, then the built-in model's embedding time."""
    import numpy as np

    from otel_margin.plugins.cache.index import Record, SemanticIndex
    from otel_margin.plugins.cache.journal import Journal
    from otel_margin.plugins.cache.stores import FailOpen

    tenant = "[\"customer\", \"acme\"]"
    model = _model_moments(keep) if shape == "model" else None
    print(f"{'semantic':<8} {'entries':>10} {'ef':>4} {'fill s':>7} {'p50 µs':>7} {'p99 µs':>7} {'cpu p50':>8} "
          f"{'cpu p99':>8} {'recall@1':>8} {'bytes/entry':>12}  load average")
    for size in sizes:
        rng = np.random.default_rng(19)
        journal = Journal(FailOpen(MemoryStore(1 << 30), "memory"))
        index = SemanticIndex(journal, 384)
        space = index._space(tenant)
        rss_before = _rss()
        started = time.perf_counter()
        if model is None:
            vectors = rng.standard_normal((size, 384), dtype=np.float32)
        else:
            vectors = rng.multivariate_normal(*model, size=size, method="cholesky").astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        saved = Path(keep) / f"semantic-{shape}-{size}.usearch" if keep else None
        if saved is not None and saved.exists():
            space.index.load(str(saved))  # built by an earlier run from the same seed
        else:
            # what SemanticIndex.add does per vector, for all of them at once: the graph holds their
            # projections; all cores by default, --build-threads 1 leaves a core free
            projected = vectors @ index.projection
            projected /= np.linalg.norm(projected, axis=1, keepdims=True)
            space.index.add(np.arange(1, size + 1), projected, threads=build_threads, progress=_progress(size))
            del projected
            if saved is not None:
                saved.parent.mkdir(parents=True, exist_ok=True)
                space.index.save(str(saved))
        record = Record("v1:entry", "shape", "text", time.time() + 3600)
        space.records = dict.fromkeys(range(1, size + 1), record)
        space.full = {number: row.tobytes() for number, row in enumerate(vectors.astype(np.float16), start=1)}
        journal._counters[journal._counter_key(tenant)] = size  # the journal at the index's position
        space.position = size
        fill = time.perf_counter() - started
        per_entry = (_rss() - rss_before - vectors.nbytes) / size
        picks = rng.integers(0, size, lookups)
        queries = vectors[picks] + rng.standard_normal((lookups, 384), dtype=np.float32) * 0.02
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        for breadth in breadths or [space.index.expansion_search]:
            space.index.expansion_search = breadth
            wall, cpu, found = [], [], 0
            for query, pick in zip(queries, picks):
                began, began_cpu = time.perf_counter_ns(), time.thread_time_ns()
                nearest = index.search(tenant, query)
                cpu.append(time.thread_time_ns() - began_cpu)
                wall.append(time.perf_counter_ns() - began)
                found += bool(nearest) and nearest[0][0] >= float(query @ vectors[pick]) - 1e-3
            print(f"{'semantic':<8} {size:>10,} {breadth:>4} {fill:>7.1f} {_pct(wall, 0.5):>7.1f} {_pct(wall, 0.99):>7.1f} "
                  f"{_pct(cpu, 0.5):>8.1f} {_pct(cpu, 0.99):>8.1f} {found / lookups:>8.0%} {per_entry:>12,.0f}  {_load()}",
                  flush=True)
        del index, space, vectors, journal
    if embedding:
        embed_timing()


def _model_moments(keep: str | None):  # type: ignore[no-untyped-def]
    """Mean and covariance of the built-in model's embeddings of the standard library's docstring
    sentences (kept in ``keep`` when given: embedding them takes about a minute)."""
    import importlib
    import re

    import numpy as np

    cached = Path(keep) / "model-moments.npz" if keep else None
    if cached is not None and cached.exists():
        moments = np.load(cached)
        return moments["mean"], moments["cov"]
    from otel_margin.plugins.cache.embedder import MiniLMEmbedder

    sentences: set[str] = set()
    for name in ("os", "json", "re", "collections", "itertools", "functools", "pathlib", "subprocess", "threading",
                 "asyncio", "logging", "argparse", "datetime", "decimal", "statistics", "random", "socket", "ssl",
                 "tarfile", "zipfile", "csv", "sqlite3", "unittest", "typing", "dataclasses", "inspect", "ast",
                 "shutil", "tempfile", "string", "textwrap", "difflib", "heapq", "queue", "email", "http.client",
                 "urllib.request", "calendar", "hashlib", "uuid", "base64", "pickle", "enum", "math", "io",
                 "locale", "platform", "traceback", "warnings", "contextlib", "signal", "smtplib", "configparser"):
        module = importlib.import_module(name)
        for attribute in dir(module):
            doc = getattr(getattr(module, attribute, None), "__doc__", None)
            if isinstance(doc, str):
                sentences.update(s for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())) if 20 <= len(s) <= 300)
    embedder = MiniLMEmbedder(threads=2)
    print(f"embedding {len(sentences):,} docstring sentences for the model's vector shape ...", flush=True)
    real = np.stack([embedder.embed(text).vector for text in sorted(sentences)])
    mean, cov = real.mean(axis=0), np.cov(real.T)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, mean=mean, cov=cov)
    return mean, cov


def catch_up(backlog: int) -> None:
    """Lookups while the index reads a backlog of ``backlog`` records from its journal."""
    import numpy as np

    from otel_margin.plugins.cache.index import Record, SemanticIndex
    from otel_margin.plugins.cache.journal import Journal
    from otel_margin.plugins.cache.stores import FailOpen

    tenant = "[\"customer\", \"acme\"]"
    journal = Journal(FailOpen(MemoryStore(1 << 31), "memory"))
    vectors = np.random.default_rng(19).standard_normal((backlog, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    record = Record("v1:entry", "shape", "text", time.time() + 3600)
    for vector in vectors:
        journal.append(tenant, record.to_bytes(vector), 3600)
    index = SemanticIndex(journal, 384)
    wall, started = [], time.perf_counter()
    while not wall or index._space(tenant).position < backlog:
        began = time.perf_counter_ns()
        index.search(tenant, vectors[len(wall) % backlog])
        wall.append(time.perf_counter_ns() - began)
        time.sleep(0.002)
    print(f"catch-up of {backlog:,} records: {time.perf_counter() - started:.1f} s; {len(wall):,} lookups meanwhile, "
          f"p50 {_pct(wall, 0.5) / 1000:.2f} ms, p99 {_pct(wall, 0.99) / 1000:.2f} ms, max {max(wall) / 1e6:.1f} ms; "
          f"the first {wall[0] / 1e6:.1f} ms; load average {_load()}")


def _progress(size: int):  # type: ignore[no-untyped-def]
    """usearch's progress callback for a large build: one line per tenth, with the time it took so far."""
    started, step, shown = time.perf_counter(), max(size // 10, 1), [0]

    def report(done: int, total: int) -> bool:
        if size >= 100_000 and done >= shown[0] + step:
            shown[0] = done - done % step
            print(f"  building: {done:,} of {total:,} vectors in {time.perf_counter() - started:,.0f} s "
                  f"(load average {_load()})", flush=True)
        return True

    report.__annotations__ = {"done": int, "total": int, "return": bool}  # usearch checks them, not as strings
    return report


TEXT_50_TOKENS = (
    "Hello, I was charged twice for my subscription this month and I would like to get a refund for the "
    "second charge. My account email is the same as before and the plan is the yearly one. Can you help me "
    "with that?"
)


def embed_timing(runs: int = 200, threads: tuple[int, ...] = (1, 2)) -> None:
    """The built-in model embedding a 50-token request on each thread count: wall-clock and CPU time."""
    from otel_margin.plugins.cache.embedder import MiniLMEmbedder

    for count in threads:
        embedder = MiniLMEmbedder(threads=count)
        tokenizer, _ = embedder._load()
        tokens = len(tokenizer.encode(TEXT_50_TOKENS).ids)
        assert tokens == 50, tokens  # [CLS] + 48 word pieces + [SEP]
        for _ in range(5):
            embedder.embed(TEXT_50_TOKENS)
        wall, cpu = [], []
        for _ in range(runs):
            began, began_cpu = time.perf_counter_ns(), time.process_time_ns()
            embedder.embed(TEXT_50_TOKENS)
            cpu.append(time.process_time_ns() - began_cpu)
            wall.append(time.perf_counter_ns() - began)
        print(f"embedding a 50-token request (built-in all-MiniLM-L6-v2, ONNX Runtime int8, {count} thread"
              f"{'s' if count > 1 else ''}): median {_pct(wall, 0.5) / 1000:.1f} ms, p99 {_pct(wall, 0.99) / 1000:.1f} ms; "
              f"CPU median {_pct(cpu, 0.5) / 1000:.1f} ms; load average {_load()}")


if __name__ == "__main__":
    main()
