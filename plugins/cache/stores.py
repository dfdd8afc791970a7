"""Where cache entries live: this process, the processes of one host, or a fleet through Redis.

Every store has one small interface (:class:`CacheStore`): ``get`` and ``put`` by a string key
(:attr:`plugins.cache.key.CacheKey.store_key`, which begins with the tenant namespace), each
entry with a time to live, and ``stats``. Values are opaque bytes. Each store is bounded by
bytes and evicts the least recently used entries:

- :class:`MemoryStore`: in-process (the default; nothing to start);
- :class:`HostStore`: a directory shared by one host's processes (gunicorn / uvicorn workers),
  through ``diskcache`` (SQLite plus files, safe across processes);
- :class:`RedisStore`: a Redis server shared by every replica (``redis://…``); its byte bound
  is the server's ``maxmemory`` with an LRU policy, which :meth:`RedisStore.stats` reports.

:class:`FailOpen` wraps any of them: a store that raises or is slow costs a call at most its
timeout, then is skipped for a growing pause; each outage is logged once when it starts and once
when it ends, and every skipped or failed operation is counted. A cache is never a reason for a
call to fail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What a store holds: entries, bytes, and how many entries it evicted for room (``None``: not known)."""

    entries: int
    bytes: int
    evictions: int | None


class CacheStore(Protocol):
    """The interface every store implements."""

    def get(self, key: str) -> bytes | None:
        """The live value of ``key``, or ``None`` (missing or expired)."""

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds (a value larger than the bound is not stored)."""

    def stats(self) -> StoreStats:
        """Entries, bytes and evictions so far."""


class MemoryStore:
    """In-process entries, bounded by ``max_bytes`` of values, least recently used evicted first."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._evictions = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires <= self._clock():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        if ttl_s <= 0 or len(value) > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            while self._bytes + len(value) > self.max_bytes:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self._evictions += 1
            self._entries[key] = (self._clock() + ttl_s, value)
            self._bytes += len(value)

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(len(self._entries), self._bytes, self._evictions)

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= len(value)


class HostStore:
    """Entries in ``directory``, shared by every process of the host that opens it."""

    def __init__(self, directory: str, max_bytes: int = 256 * 1024 * 1024, *, timeout_s: float = 0.05) -> None:
        import diskcache

        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = directory
        # timeout: SQLite's busy wait; eviction: diskcache culls on writes once over size_limit.
        self._cache = diskcache.Cache(
            directory, size_limit=max_bytes, eviction_policy="least-recently-used", timeout=timeout_s,
            statistics=False,
        )

    def get(self, key: str) -> bytes | None:
        value = self._cache.get(key, default=None, retry=False)
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        if ttl_s > 0:
            self._cache.set(key, value, expire=ttl_s, retry=False)

    def stats(self) -> StoreStats:
        # diskcache culls without counting what it culled.
        return StoreStats(len(self._cache), self._cache.volume(), None)

    def close(self) -> None:
        self._cache.close()


class RedisStore:
    """Entries in Redis, shared by every replica; ``url`` is ``redis://host:port/db``."""

    PREFIX = "otel-margin:cache:"

    def __init__(self, url: str, *, timeout_s: float = 0.05) -> None:
        import redis

        self.url = url
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False,
        )

    def get(self, key: str) -> bytes | None:
        value = self._redis.get(self.PREFIX + key)
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        milliseconds = int(ttl_s * 1000)
        if milliseconds > 0:
            self._redis.set(self.PREFIX + key, value, px=milliseconds)

    def stats(self) -> StoreStats:
        # Counts only this cache's keys; the byte bound and evictions are the server's.
        entries = sum(1 for _ in self._redis.scan_iter(match=self.PREFIX + "*", count=1000))
        memory = self._redis.info("memory")
        evicted = self._redis.info("stats").get("evicted_keys", 0)
        return StoreStats(entries, int(memory.get("used_memory", 0)), int(evicted))

    def close(self) -> None:
        self._redis.close()


class FailOpen:
    """A store whose failures cost a call nothing but a bounded wait, counted and logged once per outage.

    After a failure the store is skipped for ``pause_s`` (doubling per failure, at most
    ``max_pause_s``); the first operation after the pause tries it again. ``errors`` counts
    failed operations, ``skipped`` those not tried during a pause.
    """

    def __init__(
        self,
        store: CacheStore,
        name: str,
        *,
        pause_s: float = 1.0,
        max_pause_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.name = name
        self.errors = 0
        self.skipped = 0
        self._pause_s = pause_s
        self._max_pause_s = max_pause_s
        self._clock = clock
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._next_pause = pause_s
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        return self._run(lambda: self.store.get(key))

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._run(lambda: self.store.put(key, value, ttl_s))

    def stats(self) -> StoreStats | None:
        return self._run(self.store.stats)

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def _run(self, operation: Callable[[], object]):  # type: ignore[no-untyped-def]
        if self._down_since is not None and self._clock() < self._retry_at:
            with self._lock:
                self.skipped += 1
            return None
        try:
            result = operation()
        except Exception as error:  # noqa: BLE001 - every store failure fails open
            self._failed(error)
            return None
        if self._down_since is not None:
            self._recovered()
        return result

    def _failed(self, error: Exception) -> None:
        with self._lock:
            self.errors += 1
            now = self._clock()
            first = self._down_since is None
            if first:
                self._down_since = now
                self._next_pause = self._pause_s
            self._retry_at = now + self._next_pause
            self._next_pause = min(self._next_pause * 2, self._max_pause_s)
        if first:
            logger.warning(
                "otel-margin cache: store %s failed (%s: %s); calls go to the provider uncached "
                "and the store is retried after %.1f s, then less often",
                self.name, type(error).__name__, error, self._pause_s,
            )

    def _recovered(self) -> None:
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            logger.warning(
                "otel-margin cache: store %s is back after %.1f s (%d operations failed or skipped so far)",
                self.name, self._clock() - since, self.errors + self.skipped,
            )
