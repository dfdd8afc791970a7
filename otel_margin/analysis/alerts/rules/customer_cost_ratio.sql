-- A customer whose cost of goods over the last customer_window_days days (default 30, today
-- included) is more than cost_to_revenue_ratio (default 0.8) of the revenue they bring:
-- yellow; red once cost exceeds revenue (a customer losing money). Customers without revenue
-- in the window are left out (their ratio has no value). trend: against the window before.
-- driver: the feature that costs most for the customer and what changed in it (prompts or
-- outputs per request), else its share of the customer's cost.
WITH
    toDate({now:DateTime64(6, 'UTC')}) AS today,
    {customer_window_days:UInt32} AS days,
    (x -> concat(if(x >= 0, '+', ''), toString(round(x * 100)), '%')) AS signed,
    ratios AS
    (
        SELECT
            customer,
            toFloat64(sumIf(revenue_usd, day > today - days)) AS revenue_now,
            toFloat64(sumIf(cost_usd, day > today - days)) AS cost_now,
            toFloat64(sumIf(revenue_usd, day <= today - days)) AS revenue_before,
            toFloat64(sumIf(cost_usd, day <= today - days)) AS cost_before,
            sumIf(priced_calls, day > today - days) AS calls_now
        FROM $database.margin_daily(
            allocate_by = {allocate_by:String}, start = today - 2 * days + 1, end = today, by_day = 1,
            value_features = {value_features:Array(String)}, value_weights = {value_weights:Array(Decimal(38, 12))},
            ai_tiers = {ai_tiers:Array(String)}, ai_share_pcts = {ai_share_pcts:Array(Decimal(38, 12))})
        GROUP BY customer
    ),
    features AS
    (
        -- The customer's costliest feature now, and its tokens per request now and before.
        SELECT
            customer,
            argMax(feature, cost_now) AS top_feature,
            max(cost_now) / sum(cost_now) AS top_share,
            argMax(prompts, cost_now) AS top_prompts,
            argMax(outputs, cost_now) AS top_outputs
        FROM
        (
            SELECT
                customer, feature,
                toFloat64(sumIf(cost_usd, day > today - days)) AS cost_now,
                sumIf(priced_calls, day > today - days) AS calls_now,
                sumIf(priced_calls, day <= today - days) AS calls_before,
                if(calls_before > 0 AND calls_now > 0 AND sumIf(input_tokens, day <= today - days) > 0,
                   sumIf(input_tokens, day > today - days) / calls_now
                       / (sumIf(input_tokens, day <= today - days) / calls_before) - 1, 0) AS prompts,
                if(calls_before > 0 AND calls_now > 0 AND sumIf(output_tokens, day <= today - days) > 0,
                   sumIf(output_tokens, day > today - days) / calls_now
                       / (sumIf(output_tokens, day <= today - days) / calls_before) - 1, 0) AS outputs
            FROM $database.llm_calls_daily
            WHERE day > today - 2 * days AND day <= today
            GROUP BY customer, feature
        )
        GROUP BY customer
        HAVING sum(cost_now) > 0
    )
SELECT
    'customer_cost_ratio' AS rule,
    if(value >= 1, 'red', 'yellow') AS severity,
    '' AS feature,
    r.customer AS customer,
    cost_now / revenue_now AS value,
    {cost_to_revenue_ratio:Float64} AS threshold,
    multiIf(revenue_before <= 0, 'flat', abs(value - cost_before / revenue_before) < 0.01, 'flat',
            value > cost_before / revenue_before, 'up', 'down') AS trend,
    multiIf(
        abs(f.top_prompts) >= 0.05 AND abs(f.top_prompts) >= abs(f.top_outputs),
            concat('prompts ', signed(f.top_prompts), ' in feature ', f.top_feature),
        abs(f.top_outputs) >= 0.05, concat('outputs ', signed(f.top_outputs), ' in feature ', f.top_feature),
        concat('feature ', f.top_feature, ': ', toString(round(f.top_share * 100)), '% of cost')) AS driver,
    revenue_now AS revenue_usd,
    cost_now AS cost_usd
FROM ratios AS r
INNER JOIN features AS f ON f.customer = r.customer
WHERE revenue_now > 0 AND calls_now >= {min_calls:UInt64} AND value > {cost_to_revenue_ratio:Float64}
