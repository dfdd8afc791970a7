"""The ``otel-margin`` command line.

Each sub-command lives in its own module in this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returns the exit code). Modules are discovered, so adding a command is adding
a module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Any

from otel_margin.display import printable_lines


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``otel-margin`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `otel-margin report | head`: the reader left; say nothing more (and let the
        # interpreter's final flush of stdout fail quietly too).
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except CommandError as error:
        # Messages quote names from outside (a CSV's customers, a policy's model ids).
        print(f"otel-margin {args.command}: {printable_lines(str(error))}", file=sys.stderr)
        return error.exit_code


class CommandError(Exception):
    """An error the user can act on; printed without a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def storage_config(**overrides: Any) -> Any:
    """The storage settings for a command (:class:`~otel_margin.exporters.storage.StorageConfig`).

    An instrumented application logs a bad ``OTEL_EXPORTER_CLICKHOUSE_*`` value and carries on
    with the default; a command the user runs by hand stops instead, so it never reports or
    writes a store the user did not ask for.
    """
    from otel_margin.exporters.storage import StorageConfig

    try:
        return StorageConfig.from_env(strict=True, **overrides)
    except ValueError as error:
        raise CommandError(str(error)) from error


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every sub-command module registered."""
    parser = argparse.ArgumentParser(
        prog="otel-margin",
        description="Gross margin of LLM features: exact cost per call, margin per feature, tier "
        "and customer, from the store the otel-margin exporter writes (embedded chDB by default).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def _version() -> str:
    """The installed distribution's version (the one ``pip show otel-margin`` reports)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("otel-margin")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed; pip install -e .)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
