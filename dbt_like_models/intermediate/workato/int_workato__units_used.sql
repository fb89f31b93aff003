{{ config(materialized='view') }}

-- Workato's side of marts.fct_units_used: tasks used so far in the billing period (the
-- calendar month in the admin zone), one row per day window × workspace, from the unfiltered
-- pull (its totals include deleted recipes; the per-recipe pull does not).
--
-- used is cumulative: the period's tasks up to the end of this window, so the latest window
-- of a period carries the period's total and a series of windows is a burn-down.
-- observed_at is the instant that figure is true at: the window's end, or the fetch time
-- while the window is still open; the fetch time itself stays in staging (snapshot_id leads
-- there). loaded_at is the latest load of any window counted, so re-pulling an earlier day
-- re-selects every later row of the period in the incremental fct_units_used.
-- Workato gives no projection: projected and next_period_projected are null.

with

daily as (

    select * from {{ ref('int_workato__daily_usage') }}
    where grouping = 'workspace'

),

to_date as (

    select
        *,
        sum(tasks) over (
            partition by workspace_id, period_start
            order by window_start
            rows between unbounded preceding and current row
        ) as tasks_to_date,
        max(loaded_at) over (
            partition by workspace_id, period_start
            order by window_start
            rows between unbounded preceding and current row
        ) as loaded_at_to_date
    from daily

),

final as (

    select
        snapshot_id,
        'workato' as vendor,
        account_id,
        'tasks' as unit,
        period_start,
        period_end,
        cast(tasks_to_date as bigint) as used,
        cast(null as bigint) as projected,
        cast(null as bigint) as next_period_projected,
        least(window_end, observed_at) as observed_at,
        loaded_at_to_date as loaded_at,
        partition_key
    from to_date

)

select * from final
