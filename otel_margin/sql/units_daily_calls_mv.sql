-- Fills units_daily from every inserted call: an embedding call is orchestration, any other call
-- inference; an unpriced call counts as a call and adds no cost.
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.units_daily_calls_mv$on_cluster
TO $database.units_daily$local
AS SELECT
    toDate(call.timestamp) AS day,
    unit_id,
    toUInt8(call.unit_id != call.span_id) AS in_unit,
    unit_kind,
    feature,
    customer,
    tier,
    min(call.timestamp) AS first_at,
    max(call.timestamp) AS last_at,
    count() AS calls,
    sumIf(ifNull(call.cost_usd, toDecimal128(0, 12)), call.operation != 'embeddings') AS inference_usd,
    sumIf(ifNull(call.cost_usd, toDecimal128(0, 12)), call.operation = 'embeddings') AS orchestration_usd,
    toDecimal128(0, 12) AS infrastructure_usd,
    toDecimal128(0, 12) AS support_usd
FROM $database.llm_calls$local AS call
GROUP BY day, unit_id, in_unit, unit_kind, feature, customer, tier
