-- Which ThousandEyes tests used the most cloud units in the current billing period?
-- Reads each organization context's latest snapshot (cloud_units_used is the period to date),
-- so the numbers are this period's, and ranks tests across all account groups.
with latest_snapshot as (
    select account_id, snapshot_id
    from (
        select
            account_id,
            snapshot_id,
            row_number() over (partition by account_id order by observed_at desc, snapshot_id desc) as position
        from marts.fct_test_usage
    ) as ranked
    where position = 1
)

select
    tests.aid,
    tests.account_group_name,
    tests.test_id,
    tests.test_name,
    tests.test_type,
    tests.cloud_units_used,
    tests.cloud_units_projected,
    round(100.0 * tests.cloud_units_used / nullif(sum(tests.cloud_units_used) over (partition by tests.account_id), 0), 1)
        as percent_of_account,
    tests.period_start,
    tests.period_end,
    tests.observed_at
from marts.fct_test_usage as tests
inner join latest_snapshot
    on latest_snapshot.account_id = tests.account_id
    and latest_snapshot.snapshot_id = tests.snapshot_id
order by tests.cloud_units_used desc, tests.aid, tests.test_id
limit 25
