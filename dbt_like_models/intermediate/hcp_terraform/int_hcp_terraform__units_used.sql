{{ config(materialized='view') }}

-- HCP Terraform's side of marts.fct_units_used: resources under management, the sum of
-- current_rum_count over every workspace the explorer listed at the tick (0 when it listed
-- none). Ticks whose explorer call did not answer have no row. The period is the
-- subscription's where one is visible; the API gives no projection.

with

fetches as (

    select * from {{ source('staging', 'stg_hcp_terraform__fetches') }}
    where endpoint = 'explorer_workspaces' and http_status = 200

),

workspaces as (

    select * from {{ source('staging', 'stg_hcp_terraform__workspaces') }}

),

subscriptions as (

    select * from {{ source('staging', 'stg_hcp_terraform__subscriptions') }}
    where has_subscription

),

explorer_calls as (

    -- the first page's snapshot names the observation (snapshot ids sort like fetched_at)
    select
        account_id,
        partition_key,
        min(snapshot_id) as snapshot_id,
        min(observed_at) as observed_at,
        max(loaded_at) as loaded_at
    from fetches
    group by account_id, partition_key

),

resources as (

    select account_id, partition_key, sum(current_rum_count) as used
    from workspaces
    group by account_id, partition_key

),

final as (

    select
        explorer_calls.snapshot_id,
        'hcp_terraform' as vendor,
        explorer_calls.account_id,
        'managed_resources' as unit,
        subscriptions.start_at as period_start,
        subscriptions.end_at as period_end,
        cast(coalesce(resources.used, 0) as bigint) as used,
        cast(null as bigint) as projected,
        cast(null as bigint) as next_period_projected,
        explorer_calls.observed_at,
        explorer_calls.loaded_at,
        explorer_calls.partition_key
    from explorer_calls
    left join resources
        on resources.account_id = explorer_calls.account_id
        and resources.partition_key = explorer_calls.partition_key
    left join subscriptions
        on subscriptions.account_id = explorer_calls.account_id
        and subscriptions.partition_key = explorer_calls.partition_key

)

select * from final
