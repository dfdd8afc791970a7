-- Fills llm_calls_parts_daily from every inserted call. inference_calls: LLM calls other than
-- embeddings (the default weight); tokens: input + output; cost_usd: the priced cost of every call,
-- embeddings included (unpriced calls add 0).
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.llm_calls_parts_daily_mv$on_cluster
TO $database.llm_calls_parts_daily$local
AS SELECT
    toDate(call.timestamp) AS day,
    customer,
    feature,
    tier,
    cohort,
    unit_kind,
    count() AS calls,
    countIf(call.operation != 'embeddings') AS inference_calls,
    sum(call.input_tokens + call.output_tokens) AS tokens,
    sum(ifNull(call.cost_usd, toDecimal128(0, 12))) AS cost_usd
FROM $database.llm_calls$local AS call
GROUP BY day, customer, feature, tier, cohort, unit_kind
