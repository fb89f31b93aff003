-- How fast is each account burning through its plan this billing period, and when will it run out?
-- One row per day of the current period for every vendor × account × unit with a limited
-- quota: quota left, the straight line to zero at period end, and the forecast exhaustion date.
with current_period as (
    select
        *,
        max(period_start) over (partition by vendor, account_id, unit) as latest_period_start
    from marts.mart_usage_vs_quota
    where included is not null
)

select
    vendor,
    account_id,
    unit,
    usage_date,
    used,
    included,
    included - used as remaining,
    round(cast(included * (1 - (extract(epoch from observed_at) - extract(epoch from period_start))
        / nullif(extract(epoch from period_end) - extract(epoch from period_start), 0)) as numeric), 0) as ideal_remaining,
    share_used,
    burn_rate_per_day,
    forecast_exhausted_date,
    status,
    period_start,
    period_end
from current_period
where period_start = latest_period_start or (period_start is null and latest_period_start is null)
order by vendor, account_id, unit, usage_date
