{{ config(materialized='incremental', unique_key=['account_id', 'partition_key']) }}

with

usage as (

    select * from {{ ref('int_demo__units_used') }}
    {% if is_incremental() %} where {{ new_rows() }} {% endif %}

),

final as (

    select
        snapshot_id,
        vendor,
        account_id,
        unit,
        period_start,
        period_end,
        used,
        projected,
        observed_at,
        loaded_at,
        partition_key
    from usage

)

select * from final
