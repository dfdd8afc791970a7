-- Units of work grouped by kind, feature and outcome over start..end: how many, their outcome
-- revenue and their cost of goods (all four waterfall categories), exact. recorded = 0 marks units
-- without a recorded outcome (outcome 'abandoned' after grace_minutes, 'open' before). The Python
-- side sums these groups per outcome and into the units-without-outcome and failed-units figures.
--
-- The units view's rules (otel_margin/sql/units_view.sql), computed from units_daily and outcomes
-- directly: a unit's kind and feature are those of its first call or cost line that has them, else
-- its outcome's; it is in the range when it has a call or cost line in it or its outcome was
-- recorded in it. Only what this query needs is aggregated per unit, and each row's cost is added up
-- before grouping: at 10 M calls every aggregate function runs once for each of 6.7 M rows into
-- 3.3 M units, and reading the view's columns took 2.5 s where this takes 1.8 s (benchmarks/README.md).
SELECT
    unit_kind,
    unit_feature AS feature,
    outcome,
    recorded_status != '' AS recorded,
    count() AS units,
    sum(unit_revenue) AS revenue_usd,
    sum(unit_cost) AS cost_usd
FROM
(
    SELECT
        argMinIf(kind, at, kind != '') AS unit_kind,
        argMinIf(row_feature, at, row_feature != 'unattributed') AS attributed_feature,
        if(attributed_feature = '', 'unattributed', attributed_feature) AS unit_feature,
        maxIf(last, is_outcome = 0) AS last_at,
        anyIf(status, is_outcome = 1) AS recorded_status,
        multiIf(recorded_status != '', recorded_status,
                last_at < now64(6) - toIntervalMinute({grace_minutes:UInt32}), 'abandoned',
                'open') AS outcome,
        sum(row_revenue) AS unit_revenue,
        sum(row_cost) AS unit_cost
    FROM
    (
        SELECT
            unit_id, unit_kind AS kind, feature AS row_feature, first_at AS at, last_at AS last, 0 AS is_outcome,
            inference_usd + orchestration_usd + infrastructure_usd + support_usd AS row_cost,
            toDecimal128(0, 12) AS row_revenue, toLowCardinality('') AS status
        FROM $database.units_daily
        WHERE day >= {start:Date} AND day <= {end:Date}
        UNION ALL
        SELECT
            unit_id, unit_kind, feature, toDateTime64('2299-12-31 23:59:59', 6, 'UTC'), timestamp, 1, -- after every call: the fallback
            toDecimal128(0, 12), ifNull(revenue_usd, toDecimal128(0, 12)), status
        FROM $database.outcomes FINAL
        WHERE toDate(timestamp) >= {start:Date}
    )
    GROUP BY unit_id
    HAVING min(is_outcome) = 0 OR maxIf(toDate(last) <= {end:Date}, is_outcome = 1)
)
WHERE {feature:String} = '' OR unit_feature = {feature:String}
GROUP BY unit_kind, feature, outcome, recorded
ORDER BY unit_kind, feature, outcome, recorded
