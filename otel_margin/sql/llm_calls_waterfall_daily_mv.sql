-- Fills llm_calls_waterfall_daily from every inserted call. model: the response model (what was
-- priced), else the requested one. An embedding call is orchestration, every other call
-- inference; a failed call (error_type set) earns no usage revenue whatever it carries.
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.llm_calls_waterfall_daily_mv$on_cluster
TO $database.llm_calls_waterfall_daily$local
AS SELECT
    toDate(call.timestamp) AS day,
    feature,
    customer,
    tier,
    cohort,
    unit_kind,
    toLowCardinality(if(call.response_model != '', toString(call.response_model), toString(call.request_model))) AS model,
    count() AS calls,
    countIf(call.operation != 'embeddings') AS inference_calls,
    countIf(call.cost_usd IS NOT NULL) AS priced_calls,
    countIf(call.cost_usd IS NULL AND call.cost_status != 'error') AS unpriced_calls,
    countIf(call.error_type != '') AS error_calls,
    sum(call.input_tokens) AS input_tokens,
    sum(call.output_tokens) AS output_tokens,
    sumIf(ifNull(call.cost_usd, toDecimal128(0, 12)), call.operation != 'embeddings') AS inference_usd,
    sumIf(ifNull(call.cost_usd, toDecimal128(0, 12)), call.operation = 'embeddings') AS orchestration_usd,
    sumIf(ifNull(call.revenue_usd, toDecimal128(0, 12)), call.error_type = '') AS revenue_usd
FROM $database.llm_calls$local AS call
GROUP BY day, feature, customer, tier, cohort, unit_kind, model
