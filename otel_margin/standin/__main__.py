"""``python -m otel_margin.standin``: run the stand-in on a local port until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

from otel_margin.standin.server import StandInServer


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, serve until interrupted, return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m otel_margin.standin",
        description="Serve a local stand-in for the OpenAI and Anthropic HTTP APIs "
        "(scenario header: x-standin-scenario; output length: x-standin-output-tokens).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        server = StandInServer(args.host, args.port)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}; choose another --port", file=sys.stderr)
        return 2
    with server:
        print(f"OpenAI base URL:    {server.openai_base_url}", flush=True)
        print(f"Anthropic base URL: {server.anthropic_base_url}", flush=True)
        # Another process cannot know this host is the stand-in: an unknown host is unpriced.
        host = server.base_url.split("://", 1)[1]
        print(f'To price its OpenAI calls as OpenAI\'s, put in otel-margin.toml:\n  [hosts."{host}"]\n'
              '  provider = "openai"', flush=True)
        print("Ctrl-C stops.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
