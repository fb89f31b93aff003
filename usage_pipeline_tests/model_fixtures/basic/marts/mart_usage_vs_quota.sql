{{ config(materialized='table') }}

-- Exercises the DuckDB constructs that must also run on PostgreSQL: qualify, date_trunc,
-- interval arithmetic, ::casts, coalesce, greatest, window functions, count(*) filter, date_diff.

with

usage as (

    select * from {{ ref('fct_units_used') }}
    qualify row_number() over (
        partition by account_id, unit, date_trunc('day', observed_at)
        order by observed_at desc, snapshot_id desc
    ) = 1

),

quota as (

    select * from {{ ref('fct_quota') }}
    qualify row_number() over (partition by account_id, unit, period_start order by observed_at desc) = 1

),

joined as (

    select
        usage.account_id,
        usage.unit,
        cast(date_trunc('day', usage.observed_at) as date) as day,
        usage.used,
        usage.projected,
        quota.included,
        usage.period_end
    from usage
    left join quota
        on quota.account_id = usage.account_id
        and quota.unit = usage.unit
        and quota.period_start = usage.period_start

),

final as (

    select
        ---------- keys
        day,
        account_id,
        unit,
        ---------- numbers
        used,
        coalesce(projected, used) as projected,
        included,
        {{ share('used', 'included') }} as share_used,
        (used - lag(used) over (partition by account_id, unit order by day))::bigint as used_change,
        count(*) filter (where used > 0) over (partition by account_id, unit) as days_with_usage,
        ---------- status
        case
            when included is null then 'no_quota'
            when used > included then 'over'
            when greatest(used, coalesce(projected, 0)) >= included * {{ var('at_risk_share', 0.8) }} then 'at_risk'
            else 'ok'
        end as status,
        date_diff('day', day, cast(period_end as date)) as days_left,
        cast(day + interval 1 day as date) as next_day
    from joined

)

select * from final
