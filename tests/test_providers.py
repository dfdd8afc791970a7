"""OpenAI-compatible providers: which provider a call went to, its server, and its catalog price.

Real ``openai`` SDK clients (``AzureOpenAI``, ``OpenAI(base_url=...)`` for DeepSeek, Groq, xAI,
Mistral, Together, OpenRouter, unknown and self-hosted servers) whose requests an httpx
transport hands to the local stand-in. Tokens are compared with what the SDK parsed, cost with
genai-prices' own ``calc_price`` for the provider's catalog id, or with the policy's prices
multiplied out here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterator

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_margin.environment_variables import OTEL_MARGIN_POLICY
from otel_margin.policy import parse_policy
from otel_margin.prices import set_catalog
from otel_margin.providers import HOSTS, OPENAI_COMPATIBLE, PORTS, detect
from otel_margin.standin import in_process_transport, sdk_http_module

from conftest import instrumentation

MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in two lines."}]

POLICY = """
[hosts."gpu-1:8000"]               # a vLLM box, priced per token whatever model it serves
provider = "vllm"
input_per_mtok = "0.05"
output_per_mtok = "0.10"

[hosts."llm-gateway.internal"]     # a company gateway in front of OpenAI
provider = "openai"

[prices.self_hosted."special-model"]
provider = "vllm"
input_per_mtok = "1.50"
output_per_mtok = "2.50"
"""


@pytest.fixture(scope="module")
def instrumented_with_policy(otel: Any, tmp_path_factory: Any) -> Iterator[None]:
    """otel-margin on for this module, with :data:`POLICY` as the policy file."""
    path = tmp_path_factory.mktemp("policy") / "otel-margin.toml"
    path.write_text(POLICY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(OTEL_MARGIN_POLICY, str(path))
        set_catalog(None)
        try:
            with instrumentation(otel):
                yield
        finally:
            set_catalog(None)


@pytest.fixture(autouse=True)
def _instrumented(instrumented_with_policy: None, sink: Any) -> None:
    """Spans and metrics cleared before each test."""


@pytest.fixture
def transport() -> Any:
    return in_process_transport()


def client_at(transport: Any, base_url: str, *, async_: bool = False) -> Any:
    """An ``openai`` client for ``base_url`` whose requests the stand-in answers."""
    module = sdk_http_module()
    cls = openai.AsyncOpenAI if async_ else openai.OpenAI
    http = (module.AsyncClient if async_ else module.Client)(transport=transport)
    return cls(api_key="test-key", base_url=base_url, http_client=http, max_retries=0)


def azure_client(transport: Any, *, async_: bool = False) -> Any:
    module = sdk_http_module()
    cls = openai.AsyncAzureOpenAI if async_ else openai.AzureOpenAI
    http = (module.AsyncClient if async_ else module.Client)(transport=transport)
    return cls(api_key="test-key", azure_endpoint="https://acme.openai.azure.com", api_version="2024-10-21",
               http_client=http, max_retries=0)


def price_per_mtok(tokens: int, per_mtok: str) -> Decimal:
    return Decimal(tokens) * Decimal(per_mtok) / Decimal(1_000_000)


def check_server(span: Any, provider: str, address: str, port: int) -> None:
    a = span.attributes
    assert (a["gen_ai.provider.name"], a["server.address"], a["server.port"]) == (provider, address, port)


# --- hosted providers, priced from their own catalog entries -------------------------------------------

HOSTED = [
    # base URL, model, gen_ai.provider.name, server.address, the request path, genai-prices provider id
    ("https://api.deepseek.com", "deepseek-chat", "deepseek", "api.deepseek.com", "/chat/completions", "deepseek"),
    ("https://api.groq.com/openai/v1", "llama-3.3-70b-versatile", "groq", "api.groq.com",
     "/openai/v1/chat/completions", "groq"),
    ("https://api.x.ai/v1", "grok-3-mini", "x_ai", "api.x.ai", "/v1/chat/completions", "x-ai"),
    ("https://api.mistral.ai/v1", "mistral-large-latest", "mistral_ai", "api.mistral.ai", "/v1/chat/completions",
     "mistral"),
    ("https://api.together.xyz/v1", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "together", "api.together.xyz",
     "/v1/chat/completions", "together"),
    ("https://openrouter.ai/api/v1", "openai/gpt-4o-mini", "openrouter", "openrouter.ai", "/api/v1/chat/completions",
     "openrouter"),
]


@pytest.mark.parametrize("base_url, model, provider, address, path, catalog", HOSTED,
                         ids=[row[2] for row in HOSTED])
def test_a_compatible_provider_is_named_located_and_priced_from_its_catalog(
        transport, sink, oracle, base_url, model, provider, address, path, catalog) -> None:
    response = client_at(transport, base_url).chat.completions.create(model=model, messages=MESSAGES)

    assert transport.requests[-1].path == path  # the SDK really sent it to that provider's URL
    span = sink.one_llm_span()
    check_server(span, provider, address, 443)
    assert response.model == model
    oracle.check_span(span, oracle.openai_chat(response.usage), model=model, provider=catalog)


def test_the_metrics_say_which_provider_and_server(transport, sink) -> None:
    client_at(transport, "https://api.groq.com/openai/v1").chat.completions.create(
        model="llama-3.3-70b-versatile", messages=MESSAGES
    )

    metrics = sink.metrics()  # one read: each read takes what was recorded since the last
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.token.usage"):
        points = [point for metric in metrics[name] for point in metric.data.data_points]
        assert points, name
        for point in points:
            a = point.attributes
            assert (a["gen_ai.provider.name"], a["server.address"], a["server.port"]) == ("groq", "api.groq.com", 443)


def test_a_deepseek_stream_is_priced_at_deepseek(transport, sink, oracle) -> None:
    client = client_at(transport, "https://api.deepseek.com")
    chunks = list(client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True))

    assert all(chunk.choices for chunk in chunks)  # the usage chunk we asked for stays hidden
    usage_chunk = client.chat.completions.create(
        model="deepseek-chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    usage = [chunk.usage for chunk in usage_chunk if chunk.usage is not None][0]
    spans = sink.llm_spans()
    assert len(spans) == 2
    for span in spans:
        check_server(span, "deepseek", "api.deepseek.com", 443)
        oracle.check_span(span, oracle.openai_chat(usage), model="deepseek-chat", provider="deepseek")


# --- Azure OpenAI: the client class, the deployments URL, Azure's catalog entry ---------------------


def test_azure_openai_chat_is_azure_priced_from_azures_entry(transport, sink, oracle) -> None:
    response = azure_client(transport).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    request = transport.requests[-1]
    assert request.path == "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    span = sink.one_llm_span()
    check_server(span, "azure.ai.openai", "acme.openai.azure.com", 443)
    assert response.model == "gpt-4o-mini-2024-07-18"
    oracle.check_span(span, oracle.openai_chat(response.usage), model=response.model, provider="azure")


def test_an_azure_only_model_is_priced_from_azures_entry(transport, sink, oracle) -> None:
    # Phi-4 is in the catalog for Azure only: priced at all only when Azure's entry is the one used.
    response = azure_client(transport).chat.completions.create(model="phi-4", messages=MESSAGES)

    span = sink.one_llm_span()
    assert span.attributes["gen_ai.provider.name"] == "azure.ai.openai"
    oracle.check_span(span, oracle.openai_chat(response.usage), model="phi-4", provider="azure")


def test_a_subclass_of_azure_openai_is_azure_whatever_its_host(transport, sink) -> None:
    class CompanyAzure(openai.AzureOpenAI):
        pass

    module = sdk_http_module()
    client = CompanyAzure(api_key="test-key", base_url="https://llm-proxy.example/openai", api_version="2024-10-21",
                          http_client=module.Client(transport=transport), max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    check_server(sink.one_llm_span(), "azure.ai.openai", "llm-proxy.example", 443)


async def test_azure_openai_async_stream_and_embeddings(transport, sink, oracle) -> None:
    client = azure_client(transport, async_=True)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    usage = [chunk.usage async for chunk in stream if chunk.usage is not None][0]
    embedded = await client.embeddings.create(model="text-embedding-3-small", input="quarterly report")

    chat, embeddings = sorted(sink.llm_spans(), key=lambda s: s.attributes["gen_ai.operation.name"])
    for span in (chat, embeddings):
        check_server(span, "azure.ai.openai", "acme.openai.azure.com", 443)
    oracle.check_span(chat, oracle.openai_chat(usage), model="gpt-4o-mini-2024-07-18", provider="azure")
    oracle.check_span(embeddings, oracle.openai_embeddings(embedded.usage), model="text-embedding-3-small",
                      provider="azure")


# --- servers nobody named, and the policy's [hosts] -------------------------------------------------


@pytest.mark.parametrize(
    "base_url, provider, address, port",
    [
        ("https://llm.example.net/v1", OPENAI_COMPATIBLE, "llm.example.net", 443),
        ("http://localhost:11434/v1", "ollama", "localhost", 11434),
        ("http://10.0.0.7:1234/v1", "lm_studio", "10.0.0.7", 1234),
    ],
    ids=["unknown-host", "ollama", "lm-studio"],
)
def test_a_server_nobody_named_is_not_openai_and_stays_unpriced(
        transport, sink, base_url, provider, address, port) -> None:
    response = client_at(transport, base_url).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    span = sink.one_llm_span()
    check_server(span, provider, address, port)
    a = span.attributes
    assert a["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens
    assert a["margin.cost.status"] == "unpriced"  # OpenAI's price would be a guess: never $0, never a guess
    assert "margin.cost.usd" not in a


def test_a_policy_host_prices_every_model_it_serves(transport, sink) -> None:
    client = client_at(transport, "http://gpu-1:8000/v1")
    response = client.chat.completions.create(model="meta-llama/Llama-3.1-8B-Instruct", messages=MESSAGES)

    span = sink.one_llm_span()
    check_server(span, "vllm", "gpu-1", 8000)
    a = span.attributes
    usage = response.usage
    want = price_per_mtok(usage.prompt_tokens, "0.05") + price_per_mtok(usage.completion_tokens, "0.10")
    assert (a["margin.cost.status"], a["margin.price.source"]) == ("priced", "self_hosted")
    assert a["margin.price.model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert Decimal(a["margin.cost.usd"]) == want


def test_a_model_priced_by_name_wins_over_its_hosts_prices(transport, sink) -> None:
    response = client_at(transport, "http://gpu-1:8000/v1").chat.completions.create(
        model="special-model", messages=MESSAGES
    )

    a = sink.one_llm_span().attributes
    usage = response.usage
    assert a["gen_ai.provider.name"] == "vllm"
    assert Decimal(a["margin.cost.usd"]) == (
        price_per_mtok(usage.prompt_tokens, "1.50") + price_per_mtok(usage.completion_tokens, "2.50")
    )


def test_a_policy_host_mapped_to_a_provider_is_priced_from_that_providers_catalog(transport, sink, oracle) -> None:
    response = client_at(transport, "https://llm-gateway.internal/v1").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )

    span = sink.one_llm_span()
    check_server(span, "openai", "llm-gateway.internal", 443)
    oracle.check_span(span, oracle.openai_chat(response.usage), model=response.model, provider="openai")


def test_a_client_whose_base_url_changes_is_looked_at_again(transport, sink) -> None:
    client = client_at(transport, "https://api.deepseek.com")
    client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    client.base_url = "https://api.groq.com/openai/v1"
    client.chat.completions.create(model="llama-3.3-70b-versatile", messages=MESSAGES)

    providers = [s.attributes["gen_ai.provider.name"] for s in sorted(sink.llm_spans(), key=lambda s: s.start_time)]
    assert providers == ["deepseek", "groq"]


# --- detection as a function of any base URL (outside input) ---------------------------------------

_LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,14}[a-z0-9]", fullmatch=True)


@given(subdomain=_LABEL, domain=st.sampled_from(sorted(HOSTS)), port=st.integers(1, 65535))
@settings(max_examples=60, deadline=None)
def test_a_listed_domain_and_its_subdomains_are_its_provider(subdomain, domain, port) -> None:
    for host in (domain, f"{subdomain}.{domain}"):
        server = detect(f"https://{host}:{port}/v1")
        assert (server.provider, server.address, server.port) == (HOSTS[domain], host, port)


@given(labels=st.lists(_LABEL, min_size=1, max_size=3), port=st.integers(1, 65535))
@settings(max_examples=60, deadline=None)
def test_an_unlisted_host_is_openai_compatible_or_its_ports_server(labels, port) -> None:
    host = ".".join([*labels, "example"])  # .example is reserved: never a provider's domain
    server = detect(f"http://{host}:{port}")
    assert server.provider == PORTS.get(port, OPENAI_COMPATIBLE)
    assert (server.address, server.port) == (host, port)


@given(st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_detection_never_raises_and_never_calls_an_unknown_url_openai(text) -> None:
    server = detect(text, "OpenAI")
    # "openai" only for OpenAI's own host, for no host at all (the SDK's default base URL), or for a
    # host registered as OpenAI's (the stand-in's, by earlier tests in the same run).
    assert server.provider != "openai" or server.address in (None, "api.openai.com") or server.matched_by == "registered"


@given(host=_LABEL, port=st.one_of(st.none(), st.integers(1, 65535)), provider=_LABEL)
@settings(max_examples=60, deadline=None)
def test_a_policy_host_is_found_by_the_address_and_port_a_client_uses(host, port, provider) -> None:
    key = host if port is None else f"{host}:{port}"
    policy = parse_policy(f'[hosts."{key.upper()}"]\nprovider = "{provider}"\n')
    for used_port in (443, 8080) if port is None else (port,):
        server = detect(f"http://{host}:{used_port}/v1", "OpenAI", policy.host)
        assert (server.provider, server.matched_by) == (provider, "policy")
    if port is not None:  # host:port names that port only
        other = detect(f"http://{host}:{port % 65535 + 1}/v1", "OpenAI", policy.host)
        assert other.matched_by != "policy"


# --- the policy's [hosts] tables: line-numbered errors that say what to write ------------------------


@pytest.mark.parametrize(
    "table, message",
    [
        ('[hosts."http://gpu-1:8000/v1"]\nprovider = "vllm"\n',
         'line 2: [hosts."http://gpu-1:8000/v1"] is a URL, not a host; write [hosts."gpu-1:8000"]'),
        ('[hosts."gpu-1:99999"]\nprovider = "vllm"\n',
         'line 2: [hosts."gpu-1:99999"] has a port that is not a number from 1 to 65535'),
        ('[hosts."gpu-1"]\ngpus = 2\n', "line 2: [hosts.\"gpu-1\"] missing required key 'provider'"),
        ('[hosts."gpu-1"]\nprovider = "vllm"\ninput_per_mtok = "0.05"\n',
         "line 2: [hosts.\"gpu-1\"] missing required key 'output_per_mtok'"),
        ('[hosts."gpu-1"]\nprovider = "vllm"\ngpus = 2\n', 'line 2: [hosts."gpu-1"] has no price; add gpu_second_usd'),
        ('[hosts."gpu-1:8000"]\nprovider = "vllm"\n\n[hosts."GPU-1:8000"]\nprovider = "x"\n',
         'line 5: [hosts."GPU-1:8000"] names the same server as [hosts."gpu-1:8000"]; keep one'),
    ],
    ids=["url", "port", "no-provider", "half-priced", "gpus-alone", "twice"],
)
def test_a_bad_hosts_table_is_an_error_naming_the_line_and_the_fix(table, message) -> None:
    from otel_margin.policy import PolicyError

    with pytest.raises(PolicyError) as raised:
        parse_policy("# hosts\n" + table, source="otel-margin.toml")
    assert f"otel-margin.toml {message}" in str(raised.value)


def test_the_stand_ins_own_policy_lines_price_it_as_openai() -> None:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "otel_margin.standin", "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline() for _ in range(5)]
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()
    url = lines[0].split()[-1]
    policy = parse_policy("".join(line for line in lines[3:5]))
    server = detect(url, "OpenAI", policy.host)
    assert (server.provider, server.matched_by) == ("openai", "policy")


@pytest.mark.parametrize(
    "written, url", [("[::1]:8123", "http://[::1]:8123/v1"), ("Standin.Example", "http://standin.example/v1")]
)
def test_a_registered_host_is_found_as_a_client_writes_it(written, url) -> None:
    from otel_margin.providers import register_host, unregister_host

    register_host(written, "openai")
    try:
        assert (detect(url).provider, detect(url).matched_by) == ("openai", "registered")
    finally:
        unregister_host(written)
    assert detect(url).provider == OPENAI_COMPATIBLE
