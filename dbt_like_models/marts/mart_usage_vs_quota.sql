{{ config(materialized='table') }}

-- Usage against the plan, one value a day: the day's last snapshot (by observed_at, then
-- snapshot_id). A billing period that rolls over during a day gives that day two rows: the
-- old period's final value and the new period's latest, so the grain carries period_start.
--
-- The quota of a row is the latest quota observed on or before that day, preferring the same
-- billing period (a missing quota pull carries the last known plan forward).
--
-- Forecast (documented in _models.yml): burn rate = (used - used at the period's first
-- snapshot) / days elapsed between the two; the quota is exhausted when it is used up at that
-- rate, if that happens before period_end. Flat or falling usage has no exhaustion date.

with

units_used as (

    select * from {{ ref('fct_units_used') }}

),

quota as (

    select * from {{ ref('fct_quota') }}

),

usage_snapshots as (

    select
        snapshot_id,
        vendor,
        account_id,
        unit,
        period_start,
        period_end,
        used,
        projected,
        next_period_projected,
        observed_at,
        cast(observed_at as date) as usage_date,
        first_value(used) over (
            partition by vendor, account_id, unit, period_start
            order by observed_at, snapshot_id
            rows between unbounded preceding and unbounded following
        ) as period_first_used,
        first_value(observed_at) over (
            partition by vendor, account_id, unit, period_start
            order by observed_at, snapshot_id
            rows between unbounded preceding and unbounded following
        ) as period_first_observed_at,
        row_number() over (
            partition by vendor, account_id, unit, period_start, cast(observed_at as date)
            order by observed_at desc, snapshot_id desc
        ) as day_rank,
        row_number() over (
            partition by vendor, account_id, unit, period_start
            order by observed_at desc, snapshot_id desc
        ) as period_rank,
        row_number() over (
            partition by vendor, account_id, unit
            order by observed_at desc, snapshot_id desc
        ) as latest_rank,
        max(period_start) over (partition by vendor, account_id, unit) as latest_period_start,
        max(observed_at) over (partition by vendor) as vendor_last_observed_at
    from units_used

),

usage_days as (

    select * from usage_snapshots
    where day_rank = 1

),

quota_days as (

    select
        snapshot_id,
        vendor,
        account_id,
        unit,
        period_start,
        included,
        cast(observed_at as date) as quota_date,
        row_number() over (
            partition by vendor, account_id, unit, period_start, cast(observed_at as date)
            order by observed_at desc, snapshot_id desc
        ) as day_rank
    from quota

),

quota_candidates as (

    select
        usage_days.snapshot_id as usage_snapshot_id,
        usage_days.vendor,
        usage_days.account_id,
        usage_days.unit,
        usage_days.period_start,
        usage_days.usage_date,
        quota_days.snapshot_id as quota_snapshot_id,
        quota_days.included,
        row_number() over (
            partition by usage_days.vendor, usage_days.account_id, usage_days.unit,
                usage_days.period_start, usage_days.usage_date
            order by
                case when quota_days.period_start is not distinct from usage_days.period_start then 0 else 1 end,
                quota_days.quota_date desc,
                quota_days.snapshot_id desc
        ) as quota_rank
    from usage_days
    inner join quota_days
        on quota_days.vendor = usage_days.vendor
        and quota_days.account_id = usage_days.account_id
        and quota_days.unit = usage_days.unit
        and quota_days.quota_date <= usage_days.usage_date
        and quota_days.day_rank = 1

),

quota_in_force as (

    select * from quota_candidates
    where quota_rank = 1

),

joined as (

    select
        usage_days.*,
        quota_in_force.quota_snapshot_id,
        quota_in_force.included,
        quota_in_force.quota_snapshot_id is not null as has_quota,
        extract(epoch from usage_days.observed_at)
            - extract(epoch from usage_days.period_first_observed_at) as elapsed_s,
        usage_days.used - usage_days.period_first_used as used_since_first
    from usage_days
    left join quota_in_force
        on quota_in_force.vendor = usage_days.vendor
        and quota_in_force.account_id = usage_days.account_id
        and quota_in_force.unit = usage_days.unit
        and quota_in_force.period_start is not distinct from usage_days.period_start
        and quota_in_force.usage_date = usage_days.usage_date

),

forecast as (

    select
        *,
        case
            when elapsed_s > 0 and used_since_first > 0
                then used_since_first * 86400.0 / elapsed_s
        end as burn_rate_per_day,
        case
            when included is null or used >= included or elapsed_s <= 0 or used_since_first <= 0 then null
            -- beyond ~10 years the date is meaningless (and overflows interval arithmetic): no date
            when (included - used) * elapsed_s / used_since_first > 315360000 then null
            -- whole seconds, rounded up: a float a hair below midnight must not move the date back
            else observed_at
                + cast(ceil((included - used) * elapsed_s / used_since_first) as bigint) * interval 1 second
        end as forecast_exhausted_at,
        min(case when included > 0 and used >= included then usage_date end) over (
            partition by vendor, account_id, unit, period_start
            order by usage_date
            rows between unbounded preceding and current row
        ) as first_exhausted_date
    from joined

),

classified as (

    select
        *,
        case when included > 0 then cast(used as double) / included end as share_used,
        case when included > 0 then cast(projected as double) / included end as share_projected,
        case
            when included is null or included = 0 then null        -- nothing to run out of
            when used >= included then first_exhausted_date
            when period_end is null or forecast_exhausted_at < period_end then cast(forecast_exhausted_at as date)
        end as forecast_exhausted_date
    from forecast

),

final as (

    select
        ---------- keys
        usage_date,
        vendor,
        account_id,
        unit,
        ---------- period
        period_start,
        period_end,
        ---------- numbers
        used,
        projected,
        next_period_projected,
        included,                                                 -- null = unlimited or no quota
        share_used,
        share_projected,
        burn_rate_per_day,
        ---------- status
        case
            when not has_quota then 'no_quota'
            when included is null then 'ok'
            when used > included then 'over'
            when included > 0 and share_used >= {{ var('at_risk_share', 0.8) }} then 'at_risk'
            when projected > included then 'at_risk'
            -- runs out before the period ends; an open-ended period (no end date) only within the horizon
            when forecast_exhausted_date is not null
                and (period_end is not null
                     or forecast_exhausted_date <= usage_date + {{ var('at_risk_horizon_days', 30) }}) then 'at_risk'
            else 'ok'
        end as status,
        forecast_exhausted_date,
        ---------- flags
        has_quota,
        has_quota and included is null as is_unlimited,
        coalesce(
            period_rank = 1
            and (period_start < latest_period_start or period_end <= vendor_last_observed_at),
            false
        ) as is_period_final,
        latest_rank = 1 as is_latest,
        ---------- lineage
        observed_at,
        snapshot_id,
        quota_snapshot_id
    from classified

)

select * from final
