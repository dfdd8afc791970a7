-- One row per unit of work active in start..end: its calls, its cost of goods by waterfall
-- category, and its outcome. A parameterised view:
--   SELECT * FROM units(start = '2026-12-01', end = '2026-12-31', grace_minutes = 60)
--
-- A unit is everything that carries its unit_id: its calls and cost lines, rolled up per day in
-- units_daily (inference; embedding calls are orchestration; cost lines in their own category),
-- and its outcomes row (FINAL: the newest recording wins, so an outcome recorded twice counts
-- once). Its kind, feature, customer and tier are those of its first call or cost line that has
-- them, else its outcome's. outcome is the recorded status; a unit without one is
-- 'abandoned' once grace_minutes have passed since its last activity, 'open' before.
-- revenue_usd is the outcome's revenue (NULL without one); cost is exact, Decimal(38, 12).
-- A unit is in the view when it has a call or cost line in the range or its outcome was recorded in
-- it. Outcomes recorded from start on are read (a unit's outcome comes after its calls; one recorded
-- after end still belongs to a unit active in the range) and kept by the HAVING: grouping them once
-- is cheaper than looking each up in a set of the range's unit ids.
CREATE OR REPLACE VIEW $database.units$on_cluster AS
SELECT
    unit_id,
    argMinIf(kind, at, kind != '') AS unit_kind,
    if(countIf(row_feature != 'unattributed') > 0, argMinIf(row_feature, at, row_feature != 'unattributed'), 'unattributed')
        AS feature,
    argMinIf(row_customer, at, row_customer != '') AS customer,
    argMinIf(row_tier, at, row_tier != '') AS tier,
    minIf(at, is_outcome = 0) AS first_at,
    maxIf(last, is_outcome = 0) AS last_at,
    sum(row_calls) AS calls,
    sum(inference) AS inference_usd,
    sum(orchestration) AS orchestration_usd,
    sum(infrastructure) AS infrastructure_usd,
    sum(support) AS support_usd,
    inference_usd + orchestration_usd + infrastructure_usd + support_usd AS cost_usd,
    anyIf(status, is_outcome = 1) AS recorded_status,
    multiIf(recorded_status != '', recorded_status,
            last_at < now64(6) - toIntervalMinute({grace_minutes:UInt32}), 'abandoned',
            'open') AS outcome,
    anyIf(outcome_revenue, is_outcome = 1) AS revenue_usd,
    anyIf(outcome_quality, is_outcome = 1) AS quality
FROM
(
    SELECT
        unit_id, unit_kind AS kind, feature AS row_feature, customer AS row_customer, tier AS row_tier,
        first_at AS at, last_at AS last, 0 AS is_outcome, calls AS row_calls,
        inference_usd AS inference, orchestration_usd AS orchestration,
        infrastructure_usd AS infrastructure, support_usd AS support,
        toLowCardinality('') AS status, CAST(NULL AS Nullable(Decimal(38, 12))) AS outcome_revenue,
        CAST(NULL AS Nullable(Decimal(38, 12))) AS outcome_quality
    FROM $database.units_daily
    WHERE day >= {start:Date} AND day <= {end:Date}
    UNION ALL
    SELECT
        unit_id, unit_kind, feature, customer, tier,
        toDateTime64('2299-12-31 23:59:59', 6, 'UTC'), timestamp, 1, toUInt64(0), -- after every call: the fallback
        toDecimal128(0, 12), toDecimal128(0, 12), toDecimal128(0, 12), toDecimal128(0, 12),
        status, revenue_usd, quality
    FROM $database.outcomes FINAL
    WHERE toDate(timestamp) >= {start:Date}
)
GROUP BY unit_id
HAVING countIf(is_outcome = 0) > 0 OR maxIf(toDate(last) >= {start:Date} AND toDate(last) <= {end:Date}, is_outcome = 1)
