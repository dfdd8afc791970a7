"""CPU per call of the request fingerprint (``margin.request.hash``), by prompt size.

The fingerprint is computed on the finisher thread for every call (not on the caller's thread);
this measures what it costs there: encoding the request in the cache's canonical form and hashing
it (SHA-256, 16 hex digits kept), and the path where the cache already keyed the call (its digest
is reused). CPU time (``time.process_time``) per call, the median of ``--repeat`` runs.

    python benchmarks/request_hash.py [--calls 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from otel_margin.call import Attribution, LLMCall
from otel_margin.plugins.cache.key import Scope, cache_key
from otel_margin.request_hash import request_hash

SIZES = (200, 2_000, 20_000, 200_000)
"""Characters of prompt text in the request (a short question .. a long document)."""


def request(size: int) -> dict:
    """A typical chat request: system prompt, one user message of ``size`` characters, options."""
    text = ("The quarterly report shows revenue of 1,204 units across 3 regions. " * (size // 70 + 1))[:size]
    return {"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 512,
            "messages": [{"role": "system", "content": "You are a concise assistant."},
                         {"role": "user", "content": text}]}


def per_call_us(calls: list[LLMCall], repeat: int) -> float:
    """Median CPU microseconds per :func:`request_hash` over ``repeat`` passes."""
    runs = []
    for _ in range(repeat):
        started = time.process_time()
        for call in calls:
            request_hash(call)
        runs.append((time.process_time() - started) / len(calls) * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'prompt chars':>12}  {'hashed (us/call)':>16}  {'cache key reused (us/call)':>26}")
    for size in SIZES:
        params = request(size)
        calls = [LLMCall(provider="openai", operation="chat", request_model="gpt-4o-mini", params=params,
                         attribution=Attribution(), api="chat.completions") for _ in range(args.calls)]
        hashed = per_call_us(calls, args.repeat)
        key = cache_key(scope=Scope.GLOBAL, customer=None, feature=None, provider="openai", api="chat.completions",
                        params=params)
        for call in calls:
            call.notes["cache.key"] = key
        reused = per_call_us(calls, args.repeat)
        print(f"{size:>12,}  {hashed:>16.2f}  {reused:>26.2f}")


if __name__ == "__main__":
    main()
