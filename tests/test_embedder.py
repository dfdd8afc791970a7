"""The built-in embedder's int8 pass gives the vectors, and the similarities, of a plain float64 BERT.

The reference below is all-MiniLM-L6-v2 written the obvious way — float64, one attention head
at a time, exact ``math.erf`` GELU, Q, K and V as three products, the scale applied to the
scores — from the same weights. The embedder's pass (an ONNX graph: fused Q/K/V with the scale
folded in, int8 weights, activations quantized per call) must agree with it to a cosine of 0.95
on fixed sentences and on any text hypothesis finds (0.97 and more measured), and the similarity
of two sentences — what the cache's threshold reads — must move by at most 0.05 (0.044 measured
over the 682 pairs of ``benchmarks/data/cache_pairs.jsonl``, 0.007 median).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_margin.plugins.cache.embedder import MAX_TOKENS, EmbedderUnavailable, MiniLMEmbedder, load_model

SENTENCES = [
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "Refund order 1182 for me",
    "Don't cancel my subscription today",
    "Transfer $400 to savings before March 3, 2027.",
    "Ünïcödé text, 日本語のテキスト and an emoji 🙂",
    "a",
    "",
    " ".join(["invoice"] * 48),
    "word " * 400,  # longer than the model's 256 tokens: cut, [SEP] kept last
]


@pytest.fixture(scope="module")
def model():
    try:
        tokenizer, weights = load_model()
    except EmbedderUnavailable as missing:  # its weights come from a package installed --no-deps (.ci/run does)
        (pytest.fail if os.environ.get("CI") else pytest.skip)(str(missing))
    return tokenizer, weights, MiniLMEmbedder()


def reference(tokenizer, w: dict[str, np.ndarray], text: str) -> np.ndarray:
    ids = tokenizer.encode(text).ids[:MAX_TOKENS]
    if len(ids) == MAX_TOKENS:
        ids[-1] = tokenizer.token_to_id("[SEP]")
    w = {name: value.astype(np.float64) for name, value in w.items()}
    erf = np.vectorize(math.erf)

    def norm(x, prefix):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * w[prefix + ".weight"] + w[prefix + ".bias"]

    def dense(x, prefix):  # weights are kept (in, out) by read_safetensors
        return x @ w[prefix + ".weight"] + w[prefix + ".bias"]

    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
    x = norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    for layer in range(6):
        p = f"encoder.layer.{layer}."
        q, k, v = (dense(x, p + f"attention.self.{name}") for name in ("query", "key", "value"))
        heads = []
        for h in range(12):
            cut = slice(32 * h, 32 * (h + 1))
            scores = q[:, cut] @ k[:, cut].T / math.sqrt(32)
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            heads.append(weights / weights.sum(-1, keepdims=True) @ v[:, cut])
        x = norm(x + dense(np.concatenate(heads, axis=1), p + "attention.output.dense"), p + "attention.output.LayerNorm")
        hidden = dense(x, p + "intermediate.dense")
        hidden = 0.5 * hidden * (1 + erf(hidden / math.sqrt(2)))
        x = norm(x + dense(hidden, p + "output.dense"), p + "output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def cosine(embedder: MiniLMEmbedder, tokenizer, weights, text: str) -> float:
    vector = embedder.embed(text).vector
    assert vector.dtype == np.float32 and vector.shape == (384,)
    return float(vector.astype(np.float64) @ reference(tokenizer, weights, text))


@pytest.mark.parametrize("text", SENTENCES)
def test_the_fast_pass_matches_a_plain_float64_bert(model, text):
    tokenizer, weights, embedder = model
    assert cosine(embedder, tokenizer, weights, text) >= 0.95


@pytest.mark.parametrize("first, second", [(a, b) for i, a in enumerate(SENTENCES[:6]) for b in SENTENCES[i + 1 : 6]])
def test_similarities_are_the_plain_berts(model, first, second):
    tokenizer, weights, embedder = model
    fast = float(embedder.embed(first).vector @ embedder.embed(second).vector)
    exact = float(reference(tokenizer, weights, first) @ reference(tokenizer, weights, second))
    assert abs(fast - exact) <= 0.05


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=120))
def test_any_text_embeds_as_the_plain_bert_does(model, text):
    tokenizer, weights, embedder = model
    assert cosine(embedder, tokenizer, weights, text) >= 0.95
