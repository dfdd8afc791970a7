-- Revenue and cost of goods per day, customer, feature, tier and cohort: every margin
-- view sums this. A parameterised view: SELECT ... FROM margin_daily(allocate_by='cost').
--
-- Cost: priced calls only (cost_usd); unpriced calls are counted, never priced at 0 USD.
-- Revenue = usage revenue on the calls + subscription revenue from revenue_events.
-- Subscription revenue is spread evenly over the days of its period. Revenue without a
-- feature is allocated to the features (and cohorts) the customer used in that period, in
-- proportion to allocate_by: 'cost' (priced cost), 'calls' or 'tokens' (input + output).
-- When that weight is 0 for the whole period (say every call unpriced) the split falls back
-- to calls; with no usage at all in the period it stays on feature 'unattributed'.
-- Tier of revenue is the tier on the revenue row; tier of cost is the tier on the call.
CREATE VIEW IF NOT EXISTS $database.margin_daily$on_cluster AS
WITH
    usage AS
    (
        SELECT
            day, customer, feature, tier, cohort,
            sum(calls) AS calls,
            sum(priced_calls) AS priced_calls,
            sum(unpriced_calls) AS unpriced_calls,
            sum(cost_usd) AS cost_usd,
            sum(revenue_usd) AS usage_revenue_usd,
            sum(input_tokens + output_tokens) AS tokens
        FROM $database.llm_calls_daily
        GROUP BY day, customer, feature, tier, cohort
    ),
    events AS
    (
        SELECT
            customer, tier, feature, period_start, period_end, amount_usd,
            toUInt32(dateDiff('day', period_start, period_end) + 1) AS period_days
        FROM $database.revenue_events FINAL
    ),
    cohorts AS
    (
        SELECT customer, argMax(cohort, calls) AS cohort
        FROM (SELECT customer, cohort, sum(calls) AS calls FROM usage GROUP BY customer, cohort)
        GROUP BY customer
    ),
    weighed AS
    (
        SELECT
            e.customer AS customer, e.tier AS tier, e.period_start AS period_start,
            e.period_end AS period_end, e.amount_usd AS amount_usd, e.period_days AS period_days,
            u.feature AS feature, u.cohort AS cohort,
            sum(multiIf(
                {allocate_by:String} = 'calls', toDecimal128(u.calls, 12),
                {allocate_by:String} = 'tokens', toDecimal128(u.tokens, 12),
                u.cost_usd)) AS weight,
            toDecimal128(sum(u.calls), 12) AS call_weight
        FROM events AS e
        INNER JOIN usage AS u ON u.customer = e.customer
        WHERE e.feature = '' AND u.day >= e.period_start AND u.day <= e.period_end
        GROUP BY customer, tier, period_start, period_end, amount_usd, period_days, feature, cohort
    ),
    shared AS
    (
        SELECT
            customer, tier, period_start, period_end, amount_usd, period_days, feature, cohort,
            if(sum(weight) OVER event = 0,
               call_weight / sum(call_weight) OVER event,
               weight / sum(weight) OVER event) AS share,
            row_number() OVER (PARTITION BY customer, tier, period_start, period_end ORDER BY feature, cohort) AS part_no,
            count() OVER event AS parts
        FROM weighed
        WINDOW event AS (PARTITION BY customer, tier, period_start, period_end)
    ),
    allocated AS
    (
        -- The last part takes the rounding remainder, so the parts add up to the amount exactly.
        SELECT
            customer, tier, period_start, period_end, period_days, feature, cohort,
            if(part_no = parts, amount_usd - (sum(part) OVER event - part), part) AS amount_usd
        FROM (SELECT *, toDecimal128(amount_usd * share, 12) AS part FROM shared)
        WINDOW event AS (PARTITION BY customer, tier, period_start, period_end)
        UNION ALL
        SELECT
            e.customer, e.tier, e.period_start, e.period_end, e.period_days,
            if(e.feature = '', 'unattributed', e.feature) AS feature,
            c.cohort AS cohort,
            e.amount_usd
        FROM events AS e
        LEFT JOIN cohorts AS c ON c.customer = e.customer
        WHERE e.feature != ''
           OR (e.customer, e.tier, e.period_start, e.period_end) NOT IN
              (SELECT customer, tier, period_start, period_end FROM weighed)
    ),
    subscription AS
    (
        -- Spread evenly over the period's days; the last day takes the rounding remainder.
        SELECT
            period_start + offset AS day, customer, feature, tier, cohort,
            if(offset + 1 = period_days, amount_usd - per_day * (period_days - 1), per_day)
                AS subscription_revenue_usd
        FROM (SELECT *, toDecimal128(amount_usd / period_days, 12) AS per_day FROM allocated)
        ARRAY JOIN range(period_days) AS offset
    )
-- Facts, not groups: a (day, customer, feature, tier, cohort) may have several rows (usage
-- and subscription, and rollup rows not merged yet). Always sum.
SELECT
    day, customer, feature, tier, cohort, calls, priced_calls, unpriced_calls, cost_usd,
    revenue_usd AS usage_revenue_usd, toDecimal128(0, 12) AS subscription_revenue_usd,
    revenue_usd, revenue_usd - cost_usd AS margin_usd
FROM $database.llm_calls_daily
UNION ALL
SELECT
    day, customer, feature, tier, cohort, 0, 0, 0, toDecimal128(0, 12),
    toDecimal128(0, 12), subscription_revenue_usd,
    subscription_revenue_usd, subscription_revenue_usd
FROM subscription
