with

usage as (

    select * from {{ source('staging', 'stg_demo__usage') }}

),

final as (

    select
        snapshot_id,
        'demo' as vendor,
        account_id,
        unit,
        period_start,
        period_end,
        used::bigint as used,
        projected::bigint as projected,
        observed_at,
        loaded_at,
        partition_key
    from usage

)

select * from final
