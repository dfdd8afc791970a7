"""How often the semantic cache serves true paraphrases, and how often it serves near-duplicate traps.

On the labelled set ``benchmarks/data/cache_pairs.jsonl`` (made by ``data/make_cache_pairs.py``):
for each pair, the answer stored for ``stored`` is served to ``asked`` when the cache's rule says
so. Every text is embedded once with the built-in model (all-MiniLM-L6-v2); the rules compared:

- **GPTCache default**: its default similarity evaluation (``SearchDistanceEvaluation``,
  ``max_distance = 4.0``) over its default vector store's squared L2 distance, at its default
  ``similarity_threshold = 0.8``: served when ``4 - d >= 0.8 * 4``, i.e. ``d <= 0.8``; on unit
  vectors ``d = 2 - 2 cos``, so **cosine >= 0.6**. (GPTCache's default embedder is another small
  ONNX model; the embedder is held the same here so only the rule differs.)
- **cosine >= t**: a plain threshold cache at stricter thresholds;
- **otel-margin**: cosine >= t **and** the guard (:mod:`otel_margin.plugins.cache.guard`).

Target (issue 19): at most 1 % of traps served while serving at least half of the paraphrases.

    python benchmarks/cache_quality.py [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

from otel_margin.plugins.cache import guard
from otel_margin.plugins.cache.embedder import MiniLMEmbedder

DATA = Path(__file__).parent / "data" / "cache_pairs.jsonl"
GPTCACHE_COSINE = 0.6
THRESHOLDS = (0.7, 0.8, 0.85, 0.9)
TRAP_KINDS = ("number", "amount", "date", "entity", "negation", "scope")


def load(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(rows: list[dict]) -> dict:
    embedder = MiniLMEmbedder()
    embedder.warm()
    vectors, times = {}, []
    for text in sorted({r["stored"] for r in rows} | {r["asked"] for r in rows}):
        started = time.perf_counter()
        vectors[text] = embedder.embed(text).vector
        times.append(time.perf_counter() - started)
    scored = [(r, float(vectors[r["stored"]] @ vectors[r["asked"]]), guard.allows(r["asked"], r["stored"])) for r in rows]
    rules = [("GPTCache default (cosine >= 0.6)", GPTCACHE_COSINE, False)]
    rules += [(f"cosine >= {t}", t, False) for t in THRESHOLDS]
    rules += [(f"otel-margin: cosine >= {t} + guard", t, True) for t in (GPTCACHE_COSINE, *THRESHOLDS)]
    results = []
    for name, threshold, guarded in rules:
        served = [r for r, cosine, allowed in scored if cosine >= threshold and (allowed or not guarded)]
        hits = sum(r["hit"] for r in served)
        traps = Counter(r["kind"] for r in served if not r["hit"])
        results.append({"rule": name, "paraphrases_served": hits, "traps_served": sum(traps.values()),
                        "traps_by_kind": {k: traps.get(k, 0) for k in TRAP_KINDS}})
    return {
        "pairs": len(rows), "paraphrases": sum(r["hit"] for r in rows), "traps": sum(not r["hit"] for r in rows),
        "trap_kinds": dict(Counter(r["kind"] for r in rows if not r["hit"])),
        "domains": sorted({r["domain"] for r in rows}),
        "embed_ms_median": statistics.median(times) * 1000, "texts": len(vectors), "results": results,
        "guard_refuses_paraphrases": sum(1 for r, _, allowed in scored if r["hit"] and not allowed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    report = measure(load())
    if parser.parse_args().json:
        print(json.dumps(report, indent=2))
        return
    p, t = report["paraphrases"], report["traps"]
    print(f"{report['pairs']} pairs ({p} paraphrases, {t} traps: {report['trap_kinds']}) in {len(report['domains'])} domains; "
          f"{report['texts']} texts embedded, median {report['embed_ms_median']:.1f} ms each")
    print(f"{'rule':<38} {'paraphrases served':>19} {'traps served':>13}  " + " ".join(f"{k:>8}" for k in TRAP_KINDS))
    for row in report["results"]:
        print(f"{row['rule']:<38} {row['paraphrases_served']:>5} ({100 * row['paraphrases_served'] / p:5.1f} %) "
              f"{row['traps_served']:>4} ({100 * row['traps_served'] / t:4.1f} %)  "
              + " ".join(f"{row['traps_by_kind'][k]:>8}" for k in TRAP_KINDS))
    print(f"the guard alone refuses {report['guard_refuses_paraphrases']} of {p} paraphrases")


if __name__ == "__main__":
    main()
