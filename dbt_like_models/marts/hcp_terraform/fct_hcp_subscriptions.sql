{{ config(materialized='table') }}

-- What each tick saw of each organization's subscription and plan (feature set), with the
-- plan change spelled out: previous_feature_set_* is the last plan seen before this tick
-- (ticks where the subscription was not visible are skipped), so
--   select * from marts.fct_hcp_subscriptions where is_plan_change
-- lists every plan change. A 404 row is "no subscription, or not visible": a free
-- organization without one is normal, never an error.

with

subscriptions as (

    select * from {{ source('staging', 'stg_hcp_terraform__subscriptions') }}

),

organizations as (

    select * from {{ source('staging', 'stg_hcp_terraform__organizations') }}

),

current_names as (

    select organization_external_id, organization_name
    from (
        select
            organization_external_id,
            organization_name,
            row_number() over (
                partition by organization_external_id order by observed_at desc, snapshot_id desc
            ) as position
        from organizations
    ) as named
    where position = 1

),

visible as (

    select
        snapshot_id,
        lag(subscription_id) over plans as previous_subscription_id,
        lag(feature_set_id) over plans as previous_feature_set_id,
        lag(feature_set_name) over plans as previous_feature_set_name
    from subscriptions
    where has_subscription
    window plans as (partition by organization_external_id order by partition_key, observed_at, snapshot_id)

),

final as (

    select
        ---------- keys
        subscriptions.snapshot_id,
        subscriptions.organization_external_id,
        subscriptions.account_id,
        current_names.organization_name,
        subscriptions.partition_key,
        subscriptions.observed_at,
        ---------- what the endpoint said
        subscriptions.http_status,
        subscriptions.has_subscription,
        case when subscriptions.has_subscription then 'subscribed' else 'none_or_not_visible' end as subscription_state,
        subscriptions.subscription_id,
        subscriptions.is_active,
        subscriptions.start_at,
        subscriptions.end_at,
        subscriptions.contract_start_at,
        subscriptions.is_public_free_tier,
        subscriptions.is_self_serve_trial,
        ---------- plan (the feature set; its identifier is not unique, its id is)
        subscriptions.feature_set_id,
        subscriptions.feature_set_identifier,
        subscriptions.feature_set_name,
        subscriptions.feature_set_plan,
        subscriptions.feature_set_cost_cents,
        subscriptions.feature_set_is_free_tier,
        ---------- limits and ceilings (null = not set on the subscription)
        subscriptions.runs_ceiling,
        subscriptions.agents_ceiling,
        subscriptions.contract_user_limit,
        subscriptions.contract_apply_limit,
        subscriptions.contract_managed_resources_limit,
        subscriptions.free_managed_resources_monthly_limit,
        subscriptions.managed_resources_limit,
        ---------- plan change
        visible.previous_subscription_id,
        visible.previous_feature_set_id,
        visible.previous_feature_set_name,
        coalesce(
            subscriptions.has_subscription
            and visible.previous_feature_set_id is not null
            and visible.previous_feature_set_id <> subscriptions.feature_set_id,
            false
        ) as is_plan_change,
        ---------- lineage
        subscriptions.error_detail,
        subscriptions.loaded_at
    from subscriptions
    left join visible
        on visible.snapshot_id = subscriptions.snapshot_id
    left join current_names
        on current_names.organization_external_id = subscriptions.organization_external_id

)

select * from final
