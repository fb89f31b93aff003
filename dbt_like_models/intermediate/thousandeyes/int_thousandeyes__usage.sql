{{ config(materialized='view') }}

-- The organization-level ThousandEyes numbers of every snapshot staging holds: one row per
-- organization context and tick (staging keeps only each tick's latest complete pull, and
-- only one account per organization: duplicates are dropped when staging). The quota and
-- units models unpivot it; the reconciliation checks read it next to the per-test and
-- per-agent facts.

with

usage as (

    select * from {{ source('staging', 'stg_thousandeyes__usage') }}

),

final as (

    select
        ---------- keys
        snapshot_id,
        account_id,
        org_id,
        ---------- period
        period_start,
        period_end,
        period_zone_basis,
        period_zone_abbreviation,
        ---------- quota
        cloud_units_included,
        endpoint_agents_included,
        endpoint_agents_essentials_included,
        endpoint_agents_embedded_included,
        enterprise_agents_included,
        ---------- usage
        cloud_units_used,
        cloud_units_projected,
        cloud_units_next_period_projected,
        enterprise_units_used,
        enterprise_units_projected,
        enterprise_units_next_period_projected,
        endpoint_agents_used,
        endpoint_agents_essentials_used,
        endpoint_agents_embedded_used,
        enterprise_agents_used,
        ---------- flags
        has_test_breakdown,
        has_agent_unit_breakdown,
        api_version,
        ---------- lineage
        observed_at,
        loaded_at,
        partition_key
    from usage

)

select * from final
