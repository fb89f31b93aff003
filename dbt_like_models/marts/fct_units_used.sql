{{ config(materialized='incremental', unique_key=['vendor', 'partition_key']) }}

-- Units used (and projected, where the vendor projects) per unit and billing period, every
-- vendor in one shape. partition_key: see fct_quota.

with

unioned as (

    {% for vendor in ['thousandeyes', 'hcp_terraform', 'terraform_enterprise', 'workato'] %}
    select
        snapshot_id, vendor, account_id, unit, period_start, period_end,
        used, projected, next_period_projected,
        observed_at, loaded_at, partition_key
    from {{ ref('int_' ~ vendor ~ '__units_used') }}
    {% if is_incremental() %}
    -- a partition with any new row is re-read whole, so rows a re-pull no longer has go too
    where partition_key in (select partition_key from {{ ref('int_' ~ vendor ~ '__units_used') }} where {{ new_rows() }})
    {% endif %}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select
        ---------- keys
        snapshot_id,
        vendor,
        account_id,
        unit,
        ---------- period
        period_start,
        period_end,
        ---------- numbers
        cast(used as bigint) as used,
        cast(projected as bigint) as projected,                        -- null = the vendor gives no projection
        cast(next_period_projected as bigint) as next_period_projected,
        ---------- lineage
        observed_at,
        loaded_at,
        partition_key
    from unioned

)

select * from final
