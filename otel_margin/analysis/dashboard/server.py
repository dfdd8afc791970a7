"""The live dashboard: a small HTTP server on one address that serves the page, its script,
plotly.js (from the installed package) and ``data.json`` — the data document for the filters in
its query string, read from the store at each request (the page asks again every few seconds).

The server only reads. ``fetch(filters)`` is given by the caller (the CLI opens a short storage
session per call, so chDB is held only while the queries run); requests are answered one at a
time for the store. A bad filter is a 400 whose JSON ``error`` names the value and the fix; a
store that cannot be read is a 503 whose ``error`` says why, shown on the page.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from otel_margin.analysis.dashboard import page
from otel_margin.analysis.dashboard.data import Filters, to_json

MAX_NAME = 1000
"""Characters of a feature, tier or customer in a filter, at most."""

LIVE_CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'")


class StoreError(Exception):
    """The data could not be read (the store, or the policy file); the message is for the user
    (shown on the page)."""


def serve(fetch: Callable[[Filters], dict[str, Any]], *, host: str = "127.0.0.1", port: int = 8050,
          refresh_seconds: int = 30, defaults: Filters | None = None) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0: any free one), not yet serving: call
    ``serve_forever()`` (and ``shutdown()``) on it. ``server.server_address`` is where it is."""
    lock = threading.Lock()
    base = defaults or Filters()

    class Handler(BaseHTTPRequestHandler):
        server_version = "otel-margin-dashboard"

        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            url = urlsplit(self.path)
            if url.path in ("/", "/index.html"):
                self._send(page.live_page(refresh_seconds=refresh_seconds), "text/html; charset=utf-8")
            elif url.path == "/dashboard.js":
                self._send(page.asset("dashboard.js"), "text/javascript; charset=utf-8")
            elif url.path == "/plotly.js":
                self._send(page.plotly_js(), "text/javascript; charset=utf-8", cache=True)
            elif url.path == "/data.json":
                self._data(url.query)
            elif url.path == "/favicon.ico":
                self._send("", "image/x-icon", status=HTTPStatus.NO_CONTENT)
            else:
                self._json({"error": f"no page {url.path!r} here; the dashboard is at /"}, HTTPStatus.NOT_FOUND)

        def _data(self, query: str) -> None:
            try:
                filters = filters_from_query(query, base)
            except ValueError as error:
                self._json({"error": str(error)}, HTTPStatus.BAD_REQUEST)
                return
            try:
                with lock:
                    document = fetch(filters)
            except StoreError as error:
                self._json({"error": str(error)}, HTTPStatus.SERVICE_UNAVAILABLE)
                return
            self._send(to_json(document), "application/json; charset=utf-8")

        def _json(self, value: Any, status: HTTPStatus) -> None:
            self._send(json.dumps(value), "application/json; charset=utf-8", status=status)

        def _send(self, text: str, content_type: str, *, status: HTTPStatus = HTTPStatus.OK,
                  cache: bool = False) -> None:
            body = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            self.send_header("Content-Security-Policy", LIVE_CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page went away (closed, or asked again with other filters)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the interface's name
            pass  # one line per poll would drown the terminal

    return ThreadingHTTPServer((host, port), Handler)


def filters_from_query(query: str, defaults: Filters) -> Filters:
    """The filters of a ``data.json`` query string (``days``, ``feature``, ``tier``, ``customer``);
    what it leaves out comes from ``defaults``."""
    values = {name: items[-1] for name, items in parse_qs(query, keep_blank_values=True).items()}
    days = defaults.days
    if "days" in values:
        try:
            days = int(values["days"])
        except ValueError:
            raise ValueError(f"days={values['days']!r} is not a whole number of days; use for example days=30") from None
    names = {}
    for name in ("feature", "tier", "customer"):
        value = values.get(name, getattr(defaults, name))
        if len(value) > MAX_NAME:
            raise ValueError(f"{name} filter of {len(value)} characters is longer than {MAX_NAME}; shorten it")
        names[name] = value
    return Filters(days=days, allocate_by=defaults.allocate_by, **names)
