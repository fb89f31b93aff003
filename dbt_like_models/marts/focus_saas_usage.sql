{{ config(materialized='view') }}

-- Our usage in the shape of the FinOps FOCUS specification (columns in snake_case; the FOCUS
-- name of each is in _models.yml). One charge row per billing period: the period's last
-- observed value, final once the period has ended. The usage APIs carry no prices, so the cost
-- columns (BilledCost, EffectiveCost, ListCost, ContractedCost, BillingCurrency) are left out
-- rather than filled with made-up zeros.

with

usage_days as (

    select * from {{ ref('mart_usage_vs_quota') }}

),

units as (

    select * from {{ ref('dim_units') }}

),

accounts as (

    select * from {{ ref('dim_accounts') }}

),

providers (vendor, provider_name, service_name, service_category) as (

    values
        ('thousandeyes', 'Cisco', 'ThousandEyes', 'Management and Governance'),
        ('hcp_terraform', 'HashiCorp', 'HCP Terraform', 'Management and Governance'),
        ('terraform_enterprise', 'HashiCorp', 'Terraform Enterprise', 'Management and Governance'),
        ('workato', 'Workato', 'Workato Embedded', 'Integration')

),

period_values as (

    select
        *,
        row_number() over (
            partition by vendor, account_id, unit, period_start
            order by observed_at desc, snapshot_id desc
        ) as period_rank
    from usage_days

),

final as (

    select
        ---------- provider and service
        providers.provider_name,
        providers.provider_name as publisher_name,
        providers.provider_name as invoice_issuer_name,
        providers.service_name,
        providers.service_category,
        ---------- accounts
        period_values.account_id as billing_account_id,
        accounts.account_name as billing_account_name,
        cast(null as varchar) as sub_account_id,
        ---------- periods
        period_values.period_start as billing_period_start,
        period_values.period_end as billing_period_end,
        coalesce(period_values.period_start, date_trunc('day', period_values.observed_at)) as charge_period_start,
        case
            -- a period with no end date (an HCP subscription without end-at, closed by a plan
            -- change) ends at its last observation
            when period_values.is_period_final then coalesce(period_values.period_end, period_values.observed_at)
            else period_values.observed_at
        end as charge_period_end,
        ---------- charge
        'Usage' as charge_category,
        'Usage-Based' as charge_frequency,
        providers.service_name || ' ' || units.unit_name || ' used in the billing period' as charge_description,
        period_values.vendor || ':' || period_values.unit as sku_id,
        ---------- quantity
        cast(period_values.used as double) as consumed_quantity,
        units.unit_name as consumed_unit,
        ---------- extensions (FOCUS x_ columns)
        period_values.vendor as x_vendor,
        period_values.unit as x_unit,
        period_values.included as x_included_quantity,
        period_values.projected as x_projected_quantity,
        period_values.status as x_usage_status,
        period_values.is_period_final as x_is_charge_period_final,
        period_values.observed_at as x_observed_at,
        period_values.snapshot_id as x_snapshot_id
    from period_values
    inner join providers
        on providers.vendor = period_values.vendor
    left join units
        on units.unit = period_values.unit
    left join accounts
        on accounts.vendor = period_values.vendor
        and accounts.account_id = period_values.account_id
    where period_values.period_rank = 1

)

select * from final
