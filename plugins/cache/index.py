"""The semantic cache's nearest-neighbour index: one usearch HNSW index per tenant namespace.

A namespace's index holds the vectors of its journal's records (:mod:`.journal`), labelled by
record number, with each record's facts beside it. Before each lookup the index reads the
records it has not seen, so it follows the store that every process and replica writes.

With a ``directory``, each namespace's index is saved there (at most every ``save_every_s``
seconds when it changed, and on :meth:`SemanticIndex.save_all`) and loaded when the namespace is
first used, so a restarted process reads only what was written since. A missing, unreadable or
stale file (the journal is behind it: the store was emptied) is never fatal: the index is rebuilt
from the journal's live records, or starts empty.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from otel_margin.plugins.cache.journal import MAX_CATCH_UP
from otel_margin.plugins.cache.key import _namespace_id

logger = logging.getLogger(__name__)

FORMAT = 1


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


@dataclass(slots=True)
class _Space:
    index: Any
    records: dict[int, Record] = field(default_factory=dict)
    position: int = 0
    dirty: bool = False
    saved_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SemanticIndex:
    """Per-namespace usearch indexes over a :class:`~.journal.Journal`."""

    def __init__(self, journal: Any, ndim: int, *, directory: str | None = None, save_every_s: float = 10.0,
                 clock: Any = time.time) -> None:
        self.journal = journal
        self.ndim = ndim
        self.directory = Path(directory) if directory else None
        self.save_every_s = save_every_s
        self.rebuilds = 0
        self._clock = clock
        self._spaces: dict[str, _Space] = {}
        self._lock = threading.Lock()

    def search(self, namespace: str, vector: np.ndarray, count: int = 8) -> list[tuple[float, Record]]:
        """The nearest live records of ``namespace``, most similar first, as ``(cosine, record)``."""
        space = self._space(namespace)
        self._catch_up(namespace, space)
        if len(space.index) == 0:
            return []
        matches = space.index.search(vector, count, threads=1)  # one query: no thread pool to wake
        now = self._clock()
        found = []
        for label, distance in zip(matches.keys, matches.distances):
            record = space.records.get(int(label))
            if record is None:
                continue
            if record.expires <= now:
                with space.lock:
                    space.records.pop(int(label), None)
                    space.index.remove(int(label))
                    space.dirty = True
                continue
            found.append((1.0 - float(distance), record))
        return found

    def add(self, space: _Space, number: int, record: Record, vector: np.ndarray) -> None:
        space.index.add(number, vector)
        space.records[number] = record
        space.dirty = True

    def _catch_up(self, namespace: str, space: _Space) -> None:
        last = self.journal.last(namespace)
        if last is None or last == space.position:
            return
        with space.lock:
            if last < space.position:  # the store was emptied (restart, flush): what we hold is gone
                logger.info("otel-margin cache: semantic index of a namespace is ahead of its store; rebuilding")
                self._reset(space)
            for number, data in self.journal.read(namespace, space.position + 1, last):
                try:
                    record, vector = Record.from_bytes(data, self.ndim)
                except (ValueError, TypeError):
                    continue
                if number not in space.records:
                    self.add(space, number, record, vector)
            space.position = min(last, space.position + MAX_CATCH_UP)
        if self.directory and space.dirty and self._clock() - space.saved_at >= self.save_every_s:
            self._save(namespace, space)

    def _reset(self, space: _Space) -> None:
        space.index = self._new_index()
        space.records.clear()
        space.position = 0
        space.dirty = True
        self.rebuilds += 1

    def _new_index(self) -> Any:
        from usearch.index import Index

        # f16: half the memory of f32 and faster; cosines are within about 1e-3 of exact.
        return Index(ndim=self.ndim, metric="cos", dtype="f16", connectivity=16, expansion_add=64, expansion_search=64)

    def _space(self, namespace: str) -> _Space:
        space = self._spaces.get(namespace)
        if space is None:
            with self._lock:
                space = self._spaces.get(namespace)
                if space is None:
                    space = self._load(namespace)
                    self._spaces[namespace] = space
        return space

    def path(self, namespace: str) -> Path | None:
        return self.directory / f"{_namespace_id(namespace)}.usearch" if self.directory else None

    def _load(self, namespace: str) -> _Space:
        path = self.path(namespace)
        space = _Space(index=self._new_index())
        if path is None or not path.exists():
            return space
        try:
            from usearch.index import Index

            data = path.read_bytes()
            head, separator, body = data.partition(b"\n")
            meta = json.loads(head)
            if not separator or meta["format"] != FORMAT or meta["ndim"] != self.ndim or meta["namespace"] != namespace:
                raise ValueError("another format, embedder or namespace")
            index = Index.restore(body)
            if index is None or len(index) != len(meta["records"]):
                raise ValueError("the index and its records disagree")
            space.index = index
            space.records = {int(n): Record(*fields) for n, fields in meta["records"].items()}
            space.position = int(meta["position"])
            space.saved_at = self._clock()
        except Exception as error:  # noqa: BLE001 - a bad file is rebuilt, never fatal
            logger.warning(
                "otel-margin cache: semantic index %s is unreadable (%s: %s); rebuilding it from the store",
                path, type(error).__name__, error,
            )
            self.rebuilds += 1
            space = _Space(index=self._new_index())
        return space

    def save_all(self) -> None:
        """Save every changed namespace's index now (a failure is logged, never raised)."""
        for namespace, space in list(self._spaces.items()):
            if space.dirty:
                with space.lock:
                    self._save(namespace, space)

    def _save(self, namespace: str, space: _Space) -> None:
        path = self.path(namespace)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            meta = {
                "format": FORMAT, "ndim": self.ndim, "namespace": namespace, "position": space.position,
                "records": {n: [r.entry_key, r.shape, r.text, r.expires] for n, r in space.records.items()},
            }
            body = bytes(space.index.save())
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(meta, ensure_ascii=False).encode() + b"\n" + body)
            os.replace(tmp, path)  # readers see the old file or the new one, never half of one
            space.dirty = False
            space.saved_at = self._clock()
        except Exception as error:  # noqa: BLE001
            logger.warning("otel-margin cache: could not save semantic index %s (%s: %s)", path, type(error).__name__, error)
