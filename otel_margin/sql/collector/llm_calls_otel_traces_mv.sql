-- The fleet path: every LLM span the OpenTelemetry Collector's clickhouse exporter writes to
-- otel_traces becomes one llm_calls row, with the same meaning the in-process exporter gives
-- it (otel_margin/exporters/rows.py): the collector stores every attribute as a string.
-- An LLM span is one whose gen_ai.operation.name is a model call; agent / tool spans and
-- non-GenAI spans are ignored. A missing or unparseable margin.cost.usd is NULL (unpriced),
-- never 0. A token count UInt64 cannot hold (beyond 2^64 - 1, negative, not a number) is stored
-- as 0 with cost_status 'invalid' and a NULL cost, never under a cost priced from it, and a row
-- without a cost is never 'priced' or 'estimated'. A span outside any unit of work is its own
-- unit (unit_id = its span id). margin.request.hash (16 hex digits) is the UInt64 it spells, else 0.
-- Inserts into llm_calls cascade into the
-- hourly and daily rollups.
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.llm_calls_otel_traces_mv$on_cluster
TO $database.llm_calls$local
AS WITH
    arrayExists(count -> count != '' AND toUInt64OrNull(trimBoth(count)) IS NULL, [
        SpanAttributes['gen_ai.usage.input_tokens'], SpanAttributes['gen_ai.usage.output_tokens'],
        SpanAttributes['gen_ai.usage.cache_read.input_tokens'],
        SpanAttributes['gen_ai.usage.cache_creation.input_tokens'],
        SpanAttributes['gen_ai.usage.reasoning.output_tokens']]) AS usage_invalid
SELECT
    toDateTime64(Timestamp, 6, 'UTC') AS timestamp,
    TraceId AS trace_id,
    SpanId AS span_id,
    ServiceName AS service_name,
    if(SpanAttributes['margin.feature'] = '', 'unattributed', SpanAttributes['margin.feature']) AS feature,
    SpanAttributes['margin.tier'] AS tier,
    SpanAttributes['margin.cohort'] AS cohort,
    SpanAttributes['margin.customer'] AS customer,
    if(SpanAttributes['margin.unit.id'] = '', SpanId, SpanAttributes['margin.unit.id']) AS unit_id,
    SpanAttributes['margin.unit.kind'] AS unit_kind,
    SpanAttributes['gen_ai.provider.name'] AS provider,
    SpanAttributes['gen_ai.operation.name'] AS operation,
    SpanAttributes['gen_ai.request.model'] AS request_model,
    SpanAttributes['gen_ai.response.model'] AS response_model,
    toUInt64OrZero(trimBoth(SpanAttributes['gen_ai.usage.input_tokens'])) AS input_tokens,
    toUInt64OrZero(trimBoth(SpanAttributes['gen_ai.usage.output_tokens'])) AS output_tokens,
    toUInt64OrZero(trimBoth(SpanAttributes['gen_ai.usage.cache_read.input_tokens'])) AS cache_read_tokens,
    toUInt64OrZero(trimBoth(SpanAttributes['gen_ai.usage.cache_creation.input_tokens'])) AS cache_write_tokens,
    toUInt64OrZero(trimBoth(SpanAttributes['gen_ai.usage.reasoning.output_tokens'])) AS reasoning_tokens,
    if(SpanAttributes['margin.usage.source'] = '', 'provider', SpanAttributes['margin.usage.source']) AS usage_source,
    if(usage_invalid, NULL, toDecimal128OrNull(SpanAttributes['margin.cost.usd'], 12)) AS cost_usd,
    if(usage_invalid, toDecimal128(0, 12),
       ifNull(toDecimal128OrNull(SpanAttributes['margin.cost.input.usd'], 12), toDecimal128(0, 12))) AS cost_input_usd,
    if(usage_invalid, toDecimal128(0, 12),
       ifNull(toDecimal128OrNull(SpanAttributes['margin.cost.cache_read.usd'], 12), toDecimal128(0, 12))) AS cost_cache_read_usd,
    if(usage_invalid, toDecimal128(0, 12),
       ifNull(toDecimal128OrNull(SpanAttributes['margin.cost.cache_write.usd'], 12), toDecimal128(0, 12))) AS cost_cache_write_usd,
    if(usage_invalid, toDecimal128(0, 12),
       ifNull(toDecimal128OrNull(SpanAttributes['margin.cost.output.usd'], 12), toDecimal128(0, 12))) AS cost_output_usd,
    if(usage_invalid, toDecimal128(0, 12),
       ifNull(toDecimal128OrNull(SpanAttributes['margin.cost.other.usd'], 12), toDecimal128(0, 12))) AS cost_other_usd,
    multiIf(usage_invalid, 'invalid',
            cost_usd IS NULL AND SpanAttributes['margin.cost.status'] IN ('priced', 'estimated'), 'invalid',
            SpanAttributes['margin.cost.status'] != '', SpanAttributes['margin.cost.status'],
            cost_usd IS NULL, 'unpriced', 'priced') AS cost_status,
    SpanAttributes['margin.price.version'] AS price_version,
    toDecimal128OrNull(SpanAttributes['margin.revenue.usd'], 12) AS revenue_usd,
    SpanAttributes['margin.cache.result'] AS cache_result,
    ifNull(toDecimal128OrNull(SpanAttributes['margin.saved.usd'], 12), toDecimal128(0, 12)) AS saved_usd,
    ifNull(toDecimal128OrNull(SpanAttributes['margin.cache.cost.usd'], 12), toDecimal128(0, 12)) AS cache_cost_usd,
    SpanAttributes['margin.route.from_model'] AS route_from_model,
    SpanAttributes['margin.limit.action'] AS limit_action,
    Duration / 1e6 AS duration_ms,
    multiIf(SpanAttributes['error.type'] != '', SpanAttributes['error.type'],
            StatusCode IN ('Error', 'STATUS_CODE_ERROR'), '_OTHER', '') AS error_type,
    lower(SpanAttributes['gen_ai.request.stream']) IN ('true', '1') AS stream,
    if(match(SpanAttributes['margin.request.hash'], '^[0-9a-f]{16}$$'),
       reinterpretAsUInt64(reverse(unhex(SpanAttributes['margin.request.hash']))), 0) AS request_hash
FROM $traces_database.$traces_table
WHERE SpanAttributes['gen_ai.operation.name'] IN ('chat', 'text_completion', 'generate_content', 'embeddings')
