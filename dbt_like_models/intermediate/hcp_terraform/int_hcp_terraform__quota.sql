{{ config(materialized='view') }}

-- HCP Terraform's side of marts.fct_quota: the managed-resources limit of each observed
-- subscription (the contract's, else the free tier's monthly one; null = no cap, unlimited).
-- Organizations without a visible subscription have no quota row. agents and users have a
-- limit but no usage on the endpoints pulled, so they are not contributed here.

with

subscriptions as (

    select * from {{ source('staging', 'stg_hcp_terraform__subscriptions') }}
    where has_subscription

),

final as (

    select
        snapshot_id,
        'hcp_terraform' as vendor,
        account_id,
        'managed_resources' as unit,
        start_at as period_start,
        end_at as period_end,
        cast(managed_resources_limit as bigint) as included,   -- null = unlimited
        observed_at,
        loaded_at,
        partition_key
    from subscriptions

)

select * from final
