"""Where margin rows live: one ClickHouse client code path for embedded chDB and servers.

The endpoint decides the transport. ``chdb:///abs/path`` (or ``chdb://./relative``) is an
embedded, persistent chDB database; ``http(s)://host:port`` is a ClickHouse server. Both
go through clickhouse-connect, so every query and insert is the same code either way.

chDB lets one process at a time open a data directory, and ``close()`` releases it
(measured with chdb 4.4: open ~0.35 s cold, ~0.05-0.09 s warm, close ~0.01 s). Readers use
:func:`session` (open, query, close). The exporter writes through its spool (see
:mod:`otel_margin.exporters.spool`) and, while spans flow, keeps the directory open across
drains (a *lease*), so it gives the directory up when asked: a :func:`session` that finds
the directory held by another process touches :data:`RELEASE_MARKER` in it and retries,
and the holder, which looks at the marker a few times a second, closes its client.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from otel_margin import environment_variables as env

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "chdb://./.otel-margin/chdb"
DEFAULT_DATABASE = "otel_margin"
DEFAULT_USERNAME = "default"
DEFAULT_TTL_DAYS = 180
DEFAULT_TIMEOUT = 10.0
DEFAULT_SPOOL_DIR = "./.otel-margin/spool"
DEFAULT_SPOOL_MAX_MB = 256.0
DEFAULT_DRAIN_INTERVAL = 5.0
"""Seconds between the exporter's looks at its spool. In embedded mode a look inserts once rows
have gathered (:data:`~otel_margin.exporters.clickhouse.INSERT_MIN_BYTES`), and an insert costs
about 0.03-0.04 s of CPU however few rows it carries (docs/exporter.md), so this trades
freshness for CPU."""

_SCHEMES = ("chdb", "http", "https")

RELEASE_MARKER = ".otel-margin-release"
"""A file in the chDB data directory whose modification time asks the process holding the
directory to close it. Askers touch it before their first attempt (unless their own process
holds the directory) and at every retry while they wait, and remove it once they got in or
gave up. A holder honours only a touch made after it opened, and an exporter does
not open the directory while a touch is younger than :data:`REQUEST_FRESH_SECONDS` (so the
asker gets in before the holder's next drain reopens it). A marker left by an asker that
died is thus ignored by every later holder, and by openers after a moment."""
REQUEST_FRESH_SECONDS = 2.0
"""How long a touch of :data:`RELEASE_MARKER` keeps exporters from opening the directory
(askers touch it at least every :data:`_ASK_BACKOFF_CAP` seconds while they wait)."""
_CHDB_LOCK_FILE = "status"
"""The file chDB ``flock``s while it has the directory open (ClickHouse's status file)."""
_OPENING_LOCK_FILE = ".otel-margin-opening.lock"
"""A file in the chDB data directory that otel-margin processes ``flock`` from their look at
chDB's lock until their opening took it, so two of them never both see the directory free and
both open it: chDB refuses the second and prints "Cannot lock file … Another server instance"
to the process's stderr, past Python (measured: 5 such lines from three workers starting)."""
_ASK_BACKOFF_FIRST = 0.05
_ASK_BACKOFF_CAP = 0.4
_STRAY_FAILURES = 3
"""Failed openings of a directory nobody holds before an asker gives up early."""


class StorageUnavailable(Exception):
    """The configured ClickHouse endpoint cannot be reached or opened right now.

    The message names the endpoint and what to do about it. Exporters treat it as
    transient (spool and retry); commands print it.
    """


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where and how to reach ClickHouse. Build it with :meth:`from_env`.

    Bad constructor arguments raise ``ValueError``; bad environment values are logged
    and replaced by the defaults (see :meth:`from_env`).
    """

    endpoint: str = DEFAULT_ENDPOINT
    database: str = DEFAULT_DATABASE
    username: str = DEFAULT_USERNAME
    password: str = field(default="", repr=False)
    ttl_days: int = DEFAULT_TTL_DAYS
    """Days raw rows are kept; 0 keeps them forever."""
    timeout: float = DEFAULT_TIMEOUT
    """Overall deadline in seconds for one export, retries included."""
    spool_dir: str = DEFAULT_SPOOL_DIR
    spool_max_mb: float = DEFAULT_SPOOL_MAX_MB
    drain_interval: float = DEFAULT_DRAIN_INTERVAL
    """Seconds between the exporter's drains of the spool."""

    def __post_init__(self) -> None:
        scheme = urlparse(self.endpoint).scheme
        if scheme not in _SCHEMES:
            raise ValueError(
                f"ClickHouse endpoint {self.endpoint!r} has scheme {scheme!r}; "
                "use chdb:///path/to/dir (embedded) or http(s)://host:port (server)"
            )
        if scheme == "chdb" and not _chdb_location(self.endpoint):
            raise ValueError(
                f"ClickHouse endpoint {self.endpoint!r} names no directory; "
                "use chdb:///abs/path or chdb://./relative/path"
            )
        if not self.database or not self.database.replace("_", "").isalnum():
            raise ValueError(
                f"ClickHouse database {self.database!r} is not a plain identifier; use letters, digits and _"
            )
        if isinstance(self.ttl_days, bool) or not isinstance(self.ttl_days, int) or self.ttl_days < 0:
            raise ValueError(f"ttl_days {self.ttl_days!r} must be an integer >= 0 (0 keeps rows forever)")
        if not (_is_number(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout {self.timeout!r} must be a number of seconds > 0")
        if not (_is_number(self.spool_max_mb) and self.spool_max_mb >= 0):
            raise ValueError(f"spool_max_mb {self.spool_max_mb!r} must be a number of MiB >= 0")
        if not self.spool_dir:
            raise ValueError("spool_dir must name a directory")
        if not (_is_number(self.drain_interval) and 0 < self.drain_interval < math.inf):
            raise ValueError(f"drain_interval {self.drain_interval!r} must be a number of seconds > 0")

    @classmethod
    def from_env(cls, *, strict: bool = False, **overrides: Any) -> "StorageConfig":
        """The configuration from ``OTEL_EXPORTER_CLICKHOUSE_*``, with ``overrides`` on top.

        Overrides that are ``None`` are ignored (so callers can pass their keyword
        arguments straight through). An environment value that does not parse or
        validate is logged at warning level and replaced by the default; with ``strict``
        (a command the user runs by hand) it raises ``ValueError`` naming the variable.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown storage option(s) {sorted(unknown)}; known: {sorted(known)}")
        config = cls()
        for name, variable, parse in _ENV_FIELDS:
            raw = os.environ.get(variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                config = replace(config, **{name: parse(raw.strip())})
            except ValueError as error:
                if strict:
                    raise ValueError(
                        f"{variable}={raw!r} is not valid ({error}); fix it, or unset it for the default "
                        f"{getattr(config, name)!r}"
                    ) from error
                logger.warning("ignoring %s=%r (%s); using the default %r", variable, raw, error, getattr(config, name))
        given = {name: value for name, value in overrides.items() if value is not None}
        return replace(config, **given) if given else config

    @property
    def embedded(self) -> bool:
        """True for a chDB endpoint (one process at a time may open its directory)."""
        return urlparse(self.endpoint).scheme == "chdb"

    @property
    def chdb_path(self) -> Path:
        """The absolute data directory of a chDB endpoint (relative paths resolve against cwd)."""
        if not self.embedded:
            raise ValueError(f"endpoint {self.endpoint!r} is not a chdb:// endpoint")
        return Path(_chdb_location(self.endpoint)).expanduser().resolve()

    @property
    def spool_path(self) -> Path:
        """The absolute spool directory."""
        return Path(self.spool_dir).expanduser().resolve()


def open_client(config: StorageConfig, *, request_release: bool = False, **client_options: Any):
    """An open clickhouse-connect client for ``config`` (chDB or HTTP(S)).

    The caller closes it; for chDB, prefer :func:`session`, which always does. Extra
    ``client_options`` go to ``clickhouse_connect.get_client`` (for example
    ``compress="lz4"`` over HTTP). Raises :class:`StorageUnavailable` when the
    endpoint cannot be reached or the chDB directory is held by another process.

    ``request_release`` matters for chDB only, when another process holds the directory.
    ``False`` (the exporter's drains: another worker holding it drains the shared spool
    anyway): raise at once, without trying to open it, and also while another process is
    asking for the directory. ``True`` (:func:`session`): ask the
    holder to give it up (:data:`RELEASE_MARKER`) and retry with a short backoff for up to
    ``config.timeout`` seconds.
    """
    if config.embedded:
        return _open_chdb(config, request_release, client_options)
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import Error as ClickHouseError
    from urllib3 import Timeout

    try:
        parsed = urlparse(config.endpoint)
        # clickhouse-connect takes whole seconds at construction; the exact (float) timeout
        # is set on the client right after.
        whole = max(1, math.ceil(config.timeout))
        options: dict[str, Any] = {
            "connect_timeout": min(whole, 10),
            "send_receive_timeout": whole,
            # Retries are the exporter's job (one deadline, jittered backoff), not urllib3's.
            "query_retries": 0,
            # Sessions forbid concurrent queries; the exporter's threads share one client.
            "autogenerate_session_id": False,
        }
        options.update(client_options)
        client = clickhouse_connect.get_client(
            host=parsed.hostname or "localhost",
            port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
            interface=parsed.scheme,
            username=parsed.username or config.username,
            password=parsed.password or config.password,
            **options,
        )
        client.timeout = Timeout(connect=min(config.timeout, 10.0), read=config.timeout)
        return client
    except (ClickHouseError, OSError, RuntimeError) as error:
        raise StorageUnavailable(_unavailable_message(config, error)) from error


@contextmanager
def session(config: StorageConfig, **client_options: Any) -> Iterator[Any]:
    """Open a client, yield it, and always close it.

    For chDB this is what lets a report run beside a live service: the data directory
    is held only for the duration of the ``with`` block, and if an exporter in another
    process holds it, that exporter is asked to give it up (see :func:`open_client`,
    ``request_release=True``).
    """
    client = open_client(config, request_release=True, **client_options)
    try:
        yield client
    finally:
        client.close()


def release_marker(config: StorageConfig) -> Path:
    """The :data:`RELEASE_MARKER` of ``config``'s chDB directory, for :func:`release_requested`."""
    return config.chdb_path / RELEASE_MARKER


def release_requested(marker: Path, since_ns: int) -> bool:
    """True if a process asked for the directory of ``marker`` (:func:`release_marker`) at or
    after ``since_ns`` (``time.time_ns()``).

    One ``stat`` (about 2 µs; resolving the directory from the endpoint costs 20 times that, so
    a holder, which calls this a few times a second, resolves the marker once).
    """
    try:
        return marker.stat().st_mtime_ns >= since_ns
    except FileNotFoundError:
        return False


# --- chDB: opening a directory one process at a time ----------------------------------------


def _open_chdb(config: StorageConfig, request_release: bool, client_options: dict[str, Any]):
    path = config.chdb_path
    path.mkdir(parents=True, exist_ok=True)
    marker = path / RELEASE_MARKER
    if not request_release:
        with _opening(path) as ours:
            if not ours:
                raise StorageUnavailable(_unavailable_message(config, "another process is opening it"))
            if _held_by_a_process(path):
                # Not even tried: a refused opening costs ~20 ms of CPU and chDB prints an error.
                raise StorageUnavailable(_unavailable_message(config, "another process has it open"))
            if _asked_within(marker, REQUEST_FRESH_SECONDS):
                raise StorageUnavailable(_unavailable_message(config, "another process is waiting for it"))
            return _chdb_client(config, path, client_options)
    deadline = time.monotonic() + config.timeout
    delay, strays, first = _ASK_BACKOFF_FIRST, 0, True
    last: BaseException | str = "another process has it open"
    # Ask before the first look: exporters do not open the directory while a request is fresh,
    # so none can take it between our look at its lock and our opening (chDB would refuse us and
    # print an error), and a holder gives it up at once. Not when this process holds it: chDB
    # shares it within a process.
    asked = not _held_by_this_process(path)
    if asked:
        _touch(marker)
    try:
        while True:
            # A directory this process already has open looks held too, and chDB shares it
            # within a process: the first attempt opens unless the lock is known to be
            # another process's (an opening it refuses makes chDB print an error).
            with _opening(path) as ours:
                if ours and (not _held_by_a_process(path) or (first and not _held_by_another_process(path))):
                    try:
                        return _chdb_client(config, path, client_options)
                    except StorageUnavailable as error:
                        if not _held_by_a_process(path):
                            last = error.__cause__ or error
                            strays += 1  # not the lock: give up soon
                            if strays >= _STRAY_FAILURES:
                                raise
            first = False
            _touch(marker)
            asked = True
            if time.monotonic() + delay > deadline:
                raise StorageUnavailable(_unavailable_message(config, last))
            time.sleep(delay)
            delay = min(delay * 2, _ASK_BACKOFF_CAP)
    finally:
        if asked:
            marker.unlink(missing_ok=True)


CHDB_ENGINE_OPTIONS = {"memory_worker_period_ms": 1000}
"""Server settings for the engine chDB starts in this process (they apply when the first client
opens it). With its default period, ClickHouse's memory worker (which reconciles the engine's
memory tracker) costs an open, idle engine 3.1-3.5 ms of CPU a second; waking once a second,
0.7-0.8 ms (chdb 4.4, 20 s idle, two runs each). The exporter holds chDB while spans flow."""


def _chdb_client(config: StorageConfig, path: Path, client_options: dict[str, Any]):
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import Error as ClickHouseError

    try:
        return clickhouse_connect.get_client(interface="chdb", path=str(path), chdb_options=CHDB_ENGINE_OPTIONS,
                                             **client_options)
    except (ClickHouseError, OSError, RuntimeError) as error:
        raise StorageUnavailable(_unavailable_message(config, error)) from error


@contextmanager
def _opening(path: Path) -> Iterator[bool]:
    """Hold :data:`_OPENING_LOCK_FILE` for a look at chDB's lock and the opening that follows;
    yields False (at once) while another process, or thread, holds it.

    Yields True when the lock file cannot be created (a read-only directory): nothing to share.
    """
    try:
        fd = os.open(path / _OPENING_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # closing the descriptor below releases the lock
    finally:
        os.close(fd)


def _held_by_a_process(path: Path) -> bool:
    """True if some process (this one included) has chDB open on ``path``: its lock file is ``flock``ed.

    The probe takes the lock for an instant and lets it go; ``flock`` locks belong to the
    open file, so this never disturbs a lock this process's chDB holds.
    """
    try:
        fd = os.open(path / _CHDB_LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the only descriptor of the open file drops the probe's lock
    return False


def _held_by_another_process(path: Path) -> bool:
    """True if ``/proc/locks`` shows chDB's lock on ``path`` taken by another process.

    False when it shows this process's, and also when it cannot tell (no ``/proc/locks``).
    """
    holders = _lock_holders(path)
    return bool(holders) and str(os.getpid()) not in holders


def _held_by_this_process(path: Path) -> bool:
    """True if ``/proc/locks`` shows chDB's lock on ``path`` taken by this process."""
    return str(os.getpid()) in _lock_holders(path)


def _lock_holders(path: Path) -> set[str]:
    """The pids ``/proc/locks`` shows holding chDB's lock on ``path`` (empty if it cannot tell)."""
    try:
        status = os.stat(path / _CHDB_LOCK_FILE)
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            table = locks.read()
    except OSError:
        return set()
    # "1: FLOCK  ADVISORY  WRITE 12345 fe:00:2509152 0 EOF": the holder's pid, then the file
    # as major:minor:inode (a process waiting for the lock has "->" before FLOCK).
    file = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    holders = set()
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == file:
            holders.add(fields[4])
    return holders


def _asked_within(marker: Path, seconds: float) -> bool:
    try:
        return marker.stat().st_mtime_ns >= time.time_ns() - seconds * 1e9
    except FileNotFoundError:
        return False


def _touch(marker: Path) -> None:
    try:
        with open(marker, "ab"):
            pass
        os.utime(marker)
    except OSError as error:  # a read-only directory: the holder will not be asked
        logger.debug("cannot write the release request %s: %s", marker, error)


# --- parsing and messages ------------------------------------------------------------------


def _chdb_location(endpoint: str) -> str:
    # chdb:///abs/path → "/abs/path"; chdb://./rel/path → "./rel/path"; chdb://rel → "rel".
    parsed = urlparse(endpoint)
    return (parsed.netloc + parsed.path) if parsed.netloc else parsed.path


def _parse_endpoint(raw: str) -> str:
    StorageConfig(endpoint=raw)  # validates
    return raw


def _parse_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _parse_positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a finite number > 0")
    return value


def _is_number(value: Any) -> bool:
    """An int or a float (not a bool, which is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_nonnegative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a finite number >= 0")
    return value


def _parse_database(raw: str) -> str:
    StorageConfig(database=raw)  # validates
    return raw


_ENV_FIELDS = (
    ("endpoint", env.OTEL_EXPORTER_CLICKHOUSE_ENDPOINT, _parse_endpoint),
    ("database", env.OTEL_EXPORTER_CLICKHOUSE_DATABASE, _parse_database),
    ("username", env.OTEL_EXPORTER_CLICKHOUSE_USERNAME, str),
    ("password", env.OTEL_EXPORTER_CLICKHOUSE_PASSWORD, str),
    ("ttl_days", env.OTEL_EXPORTER_CLICKHOUSE_TTL_DAYS, _parse_int),
    ("timeout", env.OTEL_EXPORTER_CLICKHOUSE_TIMEOUT, _parse_positive_float),
    ("spool_dir", env.OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR, str),
    ("spool_max_mb", env.OTEL_EXPORTER_CLICKHOUSE_SPOOL_MAX_MB, _parse_nonnegative_float),
    ("drain_interval", env.OTEL_EXPORTER_CLICKHOUSE_DRAIN_INTERVAL, _parse_positive_float),
)


def _unavailable_message(config: StorageConfig, error: BaseException | str) -> str:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if config.embedded:
        return (
            f"cannot open the embedded ClickHouse (chDB) directory {str(config.chdb_path)!r} "
            f"(endpoint {config.endpoint!r}): {detail}. chDB lets one process at a time open a "
            "directory; if another otel-margin process holds it, retry in a moment, or point "
            f"{env.OTEL_EXPORTER_CLICKHOUSE_ENDPOINT} at a different directory or a ClickHouse server."
        )
    return (
        f"cannot reach ClickHouse at {config.endpoint!r}: {detail}. Check that the server is "
        f"running and reachable, or set {env.OTEL_EXPORTER_CLICKHOUSE_ENDPOINT} "
        "(and _USERNAME / _PASSWORD) to the right server."
    )
