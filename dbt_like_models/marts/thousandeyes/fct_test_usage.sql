{{ config(materialized='incremental', unique_key=['partition_key']) }}

-- Cloud units per ThousandEyes test at each observation, in the customer's own billing period.
-- Incremental by tick: a run re-reads every tick staged since the last build (with the
-- macro's look-back) and replaces that tick's rows whole, so a re-pulled tick leaves only its
-- latest snapshot, tests that disappeared from it included. The grain (snapshot × account
-- group × test) is tested in _models.yml.

with

{{ thousandeyes_tick_ctes('stg_thousandeyes__tests', 'tests') }},

final as (

    select
        ---------- keys
        tests.snapshot_id,
        tests.account_id,
        tests.aid,
        tests.test_id,
        ---------- names
        usage.org_id,
        tests.account_group_name,
        tests.test_name,
        tests.test_type,
        ---------- period
        usage.period_start,
        usage.period_end,
        ---------- numbers
        tests.cloud_units_used,
        tests.cloud_units_projected,          -- null: a new test, projection not calculated yet
        ---------- lineage
        tests.observed_at,
        tests.loaded_at,
        tests.partition_key
    from tests
    inner join usage
        on usage.snapshot_id = tests.snapshot_id

)

select * from final
