{{ config(materialized='view') }}

-- When each place an entitlement can come from was actually seen: one row per organization
-- (external id, so renames keep their history) × value source × daily tick at which that
-- source answered HTTP 200. The subscription endpoint answers for the subscription and for
-- its feature set; a 404 there is "unknown", so it is no observation of either.

with

subscriptions as (

    select * from {{ source('staging', 'stg_hcp_terraform__subscriptions') }}

),

fetches as (

    select * from {{ source('staging', 'stg_hcp_terraform__fetches') }}

),

observed as (

    select organization_external_id, 'subscription' as value_source, account_id, partition_key, snapshot_id, observed_at
    from subscriptions
    where http_status = 200

    union all

    select organization_external_id, 'feature_set' as value_source, account_id, partition_key, snapshot_id, observed_at
    from subscriptions
    where http_status = 200 and feature_set_included

    union all

    select organization_external_id, 'entitlement_set' as value_source, account_id, partition_key, snapshot_id, observed_at
    from fetches
    where endpoint = 'entitlement_set' and http_status = 200

),

ranked as (

    -- a rename within one tick can land two batches for one organization: keep the later
    select
        observed.*,
        row_number() over (
            partition by organization_external_id, value_source, partition_key
            order by observed_at desc, snapshot_id desc
        ) as position
    from observed

),

final as (

    select
        ---------- keys
        ranked.organization_external_id,
        ranked.value_source,
        ranked.partition_key,
        cast(ranked.partition_key as date) as tick_date,
        ---------- lineage
        ranked.account_id,
        ranked.snapshot_id,
        ranked.observed_at,
        ---------- the subscription and plan in force at that tick (null when not visible)
        subscriptions.subscription_id,
        subscriptions.feature_set_id,
        subscriptions.feature_set_name
    from ranked
    left join subscriptions
        on subscriptions.account_id = ranked.account_id
        and subscriptions.partition_key = ranked.partition_key
        and subscriptions.has_subscription
    where ranked.position = 1

)

select * from final
