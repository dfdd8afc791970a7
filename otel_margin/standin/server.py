"""The stand-in on a real socket: a threading HTTP/1.1 server on 127.0.0.1.

Replies with a body carry ``Content-Length``; streams use chunked transfer encoding and are
flushed event by event, so clients see them arrive incrementally. A truncated reply
(``cut-stream``) ends by closing the connection without the final chunk / the rest of the body,
which is what a client sees when a provider's connection drops.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from otel_margin.standin.core import RecordedRequest, StandIn
from otel_margin.standin.wire import StandInResponse


class StandInServer:
    """A running stand-in; ``with StandInServer() as server:`` starts it and closes it after."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, standin: StandIn | None = None) -> None:
        """Bind ``host:port`` (port 0: an ephemeral one) and start serving on a daemon thread."""
        self.standin = standin if standin is not None else StandIn()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.standin = self.standin
        # A short poll interval keeps close() quick; shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="standin-server", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` for ``openai.OpenAI`` (ends in ``/v1``)."""
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The ``base_url`` for ``anthropic.Anthropic`` (the SDK adds ``/v1``)."""
        return self.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far: ``(method, path, headers, parsed JSON body)``."""
        return self.standin.requests

    def close(self) -> None:
        """Stop serving, drop open keep-alive connections and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.drop_connections()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StandInServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once; the default backlog is 5
    standin: StandIn

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its keep-alive connection (an abandoned stream, a closed pool) is
        # how HTTP ends, not a server error: only anything else gets the default traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def drop_connections(self) -> None:
        # Keep-alive handler threads wait on their sockets; shutting them down frees the threads.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without NODELAY, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every reply, which would swamp latency benchmarks.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # tests and the demo run many requests; access logs would drown their output

    def do_POST(self) -> None:
        self._serve()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def _serve(self) -> None:
        body = self._read_body()
        reply = self.server.standin.handle(self.command, self.path, dict(self.headers.items()), body)
        try:
            self._write(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-reply; nothing left to do

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _write(self, reply: StandInResponse) -> None:
        if reply.first_byte_delay:
            time.sleep(reply.first_byte_delay)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.events is None:
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body[: len(reply.body) // 2] if reply.truncated else reply.body)
        else:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for index, event in enumerate(reply.events):
                if index and reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            if not reply.truncated:
                self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        if reply.truncated:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
