{{ config(materialized='table') }}

-- Every vendor tenant the shared facts have seen (a tenant with a quota but no usage still
-- counts), with its first and last observation. Names and external ids come from the vendor
-- facts where a vendor gives them, at their latest observation; a tenant they do not name
-- keeps its account id as its name. The shared facts decide which accounts exist: a vendor
-- fact never adds one.

with

units_used as (

    select vendor, account_id, unit, observed_at from {{ ref('fct_units_used') }}

),

quota as (

    select vendor, account_id, unit, observed_at from {{ ref('fct_quota') }}

),

test_usage as (

    select * from {{ ref('fct_test_usage') }}

),

hcp_subscriptions as (

    select * from {{ ref('fct_hcp_subscriptions') }}

),

workato_usage as (

    select * from {{ ref('fct_workato_usage') }}

),

observations as (

    select * from units_used
    union all
    select * from quota

),

accounts as (

    select
        vendor,
        account_id,
        min(observed_at) as first_seen_at,
        max(observed_at) as last_seen_at,
        count(distinct unit) as unit_count
    from observations
    group by vendor, account_id

),

vendor_names as (

    -- ThousandEyes: the account group named by the aid the usage was pulled under; org_id is
    -- the organization above it
    select
        'thousandeyes' as vendor,
        account_id,
        account_group_name as account_name,
        cast(org_id as varchar) as external_id,
        observed_at
    from test_usage
    where aid = account_id

    union all

    -- HCP Terraform: account_id is the name at the tick; the external-id survives renames
    select
        'hcp_terraform' as vendor,
        account_id,
        organization_name as account_name,
        organization_external_id as external_id,
        observed_at
    from hcp_subscriptions

    union all

    -- Workato: the workspace's name and the customer's own external id
    select
        'workato' as vendor,
        account_id,
        workspace_name as account_name,
        external_id,
        observed_at
    from workato_usage
    where grouping = 'workspace'

),

latest_names as (

    select
        vendor,
        account_id,
        account_name,
        external_id,
        row_number() over (
            partition by vendor, account_id
            order by observed_at desc, account_name, external_id
        ) as name_rank
    from vendor_names
    where account_name is not null or external_id is not null

),

final as (

    select
        ---------- keys
        accounts.vendor,
        accounts.account_id,
        ---------- names
        coalesce(latest_names.account_name, accounts.account_id) as account_name,
        latest_names.external_id,
        ---------- observation
        accounts.first_seen_at,
        accounts.last_seen_at,
        accounts.unit_count
    from accounts
    left join latest_names
        on latest_names.vendor = accounts.vendor
        and latest_names.account_id = accounts.account_id
        and latest_names.name_rank = 1

)

select * from final
