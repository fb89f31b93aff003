{{ config(materialized='incremental', unique_key=['vendor', 'partition_key']) }}

-- Units used (and projected, where the vendor projects) per unit and billing period, every
-- vendor in one shape. partition_key: see fct_quota.

with

unioned as (

    {{ union_vendor_models('units_used', [
        'snapshot_id', 'vendor', 'account_id', 'unit', 'period_start', 'period_end',
        'used', 'projected', 'next_period_projected', 'observed_at', 'loaded_at', 'partition_key']) }}

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
