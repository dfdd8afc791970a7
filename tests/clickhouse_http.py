"""A loopback server that speaks the ClickHouse HTTP interface over the chDB engine.

No modern ClickHouse server installs on our machines, so the HTTP transport is tested
against this: real SQL executed by the real engine (chDB), behind the HTTP surface that
clickhouse-connect uses:

* ``GET /ping`` → ``Ok.``
* the query in the body, in the ``query`` URL parameter, or split between both (inserts);
  ``param_x`` bound parameters; every other unknown URL parameter is a setting (``SET``);
* ``INSERT … FORMAT <fmt>`` with the data after the statement, request bodies chunked
  and/or compressed (``Content-Encoding: lz4`` (frame) / ``zstd`` / ``gzip`` / ``deflate``);
* results in whatever ``FORMAT`` the query names (``Native`` for clickhouse-connect),
  compressed on ``enable_http_compression=1`` + ``Accept-Encoding``;
* ``X-ClickHouse-Summary`` / ``-Query-Id`` / ``-Format`` / ``-Timezone`` /
  ``-Server-Display-Name`` headers, and errors as ``Code: N. DB::Exception: …`` with
  ``X-ClickHouse-Exception-Code``.

It runs in its own process (chDB allows one data directory per process, and the tests
open other directories), started by :class:`LoopbackClickHouse`, which also injects faults
through a second, control port: ``down()`` (connections refused), ``fail_next(n)``
(HTTP 503), ``slow_next(n, seconds)``, ``lose_insert_responses(n, seconds)`` (the insert
commits, then the connection hangs and closes without a response).

Run by hand: ``python tests/clickhouse_http.py --data /tmp/chdb`` prints the ports.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

DISPLAY_NAME = "otel-margin-loopback"

# URL parameters ClickHouse's HTTP handler consumes itself; everything else is a setting.
_TRANSPORT_PARAMS = frozenset(
    {
        "query", "database", "query_id", "default_format", "wait_end_of_query", "compress", "decompress",
        "enable_http_compression", "session_id", "session_timeout", "session_check", "client_protocol_version",
        "send_progress_in_http_headers", "http_headers_progress_interval_ms", "buffer_size", "user", "password",
        "quota_key", "role", "cancel_http_readonly_queries_on_client_close", "http_zlib_compression_level",
    }
)
_INSERT_RE = re.compile(rb"^\s*INSERT\s+INTO\s+(?P<head>.*?)\s*\bFORMAT\s+(?P<fmt>\w+)[ \t]*(\r?\n)?", re.I | re.S)
_TRAILING_FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.I)
_RESULT_STATEMENT_RE = re.compile(r"^\s*(\(|SELECT|WITH|SHOW|DESC|DESCRIBE|EXISTS|EXPLAIN|CHECK)\b", re.I)
_ERROR_RE = re.compile(r"Code:\s*(\d+)\.\s*(?:DB::Exception:\s*)?(.*)", re.S)


# --- the server (runs in the child process) ------------------------------------------------


@dataclass
class Faults:
    """What the next requests suffer. Shared by the handler threads under ``lock``."""

    fail: int = 0
    fail_status: int = 503
    slow: int = 0
    slow_seconds: float = 0.0
    lose: int = 0
    lose_seconds: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, name: str) -> bool:
        with self.lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return True
            return False


class ChdbHTTPServer:
    """The data port (ClickHouse HTTP) and its up/down switch."""

    def __init__(self, data_dir: str, host: str = "127.0.0.1", port: int = 0) -> None:
        import chdb

        self._chdb = chdb
        self.data_dir = os.path.realpath(data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        self._keeper = chdb.connect(self.data_dir)  # keeps the engine up between requests
        self.faults = Faults()
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.up()

    def up(self) -> None:
        if self._server is not None:
            return
        owner = self

        class Handler(_ClickHouseHandler):
            server_owner = owner

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def down(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._connections_lock:  # a dead server keeps no keep-alive connection either
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections.clear()

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def connect(self):
        return self._chdb.connect(self.data_dir)


class _ClickHouseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_owner: ChdbHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server_owner.track(self.connection, True)

    def finish(self) -> None:
        self.server_owner.track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        return  # quiet: tests read the request log from the control port instead

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        owner = self.server_owner
        url = urlparse(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        body = self._read_body()
        with owner.faults.lock:
            owner.faults.log.append(
                {
                    "method": self.command,
                    "path": url.path,
                    "params": sorted(params),
                    "content_encoding": self.headers.get("Content-Encoding", ""),
                    "transfer_encoding": self.headers.get("Transfer-Encoding", ""),
                    "accept_encoding": self.headers.get("Accept-Encoding", ""),
                    "settings": {k: v for k, v in params.items() if k.startswith("insert_dedup")},
                }
            )
        if url.path == "/ping":
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        if owner.faults.take("fail"):
            self._send(owner.faults.fail_status, b"injected failure\n", {"Content-Type": "text/plain"})
            return
        if owner.faults.take("slow"):
            time.sleep(owner.faults.slow_seconds)
        try:
            body = _decompress(body, self.headers.get("Content-Encoding", ""))
            query = params.pop("query", "")
            sql = (query.encode() + (b"\n" + body if body else b"")) if query else body
            result, fmt, summary = _execute(owner, sql, params)
        except _QueryError as error:
            message = f"Code: {error.code}. DB::Exception: {error.message} (version {DISPLAY_NAME})\n".encode()
            status = 404 if error.code in (60, 81) else 400 if error.code == 62 else 500
            self._send(status, message, {"X-ClickHouse-Exception-Code": str(error.code), "Content-Type": "text/plain"})
            return
        if re.match(rb"^\s*INSERT\b", sql[:64], re.I) and owner.faults.take("lose"):
            time.sleep(owner.faults.lose_seconds)  # committed; the client never hears about it
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        headers = {
            "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Server-Display-Name": DISPLAY_NAME,
            "X-ClickHouse-Summary": json.dumps(summary),
            "Content-Type": "application/octet-stream" if fmt == "Native" else "text/plain; charset=UTF-8",
        }
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
        if params.get("enable_http_compression") == "1":
            result, encoding = _compress(result, self.headers.get("Accept-Encoding", ""))
            if encoding:
                headers["Content-Encoding"] = encoding
        self._send(200, result, headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QueryError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _execute(owner: ChdbHTTPServer, sql: bytes, params: dict[str, str]) -> tuple[bytes, str, dict[str, str]]:
    bound = {k[len("param_") :]: v for k, v in params.items() if k.startswith("param_")}
    settings = {k: v for k, v in params.items() if k not in _TRANSPORT_PARAMS and not k.startswith("param_")}
    conn = owner.connect()  # one handle per request: SET / USE stay with this request
    started = time.perf_counter_ns()
    try:
        for name, value in settings.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise _QueryError(115, f"Unknown setting '{name}'. (UNKNOWN_SETTING)")
            _run(conn, f"SET {name} = '{_escape(value)}'", "TabSeparated")
        if params.get("database"):
            _run(conn, f"USE `{params['database'].replace('`', '')}`", "TabSeparated")
        insert = _INSERT_RE.match(sql)
        if insert:
            return _insert(conn, insert, sql[insert.end() :], started)
        text = sql.decode()
        trailing = _TRAILING_FORMAT_RE.search(text)
        fmt = trailing.group(1) if trailing else params.get("default_format", "TabSeparated")
        result = _run(conn, text, fmt, bound)
        data = result.bytes() or b""
        produces = bool(data) or bool(_RESULT_STATEMENT_RE.match(text))
        summary = _summary(result, started, written=False)
        return data, fmt if produces else "", summary
    finally:
        conn.close()


def _insert(conn: Any, match: re.Match[bytes], data: bytes, started: int) -> tuple[bytes, str, dict[str, str]]:
    # chDB reads input from files: the same route clickhouse-connect's chDB backend takes.
    with tempfile.NamedTemporaryFile(suffix=".data", delete=False) as handle:
        handle.write(data)
    try:
        head = match.group("head").decode()
        fmt = match.group("fmt").decode()
        result = _run(conn, f"INSERT INTO {head} FROM INFILE '{_escape(handle.name)}' FORMAT {fmt}", "TabSeparated")
        return b"", "", _summary(result, started, written=True)
    finally:
        os.unlink(handle.name)


def _run(conn: Any, sql: str, fmt: str, bound: dict[str, str] | None = None) -> Any:
    try:
        return conn.query(sql, fmt, params=bound or None)
    except Exception as error:  # noqa: BLE001 - chDB raises ChdbError / RuntimeError
        text = str(error).strip()
        found = _ERROR_RE.search(text)
        if found:
            raise _QueryError(int(found.group(1)), found.group(2).strip()) from None
        raise _QueryError(1002, text or type(error).__name__) from None


def _summary(result: Any, started: int, *, written: bool) -> dict[str, str]:
    rows, size = str(result.rows_read()), str(result.bytes_read())
    return {
        "read_rows": "0" if written else rows,
        "read_bytes": "0" if written else size,
        "written_rows": rows if written else "0",
        "written_bytes": size if written else "0",
        "total_rows_to_read": "0",
        "result_rows": "0",
        "result_bytes": "0",
        "elapsed_ns": str(time.perf_counter_ns() - started),
    }


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return body
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(body)
    if encoding == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]
        return zstd.decompress(body)
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise _QueryError(36, f"Unknown HTTP compression method '{encoding}'. (BAD_ARGUMENTS)")


def _compress(body: bytes, accept: str) -> tuple[bytes, str]:
    for encoding in (e.strip().lower() for e in accept.split(",")):
        if encoding == "lz4":
            import lz4.frame

            return lz4.frame.compress(body), encoding
        if encoding == "zstd":
            try:
                from compression import zstd  # type: ignore[import-not-found]
            except ImportError:
                from backports import zstd  # type: ignore[no-redef]
            return zstd.compress(body), encoding
        if encoding == "gzip":
            return gzip.compress(body), encoding
        if encoding == "deflate":
            return zlib.compress(body), encoding
    return body, ""


class _ControlHandler(BaseHTTPRequestHandler):
    """``POST /down``, ``/up``, ``/faults`` (JSON), ``/reset-log``; ``GET /log``."""

    server_owner: ChdbHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:
        with self.server_owner.faults.lock:
            self._reply(json.dumps(self.server_owner.faults.log).encode())

    def do_POST(self) -> None:
        owner = self.server_owner
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/down":
            owner.down()
        elif self.path == "/up":
            owner.up()
        elif self.path == "/faults":
            with owner.faults.lock:
                for name, value in payload.items():
                    setattr(owner.faults, name, value)
        elif self.path == "/reset-log":
            with owner.faults.lock:
                owner.faults.log.clear()
        self._reply(json.dumps({"port": owner.port}).encode())

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(argv: list[str] | None = None) -> int:
    """Serve until stdin closes (so the server dies with the test process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="chDB data directory")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    owner = ChdbHTTPServer(args.data, port=args.port)

    class Control(_ControlHandler):
        server_owner = owner

    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(json.dumps({"port": owner.port, "control_port": control.server_address[1]}), flush=True)
    sys.stdin.read()
    return 0


# --- the test-side handle --------------------------------------------------------------------


class LoopbackClickHouse:
    """Starts the server in a child process and steers its faults."""

    faults_supported = True

    def __init__(self, data_dir: Path) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--data", str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ports = json.loads(self._process.stdout.readline())
        self.port = ports["port"]
        self._control = f"http://127.0.0.1:{ports['control_port']}"
        self.url = f"http://127.0.0.1:{self.port}"

    def down(self) -> None:
        """Close the port: connections are refused until :meth:`up`."""
        self._post("/down")

    def up(self) -> None:
        self._post("/up")

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` non-ping requests get HTTP ``status`` without running."""
        self._post("/faults", {"fail": n, "fail_status": status})

    def slow_next(self, n: int, seconds: float) -> None:
        """The next ``n`` non-ping requests wait ``seconds`` before running."""
        self._post("/faults", {"slow": n, "slow_seconds": seconds})

    def lose_insert_responses(self, n: int, seconds: float) -> None:
        """The next ``n`` inserts commit, then hang ``seconds`` and close without a response."""
        self._post("/faults", {"lose": n, "lose_seconds": seconds})

    def requests(self) -> list[dict[str, Any]]:
        """Every request the data port received (method, path, params, encodings)."""
        with urllib.request.urlopen(self._control + "/log", timeout=10) as response:
            return json.loads(response.read())

    def reset_log(self) -> None:
        self._post("/reset-log")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _post(self, path: str, payload: dict[str, Any] | None = None) -> None:
        data = json.dumps(payload or {}).encode()
        with urllib.request.urlopen(self._control + path, data=data, timeout=10) as response:
            response.read()


class RealClickHouse:
    """A real server from ``OTEL_MARGIN_TEST_CLICKHOUSE_URL``; fault injection is unavailable."""

    faults_supported = False

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def stop(self) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
