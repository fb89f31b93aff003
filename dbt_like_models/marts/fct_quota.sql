{{ config(materialized='incremental', unique_key=['vendor', 'partition_key']) }}

-- Included quantity per unit and billing period, every vendor in one shape.
-- partition_key is the unit a re-pull replaces: the observation tick (ThousandEyes, HCP),
-- the day window (Workato) or the bundle snapshot id (TFE); an incremental run replaces every
-- (vendor, partition_key) that has new rows with what the intermediate models now hold for it.

with

unioned as (

    {% for vendor in ['thousandeyes', 'hcp_terraform', 'terraform_enterprise', 'workato'] %}
    select
        snapshot_id, vendor, account_id, unit, period_start, period_end, included,
        observed_at, loaded_at, partition_key
    from {{ ref('int_' ~ vendor ~ '__quota') }}
    {% if is_incremental() %}
    -- a partition with any new row is re-read whole, so rows a re-pull no longer has go too
    where partition_key in (select partition_key from {{ ref('int_' ~ vendor ~ '__quota') }} where {{ new_rows() }})
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
        cast(included as bigint) as included,          -- null = unlimited
        ---------- lineage
        observed_at,
        loaded_at,
        partition_key
    from unioned

)

select * from final
