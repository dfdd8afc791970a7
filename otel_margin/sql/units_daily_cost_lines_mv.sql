-- Fills units_daily from every inserted cost line (otel_margin.record_cost), in its category; a
-- cost line is not a call.
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.units_daily_cost_lines_mv$on_cluster
TO $database.units_daily$local
AS SELECT
    toDate(line.timestamp) AS day,
    unit_id,
    toUInt8(line.unit_id != line.span_id) AS in_unit,
    unit_kind,
    feature,
    customer,
    tier,
    min(line.timestamp) AS first_at,
    max(line.timestamp) AS last_at,
    toUInt64(0) AS calls,
    sumIf(line.amount_usd, line.category = 'inference') AS inference_usd,
    sumIf(line.amount_usd, line.category = 'orchestration') AS orchestration_usd,
    sumIf(line.amount_usd, line.category = 'infrastructure') AS infrastructure_usd,
    sumIf(line.amount_usd, line.category = 'support') AS support_usd
FROM $database.cost_lines$local AS line
GROUP BY day, unit_id, in_unit, unit_kind, feature, customer, tier
