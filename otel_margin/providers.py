"""Which provider an ``openai`` SDK client talks to: from the client's class and its base URL.

The ``openai`` SDK speaks to many providers: Azure OpenAI (``AzureOpenAI``), DeepSeek, Groq,
xAI, Mistral, Together, Fireworks, OpenRouter, Perplexity, and self-hosted servers (vLLM,
Ollama, LM Studio). A call's ``gen_ai.provider.name`` decides which catalog prices it, so it
is worked out per client, in this order:

1. the policy file's ``[hosts."HOST:PORT"]`` / ``[hosts."HOST"]`` table (docs/policy.md);
2. a host registered in-process with :func:`register_host` (the stand-in impersonating OpenAI);
3. the client class: ``AzureOpenAI`` / ``AsyncAzureOpenAI`` are ``azure.ai.openai``;
4. the base URL's host, by :data:`HOSTS` (a host matches a listed domain or any subdomain);
5. the port of a local server's default: :data:`PORTS` (Ollama's 11434, LM Studio's 1234);
6. anything else is :data:`OPENAI_COMPATIBLE`: a server that speaks OpenAI's API, run by
   someone we cannot name. It is not ``openai`` (OpenAI's prices would be a guess), so its
   calls stay unpriced until the policy maps the host.

Semantic-convention names are used where the conventions have one (``azure.ai.openai``,
``deepseek``, ``groq``, ``x_ai``, ``mistral_ai``, ``perplexity``, ``gcp.gemini``, ...), the
price catalog's provider ids otherwise (``together``, ``fireworks``, ``openrouter``).

A client is looked at once per base URL: :class:`ServerTable` caches the answer by the URL
object's identity, so a call pays two attribute reads and a dictionary lookup.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

OPENAI = "openai"
AZURE_OPENAI = "azure.ai.openai"
OPENAI_COMPATIBLE = "openai_compatible"
"""The provider of a host nobody named: it speaks OpenAI's API; who runs it is unknown."""

HOSTS: dict[str, str] = {
    "api.openai.com": OPENAI,
    "openai.azure.com": AZURE_OPENAI,
    "cognitiveservices.azure.com": AZURE_OPENAI,
    "services.ai.azure.com": "azure.ai.inference",
    "models.ai.azure.com": "azure.ai.inference",
    "inference.ai.azure.com": "azure.ai.inference",
    "api.deepseek.com": "deepseek",
    "api.groq.com": "groq",
    "api.x.ai": "x_ai",
    "api.mistral.ai": "mistral_ai",
    "api.perplexity.ai": "perplexity",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "api.anthropic.com": "anthropic",
    "api.cohere.ai": "cohere",
    "api.cohere.com": "cohere",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.fireworks.ai": "fireworks",
    "openrouter.ai": "openrouter",
    "api.cerebras.ai": "cerebras",
}
"""Domain → ``gen_ai.provider.name``. A host matches a domain exactly or as a subdomain
(``acme.openai.azure.com`` is ``openai.azure.com``)."""

PORTS: dict[int, str] = {
    11434: "ollama",
    1234: "lm_studio",
}
"""Default ports of local model servers, for hosts :data:`HOSTS` does not name."""

_AZURE_CLIENTS = ("AzureOpenAI", "AsyncAzureOpenAI")
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True, slots=True)
class Server:
    """Where a client's calls go: ``gen_ai.provider.name``, ``server.address``, ``server.port``."""

    provider: str
    address: str | None = None
    port: int | None = None
    matched_by: str = "default"
    """``policy`` | ``registered`` | ``client`` | ``host`` | ``port`` | ``unknown`` | ``default``."""


_registered: dict[str, str] = {}
_registered_lock = threading.Lock()


def register_host(host: str, provider: str) -> None:
    """Say that calls to ``host`` (``"HOST"`` or ``"HOST:PORT"``) go to ``provider``, in this process.

    For servers that impersonate a provider in-process (the stand-in, test doubles); a user
    maps hosts in the policy file instead (``[hosts."HOST:PORT"]``), which wins over this.
    """
    with _registered_lock:
        _registered[_host_key(host)] = provider


def unregister_host(host: str) -> None:
    """Forget a :func:`register_host` entry (nothing happens when there is none)."""
    with _registered_lock:
        _registered.pop(_host_key(host), None)


def _host_key(host: str) -> str:
    # As detect() looks it up: "[::1]:8000" is "::1:8000", "Gpu-1" is "gpu-1".
    parts = urlsplit(f"//{host.strip()}")
    address = (parts.hostname or host.strip().lower()).rstrip(".")
    return f"{address}:{parts.port}" if parts.port is not None else address


def detect(base_url: str, client_class: str = "", policy_host: Callable[[str, int], Any] | None = None) -> Server:
    """The :class:`Server` of a client of class ``client_class`` with ``base_url``; never raises.

    ``policy_host(address, port)`` returns the policy's host entry (anything with a
    ``provider``) or ``None``.
    """
    address, port = _address(base_url)
    if address is None:
        return Server(AZURE_OPENAI if client_class in _AZURE_CLIENTS else OPENAI)
    if policy_host is not None:
        entry = policy_host(address, port)
        if entry is not None:
            return Server(entry.provider, address, port, "policy")
    registered = _registered.get(f"{address}:{port}") or _registered.get(address)
    if registered is not None:
        return Server(registered, address, port, "registered")
    if client_class in _AZURE_CLIENTS:
        return Server(AZURE_OPENAI, address, port, "client")
    provider = _by_domain(address)
    if provider is not None:
        return Server(provider, address, port, "host")
    if port in PORTS:
        return Server(PORTS[port], address, port, "port")
    return Server(OPENAI_COMPATIBLE, address, port, "unknown")


class ServerTable:
    """:func:`detect` for SDK clients, cached per base URL object; thread-safe, never raises."""

    _MAX = 1024
    """Base URLs remembered at most (clients built per request would otherwise grow the cache)."""

    def __init__(self, policy_host: Callable[[str, int], Any] | None = None, fallback: str = OPENAI) -> None:
        self._policy_host = policy_host
        self._fallback = Server(fallback)
        self._cache: dict[int, tuple[Any, type, Server]] = {}

    def of(self, client: Any) -> Server:
        """The :class:`Server` of ``client`` (an ``openai`` SDK client), or the fallback."""
        url = _stored_base_url(client)
        if url is None:
            return self._fallback
        kind = type(client)
        hit = self._cache.get(id(url))
        # The cache holds the URL object, so its id cannot be reused while the entry lives.
        if hit is not None and hit[0] is url and hit[1] is kind:
            return hit[2]
        try:
            # A subclass of AzureOpenAI (a company's wrapper) is still an Azure client.
            azure = next((c.__name__ for c in kind.__mro__ if c.__name__ in _AZURE_CLIENTS), None)
            server = detect(str(url), azure or kind.__name__, self._policy_host)
        except Exception:  # noqa: BLE001 - a provider name must never cost the caller its call
            logger.debug("otel-margin: cannot tell the provider of %r", url, exc_info=True)
            return self._fallback
        if len(self._cache) >= self._MAX:
            self._cache.clear()
        self._cache[id(url)] = (url, kind, server)
        return server


def _stored_base_url(client: Any) -> Any:
    """What ``client.base_url`` returns, read where the client keeps it.

    On openai 3.x the ``base_url`` property imports a module on every read (microseconds per
    call); the value is the instance's ``_configured_base_url`` (``_base_url`` on 2.x).
    """
    stored = getattr(client, "__dict__", None)
    if stored:
        url = stored.get("_configured_base_url") or stored.get("_base_url")
        if url is not None:
            return url
    try:
        return client.base_url
    except Exception:  # noqa: BLE001 - not an SDK client we know
        return None


def _address(base_url: str) -> tuple[str | None, int]:
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None, 0
    if not host:
        return None, 0
    return host.lower().rstrip("."), port if port is not None else _DEFAULT_PORTS.get(parts.scheme.lower(), 443)


def _by_domain(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
        return None  # an IP address is nobody's domain
    except ValueError:
        pass
    labels = host.split(".")
    for start in range(len(labels) - 1):
        provider = HOSTS.get(".".join(labels[start:]))
        if provider is not None:
            return provider
    return None
