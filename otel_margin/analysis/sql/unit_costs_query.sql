-- Cost per unit of work, per unit kind and feature, over the units active in start..end (the
-- units view): how many, their exact total, and the exact P50, P95 and maximum cost of one unit
-- (quantileExact: the element at floor(level * n) of the sorted costs, an actual unit's cost).
-- A unit with no call or cost line in the range (only its outcome recorded there) is left out:
-- its last_at, the latest of none, is the zero time. Calls outside any unit are units of kind ''.
-- The view's columns are renamed before filtering: they are aggregates inside the view.
SELECT
    unit_kind,
    unit_feature AS feature,
    count() AS units,
    sum(unit_calls) AS calls,
    sum(unit_cost) AS cost_usd,
    quantilesExact(0.5, 0.95)(unit_cost) AS quantiles,
    max(unit_cost) AS max_cost_usd
FROM
(
    SELECT unit_kind, feature AS unit_feature, calls AS unit_calls, cost_usd AS unit_cost, last_at AS unit_last_at
    FROM $database.units(start = {start:Date}, end = {end:Date}, grace_minutes = {grace_minutes:UInt32})
)
WHERE unit_last_at > toDateTime64(0, 6, 'UTC')
  AND ({feature:String} = '' OR unit_feature = {feature:String})
GROUP BY unit_kind, feature
ORDER BY cost_usd DESC, unit_kind, feature
