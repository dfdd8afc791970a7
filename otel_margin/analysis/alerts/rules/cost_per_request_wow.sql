-- A feature's average cost per priced request over the last 7 days (today included) is more
-- than cost_rise_pct (default 15 %) above the 7 days before. Yellow; red from twice the
-- threshold. Both weeks need min_calls priced calls. driver: the primary cost driver
-- (cost_drivers view: a model's price, the tier or model mix, a customer, a cost component).
WITH toDate({now:DateTime64(6, 'UTC')}) AS today
SELECT
    'cost_per_request_wow' AS rule,
    if(value >= 2 * {cost_rise_pct:Float64}, 'red', 'yellow') AS severity,
    feature,
    '' AS customer,
    delta_usd / base_cost_per_request * 100 AS value,
    {cost_rise_pct:Float64} AS threshold,
    'up' AS trend,
    driver,
    base_cost_per_request,
    current_cost_per_request
FROM $database.cost_drivers(base_start = today - 13, base_end = today - 7, current_start = today - 6, current_end = today)
WHERE base_calls >= {min_calls:UInt64} AND current_calls >= {min_calls:UInt64}
  AND base_cost_per_request > 0 AND value > {cost_rise_pct:Float64}
