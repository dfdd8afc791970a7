"""Every attribute and metric name otel-margin writes, defined once.

GenAI names follow the OpenTelemetry semantic conventions (``gen_ai.*``); our own
live under one namespace, ``margin.*``. Nothing else in the package spells these
strings: import them from here.
"""

from __future__ import annotations

# --- OpenTelemetry GenAI semantic conventions -------------------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
"""Includes cached input (cache reads and cache writes), per the semantic conventions."""
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
"""Includes reasoning tokens."""
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

# --- margin.* -----------------------------------------------------------------------------
MARGIN_FEATURE = "margin.feature"
MARGIN_CUSTOMER = "margin.customer"
MARGIN_TIER = "margin.tier"
MARGIN_COHORT = "margin.cohort"
MARGIN_ATTRIBUTION_SOURCE = "margin.attribution.source"
"""Where the feature came from: ``api`` | ``baggage`` | ``route`` | ``default``."""

MARGIN_COST_USD = "margin.cost.usd"
"""Total cost of goods of the call, exact decimal dollars rendered as a string."""
MARGIN_COST_INPUT_USD = "margin.cost.input.usd"
MARGIN_COST_CACHE_READ_USD = "margin.cost.cache_read.usd"
MARGIN_COST_CACHE_WRITE_USD = "margin.cost.cache_write.usd"
MARGIN_COST_OUTPUT_USD = "margin.cost.output.usd"
MARGIN_COST_OTHER_USD = "margin.cost.other.usd"
"""Costs that are not per token: self-hosted GPU time, per-request fees."""
MARGIN_COST_STATUS = "margin.cost.status"
"""``priced`` | ``estimated`` | ``unpriced`` | ``error`` (the call failed and reported no usage:
no cost, and no usage revenue is booked for it) | ``invalid`` (the reply claimed more tokens than
one call can use, see :mod:`otel_margin.usage_bounds`: no cost, no token counts)."""
MARGIN_PRICE_VERSION = "margin.price.version"
MARGIN_PRICE_SOURCE = "margin.price.source"
"""``catalog`` | ``policy`` | ``self_hosted``: where the unit prices came from."""
MARGIN_PRICE_MODEL = "margin.price.model"
"""The catalog or policy model id the call was priced as (after snapshot → family fallback)."""
MARGIN_USAGE_SOURCE = "margin.usage.source"
"""``provider`` when the provider reported usage, ``estimated`` when we counted it."""
MARGIN_REVENUE_USD = "margin.revenue.usd"
MARGIN_REQUEST_HASH = "margin.request.hash"
"""The request's fingerprint: 16 hex digits (64 bits) of the SHA-256 of its canonical form (the
response cache's, without the tenant: :mod:`otel_margin.request_hash`). Equal on two calls that
asked the identical thing; absent when the request has no canonical form. Stored as
``llm_calls.request_hash`` (``UInt64``, 0 when absent)."""

MARGIN_CACHE_RESULT = "margin.cache.result"
"""``hit`` | ``miss`` | ``off``."""
MARGIN_SAVED_USD = "margin.saved.usd"
MARGIN_CACHE_COST_USD = "margin.cache.cost.usd"
"""What the cache itself spent on the call's lookup (the semantic cache's embedding), exact decimal
string; ``0`` for the built-in CPU embedder. The ``cache_cost_usd`` column: it nets what the cache
saved and is never added to cost (the embedding call is a row of its own)."""
MARGIN_ORCHESTRATION_BY = "margin.orchestration.by"
"""On a guardrail's own LLM call (the semantic cache's provider embedding): the guardrail that made
it (``cache``). Its cost is that guardrail's (:mod:`otel_margin.guardrail_calls`)."""
MARGIN_CACHE_SIMILARITY = "margin.cache.similarity"
"""A semantic hit's cosine similarity to the stored request."""
MARGIN_ROUTE_FROM_MODEL = "margin.route.from_model"
MARGIN_LIMIT_ACTION = "margin.limit.action"
"""``allow`` | ``cap`` | ``block``."""
MARGIN_LIMIT_NAME = "margin.limit.name"
MARGIN_LIMIT_MAX_OUTPUT_TOKENS = "margin.limit.max_output_tokens"
"""The output-token cap a limit applied to the request (only when it lowered it)."""
MARGIN_LIMIT_SPEND_USD = "margin.limit.spend.usd"
"""The current spend the deciding limit reported (exact decimal string)."""
MARGIN_LIMIT_USD = "margin.limit.usd"
"""The deciding limit's amount (exact decimal string)."""
MARGIN_GUARDRAIL_ERRORS = "margin.guardrail.errors"
"""Names of the plugins whose hooks raised during this call (they failed open)."""
MARGIN_UNIT_ID = "margin.unit.id"
"""The unit of work the call (or recorded cost, or outcome) belongs to (:mod:`otel_margin.units`);
absent outside any unit, where a row's unit is its own span id."""
MARGIN_UNIT_KIND = "margin.unit.kind"
"""The unit's kind: ``ticket``, ``document``, ``agent_run``, ... (the application's own words)."""
MARGIN_OUTCOME_STATUS = "margin.outcome.status"
"""On an outcome span (:func:`otel_margin.outcome`): what the unit achieved (``resolved``, ``failed``, ...)."""
MARGIN_OUTCOME_REVENUE_USD = "margin.outcome.revenue.usd"
"""The revenue the outcome earns, exact decimal string (given, or the policy's outcome price)."""
MARGIN_OUTCOME_QUALITY = "margin.outcome.quality"
"""An optional quality score of the outcome, exact decimal string."""
MARGIN_COST_LINE_USD = "margin.cost_line.usd"
"""On a cost-line span (:func:`otel_margin.record_cost`): the amount, exact decimal string."""
MARGIN_COST_LINE_CATEGORY = "margin.cost_line.category"
"""``inference`` | ``orchestration`` | ``infrastructure`` | ``support``."""
MARGIN_COST_LINE_DESCRIPTION = "margin.cost_line.description"
MARGIN_CONTENT_TRUNCATED = "margin.content.truncated"
"""Names of the captured content attributes that were cut to fit
``OTEL_MARGIN_CAPTURE_MESSAGE_MAX_BYTES`` (see :mod:`otel_margin.content`)."""

# --- attribution sources and values ----------------------------------------------------------
UNATTRIBUTED = "unattributed"

# --- W3C baggage keys an upstream service may set ------------------------------------------
BAGGAGE_FEATURE = MARGIN_FEATURE
BAGGAGE_CUSTOMER = MARGIN_CUSTOMER
BAGGAGE_TIER = MARGIN_TIER
BAGGAGE_COHORT = MARGIN_COHORT
BAGGAGE_UNIT = "margin.unit"
"""The unit of work's id (:func:`otel_margin.unit` sets it; an upstream service may)."""
BAGGAGE_UNIT_KIND = MARGIN_UNIT_KIND

# --- metrics ----------------------------------------------------------------------------------
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
METRIC_COST = "margin.cost"
"""Counter of cost in USD by feature / model / tier (no customer label: cardinality)."""
METRIC_CACHE_REQUESTS = "margin.cache.requests"
"""Counter of calls a cache looked at, by feature and ``margin.cache.result`` (``exact`` |
``semantic`` | ``miss`` | ``off``): the hit rate per feature, in the user's own backend."""
METRIC_SAVED = "margin.saved"
"""Counter of USD a guardrail avoided, by feature and ``margin.saved.by`` (``cache`` | ``route``)."""
METRIC_CACHE_COST = "margin.cache.cost"
"""Counter of USD the cache itself spent on lookups (embeddings), by feature: the cache's net
saving is ``margin.saved{margin.saved.by=cache}`` minus this."""
MARGIN_SAVED_BY = "margin.saved.by"
METRIC_CACHE_ENTRIES = "margin.cache.entries"
"""Gauge of the cache store's entries (``margin.cache.store`` names the store)."""
METRIC_CACHE_BYTES = "margin.cache.bytes"
"""Gauge of the cache store's bytes."""
METRIC_CACHE_EVICTIONS = "margin.cache.evictions"
"""Counter of entries the cache store evicted for room (stores that count them)."""
MARGIN_CACHE_STORE = "margin.cache.store"
METRIC_INTERNAL_ERRORS = "margin.internal.errors"
"""Counter of otel-margin's own failures that were swallowed so the user's call could proceed."""

METRIC_REFUSED = "margin.refused"
"""Counter of values from outside (a reply's usage, W3C baggage, the route mapping) that were
refused: logged once, counted here, and the call recorded without them (:mod:`otel_margin.refusals`)."""
MARGIN_REFUSED_WHAT = "margin.refused.what"
"""Label of :data:`METRIC_REFUSED`: ``usage``, ``baggage:<key>`` or ``route:<key>``."""

METRIC_EXPORT_DROPPED = "margin.export.dropped"
"""Counter of LLM spans the ClickHouse exporter dropped (spool full or refused for good)."""
METRIC_EXPORT_EXPORTED = "margin.export.exported"
"""Observable counter of LLM spans the ClickHouse exporter wrote (committed), unit ``{span}``."""
METRIC_EXPORT_REPLAYED = "margin.export.replayed"
"""Observable counter of LLM spans written from the spool after a failed write (server mode), ``{span}``."""
METRIC_EXPORT_SPOOL_BYTES = "margin.export.spool.bytes"
"""Observable gauge of the bytes waiting in the ClickHouse exporter's spool, unit ``By``."""
METRIC_EXPORT_SPOOL_BATCHES = "margin.export.spool.batches"
"""Observable gauge of the batches waiting in the ClickHouse exporter's spool, unit ``{batch}``."""

TOKEN_USAGE_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
