-- Why a feature's average cost per priced request moved between two windows of days: the
-- primary cost driver, in words. A parameterised view (the alert rules read it):
--   SELECT * FROM otel_margin.cost_drivers(base_start = '2026-11-24', base_end = '2026-11-30',
--                                          current_start = '2026-12-01', current_end = '2026-12-07')
-- One row per feature priced in both windows: base and current cost per request, the change
-- (delta_usd), the driver and the dollars per request it explains.
--
-- Candidates, each the part of the change it explains (dollars per current request):
--   1 price       a model's implied price per token of one component (cost / tokens, from the
--                 hourly rollup) changed: tokens now x (price now - price before)
--                 -> "model gpt-4o input price +25%"
--   2 tier mix    a tier's share of requests changed: (share now - share before) x (its cost
--                 per request - the feature's, before) -> "tier mix: free share 20%→55%"
--   3 model mix   the same over models -> "model mix: gpt-4o share 10%→50%"
--   4 customer    a customer's own cost per request changed: its requests now x (its cost per
--                 request now - before) -> "customer acme prompts +60%" (or outputs, or cost)
--   5 component   a cost component's cost per request changed, over all requests
--                 -> "input cost per request +40%"
-- The driver is the candidate of the first kind (in that order) that explains at least half
-- of the change; when none does, the one that explains most.
CREATE OR REPLACE VIEW $database.cost_drivers$on_cluster AS
WITH
    (x -> concat(if(x >= 0, '+', ''), toString(round(x * 100)), '%')) AS signed,
    daily AS
    (
        SELECT
            feature, customer, tier,
            day BETWEEN {current_start:Date} AND {current_end:Date} AS is_current,
            priced_calls AS calls, input_tokens, output_tokens,
            toFloat64(cost_usd) AS cost,
            [toFloat64(cost_input_usd), toFloat64(cost_cache_read_usd), toFloat64(cost_cache_write_usd),
             toFloat64(cost_output_usd), toFloat64(cost_other_usd)] AS components
        FROM $database.llm_calls_daily
        WHERE day BETWEEN {base_start:Date} AND {base_end:Date}
           OR day BETWEEN {current_start:Date} AND {current_end:Date}
    ),
    hourly AS
    (
        SELECT
            feature, response_model AS model,
            toDate(hour) BETWEEN {current_start:Date} AND {current_end:Date} AS is_current,
            priced_calls AS calls, toFloat64(cost_usd) AS cost,
            [('input', toFloat64(greatest(toInt64(input_tokens) - toInt64(cache_read_tokens) - toInt64(cache_write_tokens), 0)),
              toFloat64(cost_input_usd)),
             ('cache read', toFloat64(cache_read_tokens), toFloat64(cost_cache_read_usd)),
             ('cache write', toFloat64(cache_write_tokens), toFloat64(cost_cache_write_usd)),
             ('output', toFloat64(output_tokens), toFloat64(cost_output_usd))] AS parts
        FROM $database.llm_calls_hourly
        WHERE (toDate(hour) BETWEEN {base_start:Date} AND {base_end:Date}
               OR toDate(hour) BETWEEN {current_start:Date} AND {current_end:Date})
          AND unpriced_calls = 0
    ),
    totals AS
    (
        SELECT
            feature,
            sumIf(calls, NOT is_current) AS base_calls,
            sumIf(calls, is_current) AS current_calls,
            sumIf(cost, NOT is_current) / base_calls AS base_avg,
            sumIf(cost, is_current) / current_calls AS current_avg,
            current_avg - base_avg AS delta
        FROM daily
        GROUP BY feature
        HAVING base_calls > 0 AND current_calls > 0
    ),
    candidates AS
    (
        SELECT price.feature AS feature, 1 AS kind,
               tokens_now * (price_now - price_before) / t.current_calls AS explained,
               concat('model ', model, ' ', component, ' price ', signed(price_now / price_before - 1)) AS text
        FROM
        (
            SELECT
                feature, model, part.1 AS component,
                sumIf(part.2, is_current) AS tokens_now,
                sumIf(part.3, is_current) / tokens_now AS price_now,
                sumIf(part.3, NOT is_current) / sumIf(part.2, NOT is_current) AS price_before
            FROM hourly ARRAY JOIN parts AS part
            GROUP BY feature, model, component
            HAVING sumIf(part.2, NOT is_current) > 0 AND tokens_now > 0 AND price_before > 0
        ) AS price
        INNER JOIN totals AS t ON t.feature = price.feature
        UNION ALL
        SELECT tiers.feature, 2,
               (calls_now / t.current_calls - calls_before / t.base_calls) * (avg_cost - t.base_avg),
               concat('tier mix: ', tier, ' share ', toString(round(calls_before / t.base_calls * 100)), '%→',
                      toString(round(calls_now / t.current_calls * 100)), '%')
        FROM
        (
            SELECT feature, tier, sumIf(calls, NOT is_current) AS calls_before, sumIf(calls, is_current) AS calls_now,
                   if(calls_before > 0, sumIf(cost, NOT is_current) / calls_before, sumIf(cost, is_current) / calls_now) AS avg_cost
            FROM daily GROUP BY feature, tier
        ) AS tiers
        INNER JOIN totals AS t ON t.feature = tiers.feature
        UNION ALL
        SELECT models.feature, 3,
               (calls_now / t.current_calls - calls_before / t.base_calls) * (avg_cost - t.base_avg),
               concat('model mix: ', model, ' share ', toString(round(calls_before / t.base_calls * 100)), '%→',
                      toString(round(calls_now / t.current_calls * 100)), '%')
        FROM
        (
            SELECT feature, model, sumIf(calls, NOT is_current) AS calls_before, sumIf(calls, is_current) AS calls_now,
                   if(calls_before > 0, sumIf(cost, NOT is_current) / calls_before, sumIf(cost, is_current) / calls_now) AS avg_cost
            FROM hourly GROUP BY feature, model
        ) AS models
        INNER JOIN totals AS t ON t.feature = models.feature
        UNION ALL
        SELECT customers.feature, 4, (cost_now - calls_now * cost_before / calls_before) / t.current_calls,
               concat('customer ', customer, ' ', multiIf(
                   abs(prompts) >= 0.05 AND abs(prompts) >= abs(outputs), concat('prompts ', signed(prompts)),
                   abs(outputs) >= 0.05, concat('outputs ', signed(outputs)),
                   concat('cost per request ', signed((cost_now / calls_now) / (cost_before / calls_before) - 1))))
        FROM
        (
            SELECT feature, customer,
                   sumIf(calls, NOT is_current) AS calls_before, sumIf(calls, is_current) AS calls_now,
                   sumIf(cost, NOT is_current) AS cost_before, sumIf(cost, is_current) AS cost_now,
                   sumIf(input_tokens, is_current) / calls_now / (sumIf(input_tokens, NOT is_current) / calls_before) - 1 AS prompts,
                   sumIf(output_tokens, is_current) / calls_now / (sumIf(output_tokens, NOT is_current) / calls_before) - 1 AS outputs
            FROM daily GROUP BY feature, customer
            HAVING calls_before > 0 AND calls_now > 0
        ) AS customers
        INNER JOIN totals AS t ON t.feature = customers.feature
        UNION ALL
        SELECT feature, 5, now_avg - before_avg,
               concat(component, ' cost per request ',
                      if(before_avg > 0, signed(now_avg / before_avg - 1), concat('from 0 to ', toString(now_avg), ' USD')))
        FROM
        (
            SELECT daily.feature AS feature, component,
                   sumIf(cost, NOT is_current) / any(t.base_calls) AS before_avg,
                   sumIf(cost, is_current) / any(t.current_calls) AS now_avg
            FROM daily
            INNER JOIN totals AS t ON t.feature = daily.feature
            ARRAY JOIN components AS cost, ['input', 'cache read', 'cache write', 'output', 'other'] AS component
            GROUP BY feature, component
        ) AS parts
    )
SELECT
    t.feature AS feature,
    t.base_calls AS base_calls,
    t.current_calls AS current_calls,
    t.base_avg AS base_cost_per_request,
    t.current_avg AS current_cost_per_request,
    t.delta AS delta_usd,
    argMin(c.text, (NOT (c.explained * sign(t.delta) >= 0.5 * abs(t.delta)), c.kind, -c.explained * sign(t.delta))) AS driver,
    argMin(c.explained, (NOT (c.explained * sign(t.delta) >= 0.5 * abs(t.delta)), c.kind, -c.explained * sign(t.delta))) AS driver_explains_usd
FROM totals AS t
INNER JOIN candidates AS c ON c.feature = t.feature
WHERE isFinite(c.explained)
GROUP BY t.feature, t.base_calls, t.current_calls, t.base_avg, t.current_avg, t.delta
