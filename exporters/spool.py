"""A durable, ordered, bounded directory of batches waiting to be written to ClickHouse.

It is two things at once. In embedded (chDB) mode it is how several processes share one
chDB directory that only one of them may open at a time: every process appends here, and
whoever takes the drain lock opens chDB briefly and ingests. For a ClickHouse server it is
the outage buffer: batches that could not be written within the deadline wait here and
are replayed, in order, when the server is back.

Layout of the directory::

    <spool>/00001732262400123456789-00004242-000001.batch   one batch, JSON lines
    <spool>/.00001732...-000002.batch.tmp                   being written (ignored)
    <spool>/.drain.lock                                     flock(2) of the drainer
    <spool>/rejected/                                       batches ClickHouse refused for good

Guarantees:

* A batch file appears only complete: it is written to a dot-prefixed ``.tmp`` name,
  fsynced, then renamed (atomic on POSIX), and the directory is fsynced. A writer killed
  with ``kill -9`` leaves at most a ``.tmp`` file, which readers ignore and the drainer
  deletes once it is older than :data:`STALE_TMP_SECONDS`.
* Names sort in append order: nanosecond wall time (kept monotonic per process), pid, and
  a per-process sequence number.
* A batch carries its deduplication token, so replaying a file whose insert committed
  just before a crash (file not yet deleted) is deduplicated by ClickHouse.
* The directory never grows beyond ``max_bytes``: :meth:`Spool.append` refuses (returns
  ``False``) and the caller counts the dropped spans.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, Sequence

from otel_margin.exporters.rows import DECIMAL_COLUMNS

logger = logging.getLogger(__name__)

SUFFIX = ".batch"
TMP_SUFFIX = ".tmp"
LOCK_NAME = ".drain.lock"
REJECTED_DIR = "rejected"
STALE_TMP_SECONDS = 60.0
FORMAT_VERSION = 1
_RESCAN_SECONDS = 1.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One batch read back from the spool."""

    path: Path
    token: str
    """The ``insert_deduplication_token`` the batch was (and will again be) inserted with."""
    columns: tuple[str, ...]
    rows: list[list[Any]]
    """Row values in ``columns`` order, decoded back to Python types (Decimal, datetime)."""


class Spool:
    """The spool directory. Safe to use from several threads and several processes."""

    def __init__(self, directory: Path | str, *, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._last_ns = 0
        self._sequence = 0
        self._size = 0
        self._scanned_at = float("-inf")

    # --- writing --------------------------------------------------------------------------

    def append(self, token: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path | None:
        """Durably add one batch; its file path, or ``None`` if it would exceed ``max_bytes``."""
        lines = [json.dumps({"v": FORMAT_VERSION, "token": token, "columns": list(columns), "rows": len(rows)})]
        lines.extend(json.dumps([_encode(value) for value in row], separators=(",", ":")) for row in rows)
        payload = ("\n".join(lines) + "\n").encode()
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._current_size() + len(payload) > self.max_bytes:
                return None
            name = self._next_name()
            tmp = self.directory / f".{name}{TMP_SUFFIX}"
            final = self.directory / name
            with open(tmp, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, final)
            _fsync_directory(self.directory)
            self._size += len(payload)
            return final

    # --- reading --------------------------------------------------------------------------

    def pending(self) -> list[Path]:
        """Complete batch files, oldest first."""
        try:
            names = [n for n in os.listdir(self.directory) if n.endswith(SUFFIX) and not n.startswith(".")]
        except FileNotFoundError:
            return []
        return [self.directory / n for n in sorted(names)]

    def read(self, path: Path) -> SpooledBatch | None:
        """The batch in ``path``; ``None`` if it vanished (another drainer took it)."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        lines = text.splitlines()
        header = json.loads(lines[0])
        if header.get("v") != FORMAT_VERSION or header.get("rows") != len(lines) - 1:
            raise ValueError(f"spool file {path} is not a complete version-{FORMAT_VERSION} batch")
        columns = tuple(header["columns"])
        decoders = [_decoder(c) for c in columns]
        rows = [[decode(v) for decode, v in zip(decoders, json.loads(line))] for line in lines[1:]]
        return SpooledBatch(path=path, token=str(header["token"]), columns=columns, rows=rows)

    def remove(self, path: Path) -> None:
        """Delete a batch after its insert committed."""
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
                self._size = max(self._size - size, 0)
            except FileNotFoundError:
                pass

    def reject(self, path: Path) -> Path:
        """Move a batch ClickHouse refuses for good out of the replay order (kept for a human)."""
        target_dir = self.directory / REJECTED_DIR
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / path.name
        os.replace(path, target)
        return target

    def size_bytes(self) -> int:
        """Bytes of complete and in-progress batch files (rejected ones do not count)."""
        total = 0
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if entry.is_file() and (entry.name.endswith(SUFFIX) or entry.name.endswith(TMP_SUFFIX)):
                        try:
                            total += entry.stat().st_size
                        except FileNotFoundError:
                            pass
        except FileNotFoundError:
            return 0
        return total

    # --- draining -------------------------------------------------------------------------

    @contextmanager
    def drain_lock(self) -> Iterator[bool]:
        """Try to become the one drainer (across processes); yields whether it succeeded.

        ``flock`` locks belong to the open file, so they are released when the holder
        exits or is killed: a crashed drainer never wedges the spool.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def clean_stale_tmp(self, older_than: float = STALE_TMP_SECONDS) -> int:
        """Delete ``.tmp`` files left by writers that died mid-write; how many were deleted."""
        removed = 0
        cutoff = time.time() - older_than
        try:
            names = [n for n in os.listdir(self.directory) if n.endswith(TMP_SUFFIX)]
        except FileNotFoundError:
            return 0
        for name in names:
            path = self.directory / name
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    # --- internals ------------------------------------------------------------------------

    def _current_size(self) -> int:
        # Other processes write here too, so rescan now and then; in between, count our own.
        now = time.monotonic()
        if now - self._scanned_at > _RESCAN_SECONDS:
            self._size = self.size_bytes()
            self._scanned_at = now
        return self._size

    def _next_name(self) -> str:
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        self._sequence += 1
        return f"{self._last_ns:020d}-{os.getpid():08d}-{self._sequence:06d}{SUFFIX}"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return value


def _decoder(column: str):
    if column in DECIMAL_COLUMNS:
        return lambda v: None if v is None else Decimal(v)
    if column == "timestamp":
        return lambda v: _EPOCH + timedelta(microseconds=v)
    return lambda v: v
