"""The semantic cache's nearest-neighbour index: one usearch HNSW index per tenant namespace.

A namespace's index holds the vectors of its journal's records (:mod:`.journal`), labelled by
record number, with each record's facts and full vector beside it. The HNSW graph is searched in
:data:`SEARCH_DIMS` dimensions (a fixed random projection, as 8-bit integers) and the neighbours it
finds are re-scored against their full vectors, so the cosine a lookup compares with its
threshold is the full vector's; a search reads an eighth of the bytes it would over the full
384-dimension float16 vectors, which at a million entries no longer fit any cache
(``benchmarks/README.md`` has the figures). Before each lookup the index reads the
records it has not seen, so it follows the store that every process and replica writes: at
most :data:`INLINE_CATCH_UP` of them inside the lookup, the rest in a background thread. Adding a
vector to a large index takes a millisecond or more (1 to 1.7 ms at 100k entries), so a lookup that
read a whole backlog itself (a process started without its index file, a burst written by other
replicas) held its caller for seconds; now such a lookup searches what is indexed while the
thread catches up.

With a ``directory``, each namespace's index is saved there by that thread (at most every
``save_every_s`` seconds when it changed, and on :meth:`SemanticIndex.save_all`) and loaded when
the namespace is first used — inside that lookup when the file is small, by the thread when it is
larger than :data:`LOAD_INLINE_BYTES` —, so a restarted process reads only what was written since. A
missing, unreadable or stale file (the journal is behind it: the store was emptied) is never
fatal: the index is rebuilt from the journal's live records, or starts empty.

Searches and saves share a namespace's index; adding or removing vectors takes it alone
(usearch's search is safe beside other searches, not beside an add that grows the index). A
lookup waits at most :data:`INLINE_WAIT_S` for it and otherwise leaves its records to the thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from otel_margin.plugins.cache.key import _namespace_id

logger = logging.getLogger(__name__)

FORMAT = 2
SEARCH_DIMS = 96
"""Vectors with more dimensions are searched in a random projection to this many; fewer, as they are."""
INLINE_CATCH_UP = 8
"""A lookup adds its index's new records itself when there are at most this many (the common case,
a few since its last lookup: read-your-writes); a longer backlog is the background thread's."""
INLINE_WAIT_S = 0.05
"""How long a lookup waits for its index to add its new records (while a save or another add runs)."""
CHUNK = 4
"""Records the background thread adds per hold of an index, so searches wait for little."""
LOAD_INLINE_BYTES = 16 * 1024 * 1024
"""A saved index up to this size (about 15k entries) is loaded inside a namespace's first lookup;
a larger one by the background thread, the namespace's lookups missing until it is in (loading
1M entries, a 1.12 GB file, takes about 6 s)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One semantic entry: where its answer is, what was asked, until when."""

    entry_key: str
    shape: str
    text: str
    expires: float

    def to_bytes(self, vector: np.ndarray) -> bytes:
        head = json.dumps([self.entry_key, self.shape, self.text, self.expires], ensure_ascii=False)
        return head.encode() + b"\n" + np.asarray(vector, dtype=np.float32).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, ndim: int) -> tuple["Record", np.ndarray]:
        head, separator, body = data.partition(b"\n")
        if not separator or len(body) != ndim * 4:
            raise ValueError("not a semantic record of this embedder")
        key, shape, text, expires = json.loads(head)
        return cls(str(key), str(shape), str(text), float(expires)), np.frombuffer(body, dtype=np.float32)


class _Guard:
    """Shared by searches and saves, exclusive for adding and removing vectors. Readers go first:
    a waiting search is let in before the next add, and a long save never holds searches back."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._waiting = 0
        self._writing = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            self._waiting += 1
            self._condition.wait_for(lambda: not self._writing)
            self._waiting -= 1
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    def acquire(self, timeout: float | None = None) -> bool:
        """Take it alone; ``False`` if that did not happen within ``timeout`` seconds."""
        with self._condition:
            if not self._condition.wait_for(lambda: not (self._writing or self._readers or self._waiting), timeout):
                return False
            self._writing = True
            return True

    def release(self) -> None:
        with self._condition:
            self._writing = False
            self._condition.notify_all()


@dataclass(slots=True)
class _Space:
    index: Any
    records: dict[int, Record] = field(default_factory=dict)
    full: dict[int, bytes] = field(default_factory=dict)  # each record's vector, float16, for re-scoring
    position: int = 0
    dirty: bool = False
    saved_at: float = 0.0
    guard: _Guard = field(default_factory=_Guard)
    ready: bool = True  # False while the background thread loads its saved index


class SemanticIndex:
    """Per-namespace usearch indexes over a :class:`~.journal.Journal`."""

    def __init__(self, journal: Any, ndim: int, *, directory: str | None = None, save_every_s: float = 10.0,
                 clock: Any = time.time) -> None:
        self.journal = journal
        self.ndim = ndim
        self.projection = _projection(ndim)
        self.directory = Path(directory) if directory else None
        self.save_every_s = save_every_s
        self.rebuilds = 0
        self._clock = clock
        self._spaces: dict[str, _Space] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self._worker_failures = 0
        self._closed = False

    def search(self, namespace: str, vector: np.ndarray, count: int = 8) -> list[tuple[float, Record]]:
        """The nearest live records of ``namespace``, most similar first, as ``(cosine, record)``."""
        space = self._space(namespace)
        if not space.ready:
            self._start_worker(wake=True)
            return []
        behind = self._catch_up(namespace, space, inline=True)
        if behind or (self.directory and space.dirty):
            self._start_worker(wake=behind)
        query = np.asarray(vector, dtype=np.float32)  # unit length, as every embedder returns it
        with space.guard.shared():
            if len(space.index) == 0:
                return []
            matches = space.index.search(self._searched(query), count, threads=1)  # one query: no thread pool to wake
            candidates = [(label, record, space.full[label]) for label in map(int, matches.keys)
                          if (record := space.records.get(label)) is not None and label in space.full]
        if not candidates:
            return []
        rows = np.frombuffer(b"".join(row for _, _, row in candidates), dtype=np.float16).reshape(-1, self.ndim)
        similarities = rows.astype(np.float32) @ query  # both of unit length: their cosines
        now = self._clock()
        found = []
        for (label, record, _), similarity in zip(candidates, similarities.tolist()):
            if record.expires <= now:
                self._forget(space, label)
                continue
            found.append((similarity, record))
        found.sort(key=lambda match: match[0], reverse=True)
        return found

    def _searched(self, vector: np.ndarray) -> np.ndarray:
        """What the graph holds for ``vector``: its projection (unit length), or itself."""
        if self.projection is None:
            return vector
        projected = vector @ self.projection
        return projected / (np.linalg.norm(projected) or 1.0)

    def _forget(self, space: _Space, label: int) -> None:
        """Drop an expired record if the index is free within :data:`INLINE_WAIT_S` (a later lookup
        drops it otherwise: a lookup never waits for a save)."""
        if space.guard.acquire(INLINE_WAIT_S):
            try:
                if space.records.pop(label, None) is not None:
                    space.full.pop(label, None)
                    space.index.remove(label)
                    space.dirty = True
            finally:
                space.guard.release()

    def add(self, space: _Space, number: int, record: Record, vector: np.ndarray) -> None:
        vector = np.asarray(vector, dtype=np.float32)  # unit length, as the embedder wrote it
        space.index.add(number, self._searched(vector), threads=1)
        space.records[number] = record
        space.full[number] = vector.astype(np.float16).tobytes()
        space.dirty = True

    def _catch_up(self, namespace: str, space: _Space, *, inline: bool) -> bool:
        """Add records ``namespace``'s index has not seen; ``True`` if some remain. ``inline`` (a
        lookup): all of them if there are at most :data:`INLINE_CATCH_UP` and the index is free
        within :data:`INLINE_WAIT_S`, else none. Otherwise (the thread): the next :data:`CHUNK`."""
        last = self.journal.last(namespace)
        if last is None or last == space.position:
            return False
        if inline and last - space.position > INLINE_CATCH_UP:
            return True
        limit = INLINE_CATCH_UP if inline else CHUNK
        if not space.guard.acquire(INLINE_WAIT_S if inline else None):
            return True
        try:
            if last < space.position:  # the store was emptied (restart, flush): what we hold is gone
                logger.info("otel-margin cache: semantic index of a namespace is ahead of its store; rebuilding")
                self._reset(space)
            upto = min(last, space.position + limit)
            for number, data in self.journal.read(namespace, space.position + 1, upto):
                try:
                    record, vector = Record.from_bytes(data, self.ndim)
                except (ValueError, TypeError):
                    continue
                if number not in space.records:
                    self.add(space, number, record, vector)
            space.position = upto
        finally:
            space.guard.release()
        return space.position < last

    def _start_worker(self, *, wake: bool) -> None:
        """Start the background thread if it is not running (first need, or after a fork), and
        ``wake`` it now to catch up; otherwise it saves on its own every ``save_every_s``."""
        if not self._closed and (self._worker is None or not self._worker.is_alive()):
            with self._lock:
                if self._worker is None or not self._worker.is_alive():
                    self._worker = threading.Thread(target=self._work, name="otel-margin-semantic-index", daemon=True)
                    self._worker.start()
        if wake:
            self._wake.set()

    def close(self) -> None:
        """Stop the background thread (when the cache is configured anew); searches still work."""
        self._closed = True
        self._wake.set()

    def _work(self) -> None:
        """Catch every namespace up in chunks, and save the changed ones every ``save_every_s``."""
        while not self._closed:
            self._wake.wait(self.save_every_s if self.directory else None)
            self._wake.clear()
            for namespace, space in list(self._spaces.items()):
                try:
                    if not space.ready:
                        self._fill(namespace, space)
                    while not self._closed and self._catch_up(namespace, space, inline=False):
                        pass
                    if self.directory and space.dirty and self._clock() - space.saved_at >= self.save_every_s:
                        with space.guard.shared():
                            self._save(namespace, space)
                except Exception as error:  # noqa: BLE001 - lookups go on with what is indexed
                    self._worker_failures += 1
                    if self._worker_failures == 1:
                        logger.warning("otel-margin cache: semantic index catch-up failed (%s: %s); retrying",
                                       type(error).__name__, error, exc_info=True)
                    time.sleep(1)

    def _reset(self, space: _Space) -> None:
        space.index = self._new_index()
        space.records.clear()
        space.full.clear()
        space.position = 0
        space.dirty = True
        self.rebuilds += 1

    def _new_index(self) -> Any:
        Index = _usearch_index()
        # i8: a quarter of the bytes of f32 per distance; the cosines a lookup compares are re-scored
        # over the full vectors, so the graph's rounding only decides which neighbours are found.
        dims = self.ndim if self.projection is None else SEARCH_DIMS
        return Index(ndim=dims, metric="cos", dtype="i8", connectivity=16, expansion_add=64, expansion_search=64)

    def _space(self, namespace: str) -> _Space:
        space = self._spaces.get(namespace)
        if space is None:
            with self._lock:
                space = self._spaces.get(namespace)
                if space is None:
                    space = self._load(namespace) if self._small(namespace) else _Space(self._new_index(), ready=False)
                    self._spaces[namespace] = space
        return space

    def _small(self, namespace: str) -> bool:
        """Whether the namespace's saved index (if any) is small enough to load inside a lookup."""
        path = self.path(namespace)
        try:
            return path is None or path.stat().st_size <= LOAD_INLINE_BYTES
        except OSError:  # no file: nothing to load
            return True

    def _fill(self, namespace: str, space: _Space) -> None:
        """Load a large saved index into its namespace's placeholder (the background thread)."""
        loaded = self._load(namespace)
        space.guard.acquire()
        try:
            space.index, space.records, space.full, space.position = loaded.index, loaded.records, loaded.full, loaded.position
            space.saved_at, space.dirty, space.ready = loaded.saved_at, loaded.dirty, True
        finally:
            space.guard.release()

    def path(self, namespace: str) -> Path | None:
        return self.directory / f"{_namespace_id(namespace)}.usearch" if self.directory else None

    def _load(self, namespace: str) -> _Space:
        path = self.path(namespace)
        space = _Space(index=self._new_index())
        if path is None or not path.exists():
            return space
        try:
            with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                self._read(namespace, space, data)
        except Exception as error:  # noqa: BLE001 - a bad file is rebuilt, never fatal
            logger.warning(
                "otel-margin cache: semantic index %s is unreadable (%s: %s); rebuilding it from the store",
                path, type(error).__name__, error,
            )
            self.rebuilds += 1
            space = _Space(index=self._new_index())
        return space

    def _read(self, namespace: str, space: _Space, data: mmap.mmap) -> None:
        """Fill ``space`` from a saved file, mapped rather than read: the graph and each vector are
        copied out of the page cache, so loading does not hold the whole file a second time."""
        end = data.find(b"\n")
        meta = json.loads(data[:end]) if end > 0 else {}
        if (meta.get("format") != FORMAT or meta["ndim"] != self.ndim or meta["namespace"] != namespace
                or meta["projection"] != _fingerprint(self.projection)):
            raise ValueError("another format, embedder or namespace")
        size, width = int(meta["index_bytes"]), self.ndim * 2
        vectors = end + 1 + size  # where the float16 vectors start, after the graph
        if len(data) - vectors != width * len(meta["records"]):
            raise ValueError("the vectors and the records disagree")
        index = _usearch_index().restore(data[end + 1:vectors])
        if index is None or len(index) != len(meta["records"]):
            raise ValueError("the index and its records disagree")
        space.index = index
        space.records = {int(n): Record(*fields) for n, fields in meta["records"].items()}
        space.full = {n: data[vectors + i * width:vectors + (i + 1) * width] for i, n in enumerate(space.records)}
        space.position = int(meta["position"])
        space.saved_at = self._clock()

    def save_all(self) -> None:
        """Save every changed namespace's index now (a failure is logged, never raised)."""
        for namespace, space in list(self._spaces.items()):
            if space.dirty:
                with space.guard.shared():
                    self._save(namespace, space)

    def _save(self, namespace: str, space: _Space) -> None:
        path = self.path(namespace)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            records = space.records  # unchanged while the save shares the index
            body = bytes(space.index.save())
            meta = {
                "format": FORMAT, "ndim": self.ndim, "projection": _fingerprint(self.projection),
                "namespace": namespace, "position": space.position, "index_bytes": len(body),
                "records": {n: [r.entry_key, r.shape, r.text, r.expires] for n, r in records.items()},
            }
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(meta, ensure_ascii=False).encode() + b"\n")
                out.write(body)
                out.writelines(space.full[n] for n in records)
            os.replace(tmp, path)  # readers see the old file or the new one, never half of one
            space.dirty = False
            space.saved_at = self._clock()
        except Exception as error:  # noqa: BLE001
            logger.warning("otel-margin cache: could not save semantic index %s (%s: %s)", path, type(error).__name__, error)


def _projection(ndim: int) -> np.ndarray | None:
    """A fixed random projection from ``ndim`` to :data:`SEARCH_DIMS` dimensions (orthonormal
    columns), or ``None`` when ``ndim`` is no larger. Near neighbours stay near: a query within a
    cosine of 0.9 of an entry is still found by the graph, the exact cosine comes from re-scoring."""
    if ndim <= SEARCH_DIMS:
        return None
    basis, _ = np.linalg.qr(np.random.default_rng(96).standard_normal((ndim, SEARCH_DIMS)))
    return np.ascontiguousarray(basis, dtype=np.float32)


def _fingerprint(projection: np.ndarray | None) -> str:
    """Names the projection a saved graph was built in: a file from another one is rebuilt."""
    return "" if projection is None else hashlib.sha256(projection.tobytes()).hexdigest()[:16]


def _usearch_index() -> Any:
    """usearch's ``Index``, imported after onnxruntime when that is installed: importing onnxruntime
    once usearch is loaded crashes the process (a segmentation fault with usearch 2.26 and
    onnxruntime 1.32), and the built-in embedder may import it later in this process."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    from usearch.index import Index

    return Index
