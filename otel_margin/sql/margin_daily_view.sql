-- The margin waterfall per day, customer, feature, tier, cohort, model and unit kind, for the
-- days start..end: every margin view sums this. A parameterised view:
--   SELECT ... FROM margin_daily(allocate_by = 'calls', start = '2026-12-01', end = '2026-12-31', by_day = 1,
--                                value_features = [], value_weights = [], ai_tiers = [], ai_share_pcts = [])
-- by_day = 0 is for a query that does not group or filter by day: each allocated part is then one
-- row (its days in start..end summed, on the first of them) instead of a row per day: the same
-- sums at every other level, far fewer rows.
--
-- Revenue = usage revenue on the calls (a failed call earns none) + outcome revenue (outcomes
-- FINAL, on the outcome's day, attributed like its unit) + subscription revenue (revenue_events).
-- Cost of goods = inference (LLM calls other than embeddings) + orchestration (embedding calls,
-- orchestration cost lines) + infrastructure + support (cost lines), each plus the period costs
-- (period_costs) allocated to it. Cost lines and period costs of category 'inference' count as
-- inference. Unpriced calls are counted, never priced at 0 USD.
--
-- Allocation (docs/margin.md "Allocation"). A subscription row without a feature counts only its
-- AI share (ai_share_pcts of its tier, by ai_tiers; 100 % for a tier not listed) and is split over
-- what its customer used in its period; a row with a feature over that feature's usage; a period
-- cost over the usage that matches what it names (an empty feature, customer or tier matches
-- any). Parts are (customer, feature, tier, cohort, unit kind), not models (allocated amounts have
-- model ''); a subscription keeps the tier of its row. The weight of a part is allocate_by:
-- 'calls' (inference calls, the default), 'cost' (priced cost of its calls), 'tokens' (input +
-- output), 'value' (inference calls times the feature's value weight, by value_features /
-- value_weights, 1 when not listed; period costs follow inference calls). A weight of 0 over the
-- whole period falls back to all calls, and no usage at all leaves the amount on its own feature
-- ('unattributed' when empty), customer and tier, with the customer's most frequent cohort. Each part is amount * weight / total weight
-- in Decimal256 truncated to 12 places, the last part taking the remainder; each part is spread
-- evenly over the period's days, the last day taking the remainder: everything adds up exactly.
--
-- The calls' side reads llm_calls_waterfall_daily, the allocation weights llm_calls_parts_daily
-- (the same without model; per month from its by_month projection for a period of whole calendar
-- months, the same sums in far fewer rows). Only periods that overlap start..end are split (over
-- their whole period), and only the rollup rows of those periods are read: the cost of a query
-- follows the range asked for.
CREATE OR REPLACE VIEW $database.margin_daily$on_cluster AS
WITH
    mapFromArrays({value_features:Array(String)}, {value_weights:Array(Decimal(38, 12))}) AS value_weight_of,
    mapFromArrays({ai_tiers:Array(String)}, {ai_share_pcts:Array(Decimal(38, 12))}) AS ai_share_of,
    revenue_amounts AS
    (
        -- Subscription revenue to allocate: its AI share.
        SELECT
            'revenue' AS kind, customer, feature, tier, period_start, period_end,
            if(feature = '' AND mapContains(ai_share_of, toString(tier)),
               toDecimal128(toDecimal256(amount_usd, 12) * ai_share_of[toString(tier)] / 100, 12),
               amount_usd) AS amount_usd,
            toUInt32(dateDiff('day', period_start, period_end) + 1) AS period_days,
            toStartOfMonth(period_start) = period_start AND toLastDayOfMonth(period_end) = period_end AS whole_months
        FROM $database.revenue_events FINAL
        WHERE period_end >= {start:Date} AND period_start <= {end:Date}
    ),
    cost_amounts AS
    (
        -- Period costs to allocate, whole.
        SELECT
            toString(category) AS kind, customer, feature, tier, period_start, period_end, amount_usd,
            toUInt32(dateDiff('day', period_start, period_end) + 1) AS period_days,
            toStartOfMonth(period_start) = period_start AND toLastDayOfMonth(period_end) = period_end AS whole_months
        FROM $database.period_costs FINAL
        WHERE period_end >= {start:Date} AND period_start <= {end:Date}
    ),
    amounts AS
    (
        SELECT * FROM revenue_amounts
        UNION ALL
        SELECT * FROM cost_amounts
    ),
    (SELECT (min(period_start), max(period_end)) FROM amounts WHERE NOT whole_months) AS day_range,
    (SELECT (min(period_start), max(period_end)) FROM amounts WHERE whole_months) AS month_range,
    usage AS
    (
        -- The parts' weights (llm_calls_parts_daily: no model; what a seat or a GPU pays for is
        -- not a model): per day (monthly = 0) for the amounts whose period is not whole calendar
        -- months, per month (monthly = 1, on the month's first day) for those whose period is —
        -- most subscriptions and bills —, read from the table's by_month projection: a month's
        -- 48,000 rows instead of 1.44 M at 10 M calls. A period's sums are the same either way.
        -- revenue_weight differs under 'value' only.
        SELECT
            monthly, day, customer, feature, tier, cohort, unit_kind, calls,
            multiIf({allocate_by:String} = 'cost', cost_usd,
                    {allocate_by:String} = 'tokens', toDecimal128(tokens, 12),
                    toDecimal128(inference_calls, 12)) AS weight,
            if({allocate_by:String} = 'value',
               toDecimal128(toDecimal256(inference_calls, 12)
                            * if(mapContains(value_weight_of, toString(feature)),
                                 value_weight_of[toString(feature)], toDecimal128(1, 12)), 12),
               weight) AS revenue_weight
        FROM
        (
            SELECT 0 AS monthly, day, customer, feature, tier, cohort, unit_kind, calls, inference_calls, tokens, cost_usd
            FROM $database.llm_calls_parts_daily
            WHERE day >= day_range.1 AND day <= day_range.2
            UNION ALL
            SELECT 1, toStartOfMonth(day) AS month, customer, feature, tier, cohort, unit_kind,
                   sum(calls), sum(inference_calls), sum(tokens), sum(cost_usd)
            FROM $database.llm_calls_parts_daily
            WHERE toStartOfMonth(day) >= month_range.1 AND toStartOfMonth(day) <= month_range.2
            GROUP BY month, customer, feature, tier, cohort, unit_kind
        )
    ),
    used AS
    (
        -- The usage each amount is split over, per part. Revenue meets its customer's rows by an
        -- equi-join on customer, the few revenue rows on the right (the side ClickHouse builds its
        -- hash table of); a period cost (few rows) meets every row of its period.
        SELECT
            kind, amount.customer AS customer, amount.feature AS feature, amount.tier AS tier,
            period_start, period_end,
            (usage.customer, toString(usage.feature), toString(amount.tier),
             toString(usage.cohort), toString(usage.unit_kind)) AS part,
            sum(usage.revenue_weight) AS weight,
            sum(usage.calls) AS calls
        FROM usage
        INNER JOIN revenue_amounts AS amount ON usage.customer = amount.customer
        WHERE usage.monthly = amount.whole_months AND usage.day >= amount.period_start AND usage.day <= amount.period_end
          AND (amount.feature = '' OR usage.feature = amount.feature)
        GROUP BY kind, customer, feature, tier, period_start, period_end, part
        UNION ALL
        SELECT
            kind, amount.customer, amount.feature, amount.tier, period_start, period_end,
            (usage.customer, toString(usage.feature), toString(usage.tier),
             toString(usage.cohort), toString(usage.unit_kind)),
            sum(usage.weight),
            sum(usage.calls)
        FROM cost_amounts AS amount
        CROSS JOIN usage
        WHERE usage.monthly = amount.whole_months AND usage.day >= amount.period_start AND usage.day <= amount.period_end
          AND (amount.feature = '' OR usage.feature = amount.feature)
          AND (amount.customer = '' OR usage.customer = amount.customer)
          AND (amount.tier = '' OR usage.tier = amount.tier)
        GROUP BY kind, amount.customer, amount.feature, amount.tier, period_start, period_end, usage.customer,
                 usage.feature, usage.tier, usage.cohort, usage.unit_kind
    ),
    shares AS
    (
        -- One row per amount with usage: its parts in order and their weights.
        SELECT
            kind, customer, feature, tier, period_start, period_end,
            arraySort(groupArray((part, weight, calls))) AS used_parts,
            arrayMap(x -> x.1, used_parts) AS parts,
            if(sum(weight) = 0,
               arrayMap(x -> toDecimal128(x.3, 12), used_parts),
               arrayMap(x -> x.2, used_parts)) AS weights,
            arraySum(weights) AS total_weight
        FROM used
        GROUP BY kind, customer, feature, tier, period_start, period_end
    ),
    cohorts AS
    (
        -- The customer's most frequent cohort, for an amount that no usage row carries.
        SELECT customer, argMax(cohort, calls) AS cohort
        FROM
        (
            SELECT customer, cohort, sum(calls) AS calls
            FROM $database.llm_calls_daily
            WHERE customer GLOBAL IN (SELECT customer FROM amounts WHERE customer != '')
            GROUP BY customer, cohort
        )
        GROUP BY customer
    ),
    allocated AS
    (
        SELECT
            amount.kind AS kind, amount.period_start AS period_start, amount.period_days AS period_days,
            if(empty(shares.parts),
               [(toString(amount.customer), if(amount.feature = '', 'unattributed', toString(amount.feature)),
                 toString(amount.tier), toString(cohorts.cohort), '')],
               shares.parts) AS parts,
            if(empty(shares.parts),
               [amount.amount_usd],
               arrayMap(weight -> toDecimal128(toDecimal256(amount.amount_usd, 12) * weight / shares.total_weight, 12),
                        shares.weights)) AS rounded,
            arrayPushBack(arrayPopBack(rounded), amount.amount_usd - arraySum(arrayPopBack(rounded))) AS amounts
        FROM amounts AS amount
        LEFT JOIN shares
            ON shares.kind = amount.kind AND shares.customer = amount.customer AND shares.feature = amount.feature
           AND shares.tier = amount.tier AND shares.period_start = amount.period_start
           AND shares.period_end = amount.period_end
        LEFT JOIN cohorts ON cohorts.customer = amount.customer
    ),
    spread AS
    (
        -- Each part spread evenly over the period's days, the last day taking the rounding
        -- remainder; only the days inside start..end count. by_day = 1: a row per day; by_day = 0:
        -- one row per part holding the sum of its days in start..end, on the first of them.
        SELECT
            period_start + offset AS day, kind, part,
            if({by_day:UInt8},
               if(offset + 1 = period_days, amount - per_day * (period_days - 1), per_day),
               per_day * (last_offset - first_offset)
                   + if(last_offset = period_days, amount - per_day * period_days, toDecimal128(0, 12))) AS amount_usd
        FROM
        (
            SELECT kind, period_start, period_days, part, amount, toDecimal128(amount / period_days, 12) AS per_day,
                   toUInt32(greatest(dateDiff('day', period_start, {start:Date}), 0)) AS first_offset,
                   toUInt32(least(dateDiff('day', period_start, {end:Date}) + 1, period_days)) AS last_offset
            FROM allocated
            ARRAY JOIN parts AS part, amounts AS amount
        )
        ARRAY JOIN if({by_day:UInt8}, range(first_offset, last_offset), [first_offset]) AS offset
    ),
    unattributed AS
    (
        -- Units with an outcome recorded outside any attribution (any version: a superset is enough).
        SELECT unit_id, toDate(timestamp) AS day
        FROM $database.outcomes
        WHERE feature = 'unattributed' AND toDate(timestamp) >= {start:Date} AND toDate(timestamp) <= {end:Date}
    ),
    unattributed_outcomes AS
    (
        -- The live versions of those units' outcomes (their unit_ids pick the granules to read), still
        -- recorded outside any attribution: these alone are joined to their units' calls below; every
        -- other outcome row passes through without a join (joining all of them took 0.14 s of the
        -- dashboard's pass over 10 M calls even with nothing to look up).
        SELECT toDate(timestamp) AS day, unit_id, unit_kind, feature, customer, tier, cohort,
               ifNull(revenue_usd, toDecimal128(0, 12)) AS revenue_usd
        FROM $database.outcomes FINAL
        WHERE unit_id GLOBAL IN (SELECT unit_id FROM unattributed)
          AND toDate(timestamp) >= {start:Date} AND toDate(timestamp) <= {end:Date}
          AND feature = 'unattributed'
    ),
    (SELECT (min(day), max(day)) FROM unattributed) AS unattributed_days,
    unit_attribution AS
    (
        -- For an outcome recorded outside any attribution (feature 'unattributed'): the unit's first
        -- call that has each value, among its calls of the 30 days up to the last such outcome's day
        -- (none read when every outcome is attributed).
        SELECT
            unit_id,
            argMinIf(toString(feature), timestamp, feature != 'unattributed') AS feature,
            argMinIf(customer, timestamp, customer != '') AS customer,
            argMinIf(toString(tier), timestamp, tier != '') AS tier,
            argMinIf(toString(cohort), timestamp, cohort != '') AS cohort,
            argMinIf(toString(unit_kind), timestamp, unit_kind != '') AS unit_kind
        FROM $database.llm_calls
        WHERE toDate(timestamp) >= unattributed_days.1 - 30 AND toDate(timestamp) <= unattributed_days.2
          AND unit_id GLOBAL IN (SELECT unit_id FROM unattributed)
        GROUP BY unit_id
    )
-- Facts, not groups: a (day, customer, feature, tier, cohort, model, unit_kind) may have several
-- rows (calls, cost lines, outcomes, allocations, rollup rows not merged yet). Always sum.
SELECT
    day, customer, feature, tier, cohort, model, unit_kind,
    calls, priced_calls, unpriced_calls, error_calls, inference_calls,
    revenue_usd AS usage_revenue_usd, toDecimal128(0, 12) AS outcome_revenue_usd,
    toDecimal128(0, 12) AS subscription_revenue_usd, revenue_usd AS revenue_usd,
    inference_usd, orchestration_usd, toDecimal128(0, 12) AS infrastructure_usd, toDecimal128(0, 12) AS support_usd,
    inference_usd + orchestration_usd AS cost_usd, revenue_usd - cost_usd AS margin_usd
FROM $database.llm_calls_waterfall_daily
WHERE day >= {start:Date} AND day <= {end:Date}
UNION ALL
SELECT
    toDate(timestamp), customer, toString(feature), toString(tier), toString(cohort), '', toString(unit_kind),
    0, 0, 0, 0, 0,
    toDecimal128(0, 12), toDecimal128(0, 12), toDecimal128(0, 12), toDecimal128(0, 12),
    if(category = 'inference', amount_usd, toDecimal128(0, 12)),
    if(category = 'orchestration', amount_usd, toDecimal128(0, 12)),
    if(category = 'infrastructure', amount_usd, toDecimal128(0, 12)),
    if(category = 'support', amount_usd, toDecimal128(0, 12)),
    amount_usd, -amount_usd
FROM $database.cost_lines
WHERE toDate(timestamp) >= {start:Date} AND toDate(timestamp) <= {end:Date}
UNION ALL
SELECT
    toDate(timestamp), customer, toString(feature), toString(tier), toString(cohort), '', toString(unit_kind),
    0, 0, 0, 0, 0,
    toDecimal128(0, 12), ifNull(revenue_usd, toDecimal128(0, 12)), toDecimal128(0, 12), ifNull(revenue_usd, toDecimal128(0, 12)),
    toDecimal128(0, 12), toDecimal128(0, 12), toDecimal128(0, 12), toDecimal128(0, 12),
    toDecimal128(0, 12), ifNull(revenue_usd, toDecimal128(0, 12))
FROM $database.outcomes FINAL
WHERE toDate(timestamp) >= {start:Date} AND toDate(timestamp) <= {end:Date}
  AND feature != 'unattributed'
UNION ALL
SELECT
    outcome.day,
    if(outcome.customer != '' OR unit.customer = '', outcome.customer, unit.customer),
    if(unit.feature = '', toString(outcome.feature), unit.feature),
    if(outcome.tier != '' OR unit.tier = '', toString(outcome.tier), unit.tier),
    if(outcome.cohort != '' OR unit.cohort = '', toString(outcome.cohort), unit.cohort),
    '',
    if(outcome.unit_kind != '' OR unit.unit_kind = '', toString(outcome.unit_kind), unit.unit_kind),
    0, 0, 0, 0, 0,
    toDecimal128(0, 12), outcome.revenue_usd, toDecimal128(0, 12), outcome.revenue_usd,
    toDecimal128(0, 12), toDecimal128(0, 12), toDecimal128(0, 12), toDecimal128(0, 12),
    toDecimal128(0, 12), outcome.revenue_usd
FROM unattributed_outcomes AS outcome
LEFT JOIN unit_attribution AS unit ON unit.unit_id = outcome.unit_id
UNION ALL
SELECT
    day, part.1, part.2, part.3, part.4, '', part.5,
    0, 0, 0, 0, 0,
    toDecimal128(0, 12), toDecimal128(0, 12),
    if(kind = 'revenue', amount_usd, toDecimal128(0, 12)), if(kind = 'revenue', amount_usd, toDecimal128(0, 12)),
    if(kind = 'inference', amount_usd, toDecimal128(0, 12)),
    if(kind = 'orchestration', amount_usd, toDecimal128(0, 12)),
    if(kind = 'infrastructure', amount_usd, toDecimal128(0, 12)),
    if(kind = 'support', amount_usd, toDecimal128(0, 12)),
    if(kind = 'revenue', toDecimal128(0, 12), amount_usd),
    if(kind = 'revenue', amount_usd, -amount_usd)
FROM spread
