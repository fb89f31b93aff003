-- Which accounts are over their plan or about to be, by how much, and when will they run out?
-- The latest value of every vendor × account × unit whose status is over or at_risk, worst first.
select
    usage.status,
    usage.vendor,
    usage.account_id,
    accounts.account_name,
    usage.unit,
    usage.used,
    usage.included,
    round(cast(100 * usage.share_used as numeric), 1) as percent_used,
    usage.projected,
    usage.burn_rate_per_day,
    usage.forecast_exhausted_date,
    usage.period_end,
    usage.observed_at
from marts.mart_usage_vs_quota as usage
left join marts.dim_accounts as accounts
    on accounts.vendor = usage.vendor
    and accounts.account_id = usage.account_id
where usage.is_latest
  and usage.status in ('over', 'at_risk')
order by case usage.status when 'over' then 0 else 1 end, usage.share_used desc, usage.vendor, usage.account_id, usage.unit
