-- Revenue and cost of goods per day, customer, feature, tier and cohort, for the days
-- start..end: every margin view sums this. A parameterised view:
--   SELECT ... FROM margin_daily(allocate_by = 'cost', start = '2024-05-01', end = '2024-05-31')
--
-- Cost: priced calls only (cost_usd); unpriced calls are counted, never priced at 0 USD.
-- error_calls: failed calls (error_type set); one without usage has no cost and no usage revenue.
-- Revenue = usage revenue on the calls + subscription revenue from revenue_events.
-- Subscription revenue is spread evenly over the days of its period. Revenue without a
-- feature is allocated to the features (and cohorts) the customer used in that period, in
-- proportion to allocate_by: 'cost' (priced cost), 'calls' or 'tokens' (input + output).
-- When that weight is 0 for the whole period (say every call unpriced) the split falls back
-- to calls; with no usage at all in the period it stays on feature 'unattributed'.
-- Tier of revenue is the tier on the revenue row; tier of cost is the tier on the call.
--
-- The split is computed at query time from the daily rollup, so usage that arrives after an
-- import moves it. Only revenue periods that overlap start..end are split (over their whole
-- period), and only the daily rollup rows of those periods are read: the cost of a query
-- follows the range asked for, not the history kept.
CREATE OR REPLACE VIEW $database.margin_daily$on_cluster AS
WITH
    events AS
    (
        SELECT
            customer, tier, feature, period_start, period_end, amount_usd,
            toUInt32(dateDiff('day', period_start, period_end) + 1) AS period_days
        FROM $database.revenue_events FINAL
        WHERE period_end >= {start:Date} AND period_start <= {end:Date}
    ),
    used AS
    (
        -- Usage per (feature, cohort) in each unattributed period: an equi-join on
        -- (customer, day) against the period's days, so each rollup row meets only its periods.
        SELECT
            period.customer AS customer, period.period_start AS period_start, period.period_end AS period_end,
            (usage.feature, usage.cohort) AS part,
            sum(multiIf(
                {allocate_by:String} = 'calls', toDecimal128(usage.calls, 12),
                {allocate_by:String} = 'tokens', toDecimal128(usage.tokens, 12),
                usage.cost_usd)) AS weight,
            sum(usage.calls) AS calls
        FROM
        (
            SELECT day, customer, feature, cohort, calls, input_tokens + output_tokens AS tokens, cost_usd
            FROM $database.llm_calls_daily
            WHERE day >= (SELECT min(period_start) FROM events) AND day <= (SELECT max(period_end) FROM events)
        ) AS usage
        INNER JOIN
        (
            SELECT customer, period_start, period_end, period_start + arrayJoin(range(period_days)) AS day
            FROM events
            WHERE feature = ''
        ) AS period ON usage.customer = period.customer AND usage.day = period.day
        GROUP BY customer, period_start, period_end, part
    ),
    shares AS
    (
        -- One row per period with usage: its parts in (feature, cohort) order and their weights.
        SELECT
            customer, period_start, period_end,
            arraySort(groupArray((part, weight, calls))) AS used_parts,
            arrayMap(x -> x.1, used_parts) AS parts,
            if(sum(weight) = 0,
               arrayMap(x -> toDecimal128(x.3, 12), used_parts),
               arrayMap(x -> x.2, used_parts)) AS weights,
            arraySum(weights) AS total_weight
        FROM used
        GROUP BY customer, period_start, period_end
    ),
    cohorts AS
    (
        -- The customer's most frequent cohort, for revenue that no usage row carries.
        SELECT customer, argMax(cohort, calls) AS cohort
        FROM
        (
            SELECT customer, cohort, sum(calls) AS calls
            FROM $database.llm_calls_daily
            WHERE customer GLOBAL IN (SELECT customer FROM events)
            GROUP BY customer, cohort
        )
        GROUP BY customer
    ),
    allocated AS
    (
        -- Every period as parallel arrays of parts and amounts. amount * weight / total is
        -- computed in Decimal256 and truncated to 12 places; the last part takes the rounding
        -- remainder, so the parts add up to the amount exactly.
        SELECT
            event.customer AS customer, event.tier AS tier, event.period_start AS period_start,
            event.period_days AS period_days,
            if(empty(shares.parts),
               [(if(event.feature = '', 'unattributed', event.feature), cohorts.cohort)],
               shares.parts) AS parts,
            if(empty(shares.parts),
               [event.amount_usd],
               arrayMap(weight -> toDecimal128(toDecimal256(event.amount_usd, 12) * weight / shares.total_weight, 12),
                        shares.weights)) AS rounded,
            arrayPushBack(arrayPopBack(rounded), event.amount_usd - arraySum(arrayPopBack(rounded))) AS amounts
        FROM events AS event
        LEFT JOIN shares
            ON shares.customer = event.customer AND shares.period_start = event.period_start
           AND shares.period_end = event.period_end AND event.feature = ''
        LEFT JOIN cohorts ON cohorts.customer = event.customer
    ),
    subscription AS
    (
        -- Spread evenly over the period's days, the last day taking the rounding remainder.
        -- Only the days inside start..end are produced.
        SELECT
            period_start + offset AS day, customer, part.1 AS feature, tier, part.2 AS cohort,
            if(offset + 1 = period_days, amount - per_day * (period_days - 1), per_day) AS subscription_revenue_usd
        FROM
        (
            SELECT customer, tier, period_start, period_days, part, amount,
                   toDecimal128(amount / period_days, 12) AS per_day
            FROM allocated
            ARRAY JOIN parts AS part, amounts AS amount
        )
        ARRAY JOIN range(
            toUInt32(greatest(dateDiff('day', period_start, {start:Date}), 0)),
            toUInt32(least(dateDiff('day', period_start, {end:Date}) + 1, period_days))) AS offset
    )
-- Facts, not groups: a (day, customer, feature, tier, cohort) may have several rows (usage
-- and subscription, and rollup rows not merged yet). Always sum.
SELECT
    day, customer, feature, tier, cohort, calls, priced_calls, unpriced_calls, error_calls, cost_usd,
    revenue_usd AS usage_revenue_usd, toDecimal128(0, 12) AS subscription_revenue_usd,
    revenue_usd, revenue_usd - cost_usd AS margin_usd
FROM $database.llm_calls_daily
WHERE day >= {start:Date} AND day <= {end:Date}
UNION ALL
SELECT
    day, customer, feature, tier, cohort, 0, 0, 0, 0, toDecimal128(0, 12),
    toDecimal128(0, 12), subscription_revenue_usd,
    subscription_revenue_usd, subscription_revenue_usd
FROM subscription
