"""The ``otel-margin`` command line as a shell user meets it."""

from __future__ import annotations

import subprocess
import sys

# A command that prints far more than a pipe holds, so it is still writing when the reader leaves.
_LONG_OUTPUT = """
import sys
import otel_margin.cli.prices as prices

def run(args):
    for number in range(200_000):
        print(f"line {number}: " + "x" * 60)
    return 0

prices.run = run
from otel_margin.cli import main
sys.exit(main(["prices", "gpt-4o"]))
"""


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """``otel-margin … | head -1``: the command stops quietly, as shell tools do (status 141)."""
    process = subprocess.Popen([sys.executable, "-c", _LONG_OUTPUT], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"line 0: ")
    process.stdout.close()  # what head does after its first line
    errors = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert errors == ""
