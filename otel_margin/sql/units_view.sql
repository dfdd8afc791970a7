-- One row per unit of work active in start..end: its calls, its cost of goods by waterfall
-- category, and its outcome. A parameterised view:
--   SELECT * FROM units(start = '2026-12-01', end = '2026-12-31', grace_minutes = 60)
--
-- A unit is everything that carries its unit_id: llm_calls rows (inference; embedding calls
-- are orchestration), cost_lines rows (their own category) and its outcomes row (FINAL: the
-- newest recording wins, so an outcome recorded twice counts once). Its feature, customer and
-- tier are those of its first row that has them. outcome is the recorded status; a unit
-- without one is 'abandoned' once grace_minutes have passed since its last activity, 'open'
-- before. revenue_usd is the outcome's revenue (NULL without one); cost is exact, Decimal(38, 12).
-- A unit is in the view when it has a call or cost line in the range or its outcome was recorded in
-- it. Outcomes recorded from start on are read (a unit's outcome comes after its calls; one recorded
-- after end still belongs to a unit active in the range) and kept by the HAVING: grouping them once
-- is cheaper than looking each up in a set of the range's unit ids.
CREATE OR REPLACE VIEW $database.units$on_cluster AS
SELECT
    unit_id,
    anyIf(unit_kind, unit_kind != '') AS unit_kind,
    if(countIf(feature != 'unattributed') > 0, argMinIf(feature, at, feature != 'unattributed'), 'unattributed')
        AS feature,
    argMinIf(customer, at, customer != '') AS customer,
    argMinIf(tier, at, tier != '') AS tier,
    minIf(at, is_outcome = 0) AS first_at,
    maxIf(at, is_outcome = 0) AS last_at,
    sum(calls) AS calls,
    sum(inference_usd) AS inference_usd,
    sum(orchestration_usd) AS orchestration_usd,
    sum(infrastructure_usd) AS infrastructure_usd,
    sum(support_usd) AS support_usd,
    inference_usd + orchestration_usd + infrastructure_usd + support_usd AS cost_usd,
    anyIf(status, is_outcome = 1) AS recorded_status,
    multiIf(recorded_status != '', recorded_status,
            maxIf(at, is_outcome = 0) < now64(6) - toIntervalMinute({grace_minutes:UInt32}), 'abandoned',
            'open') AS outcome,
    anyIf(revenue_usd, is_outcome = 1) AS revenue_usd,
    anyIf(quality, is_outcome = 1) AS quality
FROM
(
    SELECT
        unit_id, unit_kind, feature, customer, tier,
        timestamp AS at, 0 AS is_outcome, toUInt64(1) AS calls,
        if(operation = 'embeddings', toDecimal128(0, 12), ifNull(cost_usd, toDecimal128(0, 12))) AS inference_usd,
        if(operation = 'embeddings', ifNull(cost_usd, toDecimal128(0, 12)), toDecimal128(0, 12)) AS orchestration_usd,
        toDecimal128(0, 12) AS infrastructure_usd, toDecimal128(0, 12) AS support_usd,
        toLowCardinality('') AS status, CAST(NULL AS Nullable(Decimal(38, 12))) AS revenue_usd,
        CAST(NULL AS Nullable(Decimal(38, 12))) AS quality
    FROM $database.llm_calls
    WHERE toDate(timestamp) >= {start:Date} AND toDate(timestamp) <= {end:Date}
    UNION ALL
    SELECT
        unit_id, unit_kind, feature, customer, tier, timestamp, 0, toUInt64(0),
        if(category = 'inference', amount_usd, toDecimal128(0, 12)),
        if(category = 'orchestration', amount_usd, toDecimal128(0, 12)),
        if(category = 'infrastructure', amount_usd, toDecimal128(0, 12)),
        if(category = 'support', amount_usd, toDecimal128(0, 12)),
        toLowCardinality(''), CAST(NULL AS Nullable(Decimal(38, 12))), CAST(NULL AS Nullable(Decimal(38, 12)))
    FROM $database.cost_lines
    WHERE toDate(timestamp) >= {start:Date} AND toDate(timestamp) <= {end:Date}
    UNION ALL
    SELECT
        unit_id, unit_kind, feature, customer, tier, timestamp, 1, toUInt64(0),
        toDecimal128(0, 12), toDecimal128(0, 12), toDecimal128(0, 12), toDecimal128(0, 12),
        status, revenue_usd, quality
    FROM $database.outcomes FINAL
    WHERE toDate(timestamp) >= {start:Date}
)
GROUP BY unit_id
HAVING countIf(is_outcome = 0) > 0 OR maxIf(toDate(at) >= {start:Date} AND toDate(at) <= {end:Date}, is_outcome = 1)
