-- A price change for a model in use: the prices the last 24 hours of calls were priced with
-- (their implied price per token: input and output cost over tokens, from the hourly rollup)
-- against the prices the current catalog and policy give the same model (current_prices,
-- looked up by otel-margin when the rules run: a new genai-prices release, an edited
-- discount or contract price). value: how much the feature's cost of those calls changes
-- when repriced at current prices, in %; fires from price_change_pct (default 1 %). Yellow for
-- a rise, red from cost_rise_pct, info for a fall. A tiered price is compared with the range
-- of its tiers. driver: the model and component with the largest change in dollars.
WITH
    (x -> concat(if(x >= 0, '+', ''), toString(round(x * 100)), '%')) AS signed,
    used AS
    (
        SELECT
            feature, provider, response_model AS model,
            toFloat64(sum(greatest(toInt64(input_tokens) - toInt64(cache_read_tokens) - toInt64(cache_write_tokens), 0))) AS input_tokens,
            toFloat64(sum(cost_input_usd)) AS input_cost,
            toFloat64(sum(output_tokens)) AS output_tokens,
            toFloat64(sum(cost_output_usd)) AS output_cost
        FROM $database.llm_calls_hourly
        WHERE hour >= toStartOfHour({now:DateTime64(6, 'UTC')}) - INTERVAL 23 HOUR AND unpriced_calls = 0
        GROUP BY feature, provider, model
    ),
    current AS
    (
        SELECT price.1 AS provider, price.2 AS model, price.3 AS input_min, price.4 AS input_max,
               price.5 AS output_min, price.6 AS output_max
        FROM (SELECT arrayJoin({current_prices:Array(Tuple(String, String, Float64, Float64, Float64, Float64))}) AS price)
    ),
    changes AS
    (
        -- One row per (feature, model, component): the recorded price per million tokens, the
        -- current one (the recorded price clamped into the current tiers' range) and the dollars.
        SELECT used.feature AS feature, used.model AS model, part.1 AS component,
               part.2 * 1000000 / part.3 AS recorded, least(greatest(recorded, part.4), part.5) AS now_price,
               part.3 * (now_price - recorded) / 1000000 AS change_usd
        FROM used
        INNER JOIN current ON current.provider = used.provider AND current.model = used.model
        ARRAY JOIN [('input', input_cost, input_tokens, input_min, input_max),
                    ('output', output_cost, output_tokens, output_min, output_max)] AS part
        WHERE part.3 > 0 AND abs(now_price - recorded) > 1e-9 * greatest(recorded, 1)
    ),
    costs AS
    (
        SELECT feature, toFloat64(sum(cost_usd)) AS cost
        FROM $database.llm_calls_hourly
        WHERE hour >= toStartOfHour({now:DateTime64(6, 'UTC')}) - INTERVAL 23 HOUR
        GROUP BY feature
    )
SELECT
    'price_change' AS rule,
    multiIf(value < 0, 'info', value >= {cost_rise_pct:Float64}, 'red', 'yellow') AS severity,
    c.feature AS feature,
    '' AS customer,
    sum(change_usd) / any(costs.cost) * 100 AS value,
    {price_change_pct:Float64} AS threshold,
    if(value >= 0, 'up', 'down') AS trend,
    argMax(concat('model ', model, ' ', component, ' price ',
                  if(recorded > 0, signed(now_price / recorded - 1), concat('0 → ', toString(now_price), ' USD/M'))),
           abs(change_usd)) AS driver
FROM changes AS c
INNER JOIN costs ON costs.feature = c.feature
WHERE costs.cost > 0
GROUP BY c.feature
HAVING abs(value) >= {price_change_pct:Float64}
