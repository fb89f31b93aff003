{{ config(materialized='incremental', unique_key=['vendor', 'account_id', 'partition_key']) }}

-- Included quantity per unit and billing period, every vendor in one shape.
-- partition_key is the unit a re-pull replaces: the observation tick (ThousandEyes, HCP),
-- the day window (Workato) or the bundle snapshot id (TFE); new rows for a key replace the old.

with

unioned as (

    {% for vendor in ['thousandeyes', 'hcp_terraform', 'terraform_enterprise', 'workato'] %}
    select
        snapshot_id, vendor, account_id, unit, period_start, period_end, included,
        observed_at, loaded_at, partition_key
    from {{ ref('int_' ~ vendor ~ '__quota') }}
    {% if is_incremental() %}
    where {{ new_rows() }}
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
