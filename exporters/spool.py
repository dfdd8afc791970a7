"""A durable, ordered, bounded directory of batches waiting to be written to ClickHouse.

It is two things at once. In embedded (chDB) mode it is how several processes share one
chDB directory that only one of them may open at a time: every process appends here, and
whoever takes the drain lock and can open chDB (or already holds it) ingests. For a ClickHouse server it is
the outage buffer: batches that could not be written within the deadline wait here and
are replayed, in order, when the server is back.

Layout of the directory::

    <spool>/00001732262400123456789-00004242-000001.batch   one batch: a JSON header line, then its rows
    <spool>/00001732262400123456789-00004242-000001.group   several batches sealed into one insert
    <spool>/.00001732...-000002.batch.tmp                   being written (ignored)
    <spool>/.drain.lock                                     flock(2) of the drainer
    <spool>/rejected/                                       batches ClickHouse refused for good

A batch file is a header line (``v``, ``token``, ``format``, ``columns``, ``rows``, ``bytes``)
followed by the body exactly as ClickHouse ingests it (a ``Native`` block,
:data:`~otel_margin.exporters.rows.FORMAT`), so replaying it costs no decoding. Batches of
earlier releases stay readable: version 2 (JSON rows, inserted as they are) and version 1
(JSON lines, re-encoded on reading).

Every insert has a fixed cost (in chDB mode, engine work in this process), so the drainer
inserts many small batches as one: :meth:`Spool.next_ingest` seals the oldest batches into
a *group* — a small manifest naming its member files and one deduplication token derived
from theirs — before anything is inserted. Until the group's insert has committed and its
members are removed, the group is replayed as it is, with the same token, so a crash at
any point neither loses nor duplicates a row.

Guarantees:

* A batch or group file appears only complete: it is written to a dot-prefixed ``.tmp``
  name, fsynced, then renamed (atomic on POSIX), and the directory is fsynced. A writer
  killed with ``kill -9`` leaves at most a ``.tmp`` file, which readers ignore and the
  drainer deletes once it is older than :data:`STALE_TMP_SECONDS`.
* Names sort in append order: nanosecond wall time (kept monotonic per process), pid, and
  a per-process sequence number.
* A batch carries its deduplication token, so replaying a file whose insert committed
  just before a crash (file not yet deleted) is deduplicated by ClickHouse.
* The directory never grows beyond ``max_bytes``: :meth:`Spool.append` refuses (returns
  ``None``) and the caller counts the dropped spans. A write the disk refuses (full) raises
  ``OSError`` and leaves no partial file behind; the caller counts those spans too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from otel_margin.exporters.rows import FORMAT, JSON_FORMAT, Block, check_block, encode_rows, merge_blocks

logger = logging.getLogger(__name__)

SUFFIX = ".batch"
GROUP_SUFFIX = ".group"
TMP_SUFFIX = ".tmp"
LOCK_NAME = ".drain.lock"
REJECTED_DIR = "rejected"
STALE_TMP_SECONDS = 60.0
FORMAT_VERSION = 3
_JSON_VERSION = 2  # batches of releases before the Native format
_RESCAN_SECONDS = 1.0


class SpoolCorruption(ValueError):
    """A batch file that cannot be read back (``path`` names it); it is set aside, never retried."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"spool file {path} {reason}")
        self.path = path


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One insert's worth of spooled rows: a single batch file, or a sealed group of them."""

    path: Path
    """The batch file, or the group's manifest."""
    token: str
    """The ``insert_deduplication_token`` it was (and will again be) inserted with."""
    columns: tuple[str, ...]
    rows: int
    body: bytes
    """The rows, ready to insert in ``format``."""
    members: tuple[Path, ...]
    """The batch files whose rows these are (``(path,)`` for a single batch)."""
    format: str = FORMAT
    """:data:`~otel_margin.exporters.rows.FORMAT`, or :data:`~otel_margin.exporters.rows.JSON_FORMAT`
    for a batch an earlier release spooled."""
    sizes: tuple[int, ...] = ()
    """The size of each column's data in a Native body (:class:`~otel_margin.exporters.rows.Block`)."""

    def block(self) -> Block:
        return Block(self.columns, self.rows, self.body, self.sizes)


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

    def append(self, token: str, block: Block) -> Path | None:
        """Durably add one batch; its file path, or ``None`` if it would exceed ``max_bytes``."""
        header = {"v": FORMAT_VERSION, "token": token, "format": FORMAT, "columns": list(block.columns),
                  "rows": block.rows, "bytes": len(block.body), "sizes": list(block.sizes)}
        payload = json.dumps(header).encode() + b"\n" + block.body
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._current_size() + len(payload) > self.max_bytes:
                return None
            final = self.directory / self._next_name(SUFFIX)
            self._write_atomically(final, payload)
            self._size += len(payload)
            return final

    # --- reading --------------------------------------------------------------------------

    def pending(self) -> list[Path]:
        """Complete batch files, oldest first (members of sealed groups included)."""
        return self._listing(SUFFIX)

    def waiting_since_ns(self) -> int | None:
        """When the oldest pending batch was appended (``time.time_ns()``, from its name), or ``None``.

        A name that carries no time (not written by this class) counts as waiting since 0.
        """
        pending = self.pending()
        if not pending:
            return None
        try:
            return int(pending[0].name.split("-", 1)[0])
        except ValueError:
            return 0

    def pending_bytes(self) -> int:
        """Bytes waiting in the spool: exact for this process's own writes, other processes' seen once a second."""
        with self._lock:
            return self._current_size()

    def read(self, path: Path) -> SpooledBatch | None:
        """The batch in ``path``; ``None`` if it vanished (another drainer took it).

        Raises :class:`SpoolCorruption` when the file is not a complete batch.
        """
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        newline = data.find(b"\n")
        try:
            header = json.loads(data[: newline if newline >= 0 else len(data)])
            if header.get("v") == 1:
                return _read_version_1(path, header, data[newline + 1 :])
            body = data[newline + 1 :]
            complete = (
                newline >= 0
                and (header.get("v"), header.get("format")) in ((FORMAT_VERSION, FORMAT), (_JSON_VERSION, JSON_FORMAT))
                and header.get("bytes") == len(body)
                and isinstance(header.get("rows"), int)
            )
            if not complete:
                raise ValueError("header and body do not match")
            batch = SpooledBatch(path=path, token=str(header["token"]), columns=tuple(header["columns"]),
                                rows=header["rows"], body=body, members=(path,), format=header["format"],
                                sizes=tuple(header.get("sizes", ())))
            if batch.format == FORMAT:
                check_block(batch.block())
            return batch
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as error:
            raise SpoolCorruption(path, f"is not a complete version-{FORMAT_VERSION} batch ({error})") from None

    def next_ingest(self, *, max_rows: int, max_bytes: int, newest: str | None = None) -> SpooledBatch | None:
        """The next rows to insert, or ``None`` when nothing waits. Only the drain-lock holder calls this.

        A group sealed by an earlier drain comes first, unchanged. Otherwise the oldest batch
        files are taken while they fit in ``max_rows`` / ``max_bytes`` (at least one) and have
        the same columns and format; several are sealed into a group first. ``newest``: take
        no batch file whose name sorts after it (files that arrived later). Raises
        :class:`SpoolCorruption` when the oldest batch cannot be read.
        """
        for manifest in self._listing(GROUP_SUFFIX):
            group = self._read_group(manifest)
            if group is not None:
                return group
        taken: list[SpooledBatch] = []
        rows = size = 0
        for path in self.pending():
            if newest is not None and path.name > newest:
                break
            try:
                batch = self.read(path)
            except SpoolCorruption:
                if not taken:
                    raise
                break
            if batch is None:
                continue
            if taken and (batch.columns != taken[0].columns or batch.format != taken[0].format
                          or rows + batch.rows > max_rows or size + len(batch.body) > max_bytes):
                break
            taken.append(batch)
            rows, size = rows + batch.rows, size + len(batch.body)
            if rows >= max_rows or size >= max_bytes:
                break
        if len(taken) <= 1:
            return taken[0] if taken else None
        token = hashlib.sha256(("group;" + ";".join(b.token for b in taken)).encode()).hexdigest()
        manifest = self.directory / (taken[0].path.name[: -len(SUFFIX)] + GROUP_SUFFIX)
        names = [b.path.name for b in taken]
        self._write_atomically(manifest, json.dumps({"v": FORMAT_VERSION, "token": token, "members": names}).encode())
        return _group(manifest, token, taken)

    def remove(self, batch: SpooledBatch) -> None:
        """Delete a batch (or a group and its members) after its insert committed."""
        with self._lock:
            for path in batch.members:
                try:
                    size = path.stat().st_size
                    path.unlink()
                    self._size = max(self._size - size, 0)
                except FileNotFoundError:
                    pass
        self.dissolve(batch)

    def dissolve(self, batch: SpooledBatch) -> None:
        """Forget a group (its members stay pending, each with its own token); no-op for a single batch.

        Only for a group whose insert did not commit (ClickHouse refused it).
        """
        if batch.path.name.endswith(GROUP_SUFFIX):
            batch.path.unlink(missing_ok=True)

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

    def _listing(self, suffix: str) -> list[Path]:
        try:
            names = [n for n in os.listdir(self.directory) if n.endswith(suffix) and not n.startswith(".")]
        except FileNotFoundError:
            return []
        return [self.directory / n for n in sorted(names)]

    def _read_group(self, manifest: Path) -> SpooledBatch | None:
        try:
            header = json.loads(manifest.read_bytes())
            token, names = str(header["token"]), list(header["members"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            # Written atomically, so this is damage from outside: its members are still
            # batches of their own, which are inserted with their own tokens.
            logger.warning("otel-margin: ignoring the unreadable spool group %s (%s)", manifest, error)
            manifest.unlink(missing_ok=True)
            return None
        members = [batch for batch in (self.read(self.directory / name) for name in names) if batch is not None]
        if not members:  # committed; the drainer stopped between removing the members and the manifest
            manifest.unlink(missing_ok=True)
            return None
        # Members that are gone were committed with this token, so re-inserting the rest with
        # it is deduplicated by ClickHouse.
        return _group(manifest, token, members)

    def _write_atomically(self, final: Path, payload: bytes) -> None:
        tmp = final.with_name(f".{final.name}{TMP_SUFFIX}")
        try:
            with open(tmp, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: give back what the half-written file took
            raise
        os.rename(tmp, final)
        _fsync_directory(self.directory)

    def _current_size(self) -> int:
        # Other processes write here too, so rescan now and then; in between, count our own.
        now = time.monotonic()
        if now - self._scanned_at > _RESCAN_SECONDS:
            self._size = self.size_bytes()
            self._scanned_at = now
        return self._size

    def _next_name(self, suffix: str) -> str:
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        self._sequence += 1
        return f"{self._last_ns:020d}-{os.getpid():08d}-{self._sequence:06d}{suffix}"


def _group(manifest: Path, token: str, members: list[SpooledBatch]) -> SpooledBatch:
    """One insert of ``members`` (of one format and columns): their Native blocks merged into one, or
    their JSON rows joined by lines."""
    first = members[0]
    paths = tuple(b.path for b in members)
    if first.format == JSON_FORMAT:
        return SpooledBatch(path=manifest, token=token, columns=first.columns, rows=sum(b.rows for b in members),
                            body=b"\n".join(b.body for b in members), members=paths, format=JSON_FORMAT)
    merged = merge_blocks([b.block() for b in members])
    return SpooledBatch(path=manifest, token=token, columns=merged.columns, rows=merged.rows, body=merged.body,
                        members=paths, sizes=merged.sizes)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_version_1(path: Path, header: dict[str, Any], rest: bytes) -> SpooledBatch:
    """A batch spooled by otel-margin before version 2: JSON lines, timestamps in Unix µs (as today's rows)."""
    lines = rest.decode().splitlines()
    if header.get("rows") != len(lines):
        raise ValueError(f"{header.get('rows')} rows announced, {len(lines)} found")
    columns = tuple(header["columns"])
    block = encode_rows([json.loads(line) for line in lines], columns=columns)
    return SpooledBatch(path=path, token=str(header["token"]), columns=columns, rows=block.rows, body=block.body,
                        members=(path,), sizes=block.sizes)
