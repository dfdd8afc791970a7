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
    except CommandError as error:
        print(f"otel-margin {args.command}: {error}", file=sys.stderr)
        return error.exit_code


class CommandError(Exception):
    """An error the user can act on; printed without a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every sub-command module registered."""
    parser = argparse.ArgumentParser(
        prog="otel-margin",
        description="Gross margin of LLM features: exact cost per call, margin per feature, tier "
        "and customer, from the store the otel-margin exporter writes (embedded chDB by default).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
