{{ config(materialized='incremental', unique_key=['vendor', 'partition_key']) }}

-- Included quantity per unit and billing period, every vendor in one shape.
-- partition_key is the unit a re-pull replaces: the observation tick (ThousandEyes, HCP),
-- the day window (Workato) or the bundle snapshot id (TFE); an incremental run replaces every
-- (vendor, partition_key) that has new rows with what the intermediate models now hold for it.

with

unioned as (

    {{ union_vendor_models('quota', [
        'snapshot_id', 'vendor', 'account_id', 'unit', 'period_start', 'period_end', 'included',
        'observed_at', 'loaded_at', 'partition_key']) }}

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
