"""``otel-margin dashboard``: the margin dashboard in a browser, live or as an HTML snapshot.

Live (the default), it serves the page on ``--host``:``--port`` (127.0.0.1:8050) and prints the
URL; the page asks for fresh data every ``--refresh`` seconds and each request reads the store
through a short storage session (embedded chDB is held only while the queries run, and the rows
the service's exporters spooled are inserted first, as ``otel-margin report`` does). With
``--output FILE.html`` it writes one self-contained page instead (plotly and the data inside; it
opens with no network) for the filters given on the command line. See docs/dashboard.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from otel_margin.analysis.allocation import ALLOCATE_BY, DEFAULT_ALLOCATE_BY

_NO_SCHEMA_CODES = (46, 47, 60, 81)
"""ClickHouse's UNKNOWN_FUNCTION (a parameterised view), UNKNOWN_IDENTIFIER, UNKNOWN_TABLE and
UNKNOWN_DATABASE: the store lacks the otel-margin schema or part of it."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``dashboard``."""
    parser = subparsers.add_parser("dashboard", help="the margin dashboard in a browser (live, or an HTML snapshot)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port to serve on (default 8050; 0: any free port)")
    parser.add_argument("--refresh", type=int, default=30, metavar="SECONDS",
                        help="how often the page reloads its data (default 30)")
    parser.add_argument("--output", metavar="FILE.html", help="write a self-contained snapshot to FILE.html and exit")
    parser.add_argument("--days", type=int, default=30, help="period: the last DAYS days, UTC (default 30)")
    parser.add_argument("--feature", default="", help="only this feature")
    parser.add_argument("--tier", default="", help="only this pricing tier")
    parser.add_argument("--customer", default="", help="only this customer")
    parser.add_argument("--allocate-by", choices=ALLOCATE_BY, default=DEFAULT_ALLOCATE_BY,
                        help=f"how revenue without a feature is split across features (default {DEFAULT_ALLOCATE_BY})")
    parser.add_argument("--database", help="database name (default: OTEL_EXPORTER_CLICKHOUSE_DATABASE)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the snapshot, or serve until interrupted."""
    from otel_margin.analysis.dashboard import page
    from otel_margin.analysis.dashboard.data import Filters
    from otel_margin.analysis.dashboard.server import StoreError, serve
    from otel_margin.cli import CommandError, storage_config

    if args.refresh < 1:
        raise CommandError(f"--refresh {args.refresh} must be at least 1 second")
    try:
        filters = Filters(days=args.days, feature=args.feature, tier=args.tier, customer=args.customer,
                          allocate_by=args.allocate_by)
    except ValueError as error:
        raise CommandError(f"--days {args.days}: {error}") from error
    config = storage_config(database=args.database)

    def fetch(chosen: Filters) -> dict[str, Any]:
        return read_dashboard(config, chosen)

    if args.output:
        try:
            document = fetch(filters)
        except StoreError as error:
            raise CommandError(str(error)) from error
        path = Path(args.output)
        try:
            path.write_text(page.snapshot(document), encoding="utf-8")
        except OSError as error:
            raise CommandError(f"cannot write the snapshot to {str(path)!r} ({error.strerror}); "
                               "choose a writable path with --output") from error
        print(f"wrote {path} ({path.stat().st_size:,} bytes): open it in a browser, no network needed")
        return 0
    try:
        server = serve(fetch, host=args.host, port=args.port, refresh_seconds=args.refresh, defaults=filters)
    except OSError as error:
        raise CommandError(f"cannot serve on {args.host}:{args.port} ({error.strerror}); "
                           "choose another with --port (0 picks a free one) or --host") from error
    host, port = server.server_address[:2]
    print(f"otel-margin dashboard: http://{_url_host(host)}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def read_dashboard(config: Any, filters: Any) -> dict[str, Any]:
    """The dashboard's document from the store of ``config``, in one short session.

    The policy file (floors, bands, allocation weights) is read at each call, so an edit shows at
    the page's next refresh. Raises :class:`~otel_margin.analysis.dashboard.server.StoreError`
    with a message for the user when the policy file is not valid, or the store cannot be opened
    or lacks the schema.
    """
    from otel_margin.analysis.dashboard import data
    from otel_margin.analysis.dashboard.server import StoreError
    from otel_margin.exporters.catchup import insert_spooled_rows
    from otel_margin.exporters.storage import StorageUnavailable, session
    from otel_margin.policy import PolicyError, load_policy

    try:
        policy = load_policy()
    except PolicyError as error:
        raise StoreError(str(error)) from error
    try:
        with session(config) as client:
            insert_spooled_rows(client, config)  # embedded: what the exporters spooled before we asked
            if not data.has_calls(client, config.database):
                return data.empty(filters, (
                    f"no LLM calls recorded yet in database {config.database!r} at {config.endpoint}. Calls appear "
                    "once an instrumented application exports them; `otel-margin demo` records sample calls."))
            return data.build(client, filters, policy=policy, database=config.database)
    except StorageUnavailable as error:
        raise StoreError(str(error)) from error
    except Exception as error:
        if getattr(error, "code", None) not in _NO_SCHEMA_CODES:
            raise
        raise StoreError(
            f"database {config.database!r} at {config.endpoint} lacks the otel-margin schema, or part of it after "
            f"an upgrade ({str(error).splitlines()[0]}). Create what is missing with `otel-margin schema apply`."
        ) from error


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


