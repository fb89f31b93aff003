{{ config(materialized='incremental', unique_key=['partition_key']) }}

-- Enterprise units per ThousandEyes enterprise agent at each observation (metered billing),
-- in the customer's own billing period. agent_id may be missing (2025-10 spec) and vagent_id
-- exists only in older payloads; agent_key is never null. Incremental by tick, as
-- fct_test_usage.

with

{{ thousandeyes_tick_ctes('stg_thousandeyes__agent_units', 'agents') }},

final as (

    select
        ---------- keys
        agents.snapshot_id,
        agents.account_id,
        agents.aid,
        agents.agent_key,
        ---------- names
        usage.org_id,
        agents.account_group_name,
        agents.agent_id,                      -- null when the vendor omits it
        agents.vagent_id,                     -- null outside pre-2025-10 payloads
        agents.agent_name,
        ---------- period
        usage.period_start,
        usage.period_end,
        ---------- numbers
        agents.enterprise_units_used,
        agents.enterprise_units_projected,
        ---------- lineage
        agents.observed_at,
        agents.loaded_at,
        agents.partition_key
    from agents
    inner join usage
        on usage.snapshot_id = agents.snapshot_id

)

select * from final
