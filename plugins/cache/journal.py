"""The semantic cache's shared journal: every replica's semantic entries, in order, per tenant namespace.

Each semantic entry (its vector, the facts of its request and the exact entry holding the
answer) is appended to its namespace's journal in the cache's store: a counter
``sem:<namespace>:n`` taken with an atomic increment, then the record under
``sem:<namespace>:<n>`` with the entry's time to live. A process's index reads the records after
the last number it has seen before each lookup (a few itself, a longer backlog in its background
thread: :mod:`.index`), so an entry written by any process or replica sharing the store is found
by the others from their next lookup on, or once that thread has caught up.

The atomic increment is the store's own: a lock for the in-process store, ``diskcache``'s
``incr`` (one SQLite transaction) for the host store, Redis ``INCR`` for Redis. A record that
expired or was evicted is simply skipped. Records are opaque bytes to the store.
"""

from __future__ import annotations

import threading
from typing import Any

from otel_margin.plugins.cache.key import _namespace_id

PREFIX = "sem:"
MAX_CATCH_UP = 10_000
"""At most this many records are read in one lookup; the rest on the next ones."""


class Journal:
    """Append and read semantic records through a :class:`~plugins.cache.stores.FailOpen` store."""

    def __init__(self, store: Any) -> None:
        self.store = store  # FailOpen
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()

    def append(self, namespace: str, record: bytes, ttl_s: float) -> int | None:
        """Add ``record`` to ``namespace``'s journal; its number, or ``None`` if the store failed."""
        counter = self._counter_key(namespace)
        number = self.store._run(lambda: self._incr(counter))  # FailOpen: None when down
        if number is None:
            return None
        self.store.put(f"{PREFIX}{_namespace_id(namespace)}:{number}", record, ttl_s)
        return int(number)

    def last(self, namespace: str) -> int | None:
        """The newest record number of ``namespace`` (0: none), or ``None`` if the store failed."""
        counter = self._counter_key(namespace)
        value = self.store._run(lambda: self._read(counter))
        return None if value is None else int(value)

    def read(self, namespace: str, first: int, last: int) -> list[tuple[int, bytes]]:
        """Records ``first`` … ``last`` that are still stored, in order."""
        ns = _namespace_id(namespace)
        out = []
        for number in range(first, min(last, first + MAX_CATCH_UP - 1) + 1):
            value = self.store.get(f"{PREFIX}{ns}:{number}")
            if value is not None:
                out.append((number, value))
        return out

    @staticmethod
    def _counter_key(namespace: str) -> str:
        return f"{PREFIX}{_namespace_id(namespace)}:n"

    def _incr(self, key: str) -> int:
        inner = self.store.store
        if hasattr(inner, "_redis"):
            return int(inner._redis.incr(inner.PREFIX + key))
        if hasattr(inner, "_cache"):
            return int(inner._cache.incr(key, default=0, retry=False))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + 1
            return self._counters[key]

    def _read(self, key: str) -> int:
        inner = self.store.store
        if hasattr(inner, "_redis"):
            return int(inner._redis.get(inner.PREFIX + key) or 0)
        if hasattr(inner, "_cache"):
            return int(inner._cache.get(key, default=0, retry=False) or 0)
        with self._lock:
            return self._counters.get(key, 0)
