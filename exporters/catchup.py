"""A reader's catch-up: in embedded mode, insert what exporters spooled before reading.

In embedded (chDB) mode the exporters of a service's workers append batches to their spools
and insert them later, once rows have gathered (docs/exporter.md). A reader — ``otel-margin
report`` — that opened the directory would see none of the rows still waiting, and in the first
minute of a service's life not even the schema. So, once it holds the directory, a reader
inserts every batch waiting in every spool that writes to this directory, as the exporter's
drainer would (the same deduplication tokens and sealed groups, so nothing is stored twice;
refused or unreadable batches are left to the exporters), and then reads. That makes "a report
sees every call spooled before it asked" true from a service's first second, whichever spool
directory each worker uses.

Exporters register their spool directories, with the database they write to, in the chDB
directory (:func:`register_spool`); a reader catches up those of its database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from otel_margin.exporters.rows import FORMAT, JSON_INSERT_FORMAT, json_insert_block
from otel_margin.exporters.spool import SUFFIX, Spool
from otel_margin.exporters.storage import StorageConfig
from otel_margin.schema import apply_schema, quote_identifier

logger = logging.getLogger(__name__)

SPOOLS_DIR = ".otel-margin-spools"
"""The directory, inside the chDB data directory, where embedded exporters register their spool
directories: one small JSON file per spool and database (``{"spool": <absolute path>, "database": …}``)."""
CATCH_UP_SECONDS = 5.0
"""The longest a reader spends inserting spooled rows before it reads (what is left stays
spooled for the exporters)."""


def register_spool(config: StorageConfig) -> None:
    """Note ``config``'s spool directory and database in its chDB directory, for readers of that
    database (embedded mode only).

    Written once per spool directory and database (a look at one small file afterwards). Never
    raises: readers then do not catch this spool up, and see its rows once the exporter inserts them.
    """
    if not config.embedded:
        return
    spool = str(config.spool_path)
    content = json.dumps({"spool": spool, "database": config.database})
    entry = config.chdb_path / SPOOLS_DIR / hashlib.sha256(content.encode()).hexdigest()[:24]
    try:
        if entry.is_file() and entry.read_text("utf-8") == content:
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        temporary = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        temporary.write_text(content, "utf-8")
        os.replace(temporary, entry)
    except OSError as error:
        logger.debug("otel-margin: cannot register the spool %s in %s: %s", spool, entry.parent, error)


def registered_spools(config: StorageConfig) -> list[Path]:
    """The existing spool directories registered (:func:`register_spool`) in ``config``'s chDB
    directory by exporters writing to ``config.database``, each once."""
    if not config.embedded:
        return []
    try:
        entries = sorted((config.chdb_path / SPOOLS_DIR).iterdir())
    except OSError:
        return []
    found: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue  # being written
        try:
            registration = json.loads(entry.read_text("utf-8"))
            if registration["database"] == config.database:
                found.append(Path(registration["spool"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return list(dict.fromkeys(path for path in found if path.is_dir()))


def insert_spooled_rows(client: Any, config: StorageConfig, *, timeout: float = CATCH_UP_SECONDS) -> int:
    """Insert the batches waiting in ``config``'s spools through ``client``; the rows inserted.

    Embedded mode only (a server's spools belong to the services that wrote them, which replay
    them when the server is reachable); returns 0 otherwise. ``client`` is the reader's open
    chDB client (never closed here). Takes each spool's drain lock, inserts what waited when it
    got it (oldest first, many batches per insert, each with the token the exporter would use),
    and deletes what committed. Creates the schema when it inserts (as the exporter does on
    its first insert). Never raises: what cannot be inserted within ``timeout`` seconds, or
    fails, stays spooled for the exporters (logged at debug level).
    """
    if not config.embedded:
        return 0
    deadline = time.monotonic() + timeout
    inserted = 0
    for directory in registered_spools(config):
        if not any(directory.glob("*" + SUFFIX)):
            continue
        spool = Spool(directory, max_bytes=int(config.spool_max_mb * 1024 * 1024))
        try:
            inserted += _insert_spool(client, config, spool, deadline)
        except Exception as error:  # noqa: BLE001 - the exporters insert it later; the reader reads
            logger.debug("otel-margin: catching up the spool %s failed: %s", directory, error)
    return inserted


def _insert_spool(client: Any, config: StorageConfig, spool: Spool, deadline: float) -> int:
    while True:
        with spool.drain_lock() as acquired:
            if acquired:
                return _insert_waiting(client, config, spool, deadline)
        # Another process's drainer has it for a moment: it cannot open chDB while we hold it.
        if time.monotonic() >= deadline:
            return 0
        time.sleep(0.02)


def _insert_waiting(client: Any, config: StorageConfig, spool: Spool, deadline: float) -> int:
    # Imported here: the exporter imports this module (register_spool).
    from otel_margin.exporters.clickhouse import INGEST_MAX_BYTES, INGEST_MAX_ROWS, INSERT_SETTINGS
    from otel_margin.exporters.record_rows import table_for

    waiting = spool.pending()
    newest = waiting[-1].name if waiting else ""
    inserted, schema_ready = 0, False
    while time.monotonic() < deadline:
        batch = spool.next_ingest(max_rows=INGEST_MAX_ROWS, max_bytes=INGEST_MAX_BYTES, newest=newest)
        if batch is None:
            break
        if not schema_ready:
            apply_schema(client, database=config.database, ttl_days=config.ttl_days)
            schema_ready = True
        body, fmt = batch.body, batch.format
        if fmt != FORMAT:  # a batch an earlier release spooled as JSON rows
            body, fmt = json_insert_block(batch.columns, body), JSON_INSERT_FORMAT
        # An outcome or cost-line batch goes to its own table, as the exporter inserts it (a batch
        # holds one table's columns), never into llm_calls, where it would count as calls.
        table = f"{quote_identifier(config.database)}.{quote_identifier(table_for(batch.columns))}"
        client.raw_insert(table, insert_block=body, fmt=fmt,
                          settings={**INSERT_SETTINGS, "insert_deduplication_token": batch.token})
        spool.remove(batch)
        inserted += batch.rows
    return inserted
