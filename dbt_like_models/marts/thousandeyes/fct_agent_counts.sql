{{ config(materialized='incremental', unique_key=['partition_key']) }}

-- Agents used per ThousandEyes account group and agent class at each observation: the
-- vendor's maximum number enabled in any one hour of the billing period so far. Incremental
-- by tick, as fct_test_usage.

with

{{ thousandeyes_tick_ctes('stg_thousandeyes__agent_counts', 'counts') }},

final as (

    select
        ---------- keys
        counts.snapshot_id,
        counts.account_id,
        counts.aid,
        counts.agent_class,
        ---------- names
        usage.org_id,
        counts.account_group_name,
        ---------- period
        usage.period_start,
        usage.period_end,
        ---------- numbers
        counts.agents_used,
        ---------- lineage
        counts.observed_at,
        counts.loaded_at,
        counts.partition_key
    from counts
    inner join usage
        on usage.snapshot_id = counts.snapshot_id

)

select * from final
