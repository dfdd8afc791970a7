-- Units of work grouped by kind, feature and outcome over start..end (the units view): how
-- many, their outcome revenue and their cost of goods per waterfall category, exact.
-- recorded = 0 marks units without a recorded outcome (outcome 'abandoned' after
-- grace_minutes, 'open' before). The Python side sums these groups per outcome, per unit kind,
-- and into the units-without-outcome and failed-units figures. The view's columns are renamed
-- before filtering: they are aggregates inside the view.
SELECT
    unit_kind,
    unit_feature AS feature,
    unit_outcome AS outcome,
    unit_recorded AS recorded,
    count() AS units,
    sum(unit_calls) AS calls,
    sum(ifNull(unit_revenue, toDecimal128(0, 12))) AS revenue_usd,
    sum(unit_inference) AS inference_usd,
    sum(unit_orchestration) AS orchestration_usd,
    sum(unit_infrastructure) AS infrastructure_usd,
    sum(unit_support) AS support_usd,
    sum(unit_cost) AS cost_usd
FROM
(
    SELECT
        unit_kind, feature AS unit_feature, outcome AS unit_outcome, recorded_status != '' AS unit_recorded,
        calls AS unit_calls, revenue_usd AS unit_revenue, inference_usd AS unit_inference,
        orchestration_usd AS unit_orchestration, infrastructure_usd AS unit_infrastructure,
        support_usd AS unit_support, cost_usd AS unit_cost
    FROM $database.units(start = {start:Date}, end = {end:Date}, grace_minutes = {grace_minutes:UInt32})
)
WHERE {feature:String} = '' OR unit_feature = {feature:String}
GROUP BY unit_kind, feature, outcome, recorded
ORDER BY unit_kind, feature, outcome, recorded
