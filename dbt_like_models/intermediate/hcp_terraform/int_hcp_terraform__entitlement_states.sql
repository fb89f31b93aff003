{{ config(materialized='view') }}

-- Every entitlement key an organization ever had from a value source, at every tick that
-- source was observed: present with its value, or absent (is_present false). This dense grid
-- is what the interval model walks, so "gone" (observed without the key) and "not seen"
-- (no observation at that tick) stay different things.

with

observations as (

    select * from {{ ref('int_hcp_terraform__observations') }}

),

entitlements as (

    select * from {{ source('staging', 'stg_hcp_terraform__entitlements') }}

),

entitlement_keys as (

    select distinct organization_external_id, value_source, entitlement_key
    from entitlements

),

grid as (

    select
        entitlement_keys.organization_external_id,
        entitlement_keys.value_source,
        entitlement_keys.entitlement_key,
        observations.partition_key,
        observations.tick_date,
        observations.observed_at,
        observations.snapshot_id,
        observations.subscription_id,
        observations.feature_set_id,
        observations.feature_set_name
    from entitlement_keys
    inner join observations
        on observations.organization_external_id = entitlement_keys.organization_external_id
        and observations.value_source = entitlement_keys.value_source

),

final as (

    select
        ---------- keys
        grid.organization_external_id,
        grid.value_source,
        grid.entitlement_key,
        grid.partition_key,
        grid.tick_date,
        ---------- lineage
        grid.snapshot_id,
        grid.observed_at,
        ---------- context
        grid.subscription_id,
        grid.feature_set_id,
        grid.feature_set_name,
        ---------- value
        entitlements.snapshot_id is not null as is_present,
        entitlements.value_type,
        entitlements.enabled,
        entitlements.limit_value,
        entitlements.is_unlimited
    from grid
    left join entitlements
        on entitlements.snapshot_id = grid.snapshot_id
        and entitlements.organization_external_id = grid.organization_external_id
        and entitlements.value_source = grid.value_source
        and entitlements.entitlement_key = grid.entitlement_key

)

select * from final
