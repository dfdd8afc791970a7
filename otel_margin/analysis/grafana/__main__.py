"""``python -m otel_margin.analysis.grafana DIR [--policy FILE]``: write the Grafana files."""

from __future__ import annotations

import argparse
from pathlib import Path

from otel_margin.analysis.grafana import generate
from otel_margin.policy import load_policy


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m otel_margin.analysis.grafana", description=__doc__)
    parser.add_argument("directory", type=Path, help="where Grafana's files go (the repository's deploy/grafana)")
    parser.add_argument("--policy", help="a policy file whose floors and thresholds the files carry (default: none)")
    args = parser.parse_args()
    policy = load_policy(args.policy) if args.policy else None
    for path, text in generate(policy).items():
        target = args.directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
