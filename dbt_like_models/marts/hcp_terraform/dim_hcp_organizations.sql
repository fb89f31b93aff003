{{ config(materialized='table') }}

-- The HCP Terraform organizations ever observed, keyed on the external id that survives a
-- rename: the current name (latest observation) and how many names it has had.

with

organizations as (

    select * from {{ source('staging', 'stg_hcp_terraform__organizations') }}

),

ranked as (

    select
        organizations.*,
        row_number() over (
            partition by organization_external_id order by observed_at desc, snapshot_id desc
        ) as position
    from organizations

),

history as (

    select
        organization_external_id,
        count(distinct organization_name) as names_seen,
        min(observed_at) as first_observed_at,
        max(observed_at) as last_observed_at,
        count(distinct partition_key) as ticks_observed
    from organizations
    group by organization_external_id

),

final as (

    select
        ---------- keys
        ranked.organization_external_id,
        ranked.organization_name,
        ---------- attributes at the latest observation
        ranked.email,
        ranked.created_at,
        ranked.plan_identifier,
        ranked.plan_is_trial,
        ranked.plan_is_enterprise,
        ranked.plan_expired,
        ranked.plan_expires_at,
        ---------- history
        history.names_seen,
        history.first_observed_at,
        history.last_observed_at,
        history.ticks_observed,
        ---------- lineage
        ranked.snapshot_id
    from ranked
    inner join history
        on history.organization_external_id = ranked.organization_external_id
    where ranked.position = 1

)

select * from final
