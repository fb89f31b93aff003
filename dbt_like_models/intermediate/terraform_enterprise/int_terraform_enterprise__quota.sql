{{ config(materialized='view') }}

-- TFE contributes no quota rows, on purpose. The usage bundle carries usage only: no metric in
-- the data reference (API_CONTRACTS.md §1.6) is a licensed limit, and the licence's terms are
-- not in the System API. A row with included = null would claim "unlimited", which nobody
-- knows; no row lets marts.mart_usage_vs_quota say `no_quota`. The columns are the shared
-- quota shape, so fct_quota unions every vendor alike.

with

final as (

    select
        cast(null as varchar) as snapshot_id,
        cast(null as varchar) as vendor,
        cast(null as varchar) as account_id,
        cast(null as varchar) as unit,
        cast(null as timestamptz) as period_start,
        cast(null as timestamptz) as period_end,
        cast(null as bigint) as included,
        cast(null as timestamptz) as observed_at,
        cast(null as timestamptz) as loaded_at,
        cast(null as varchar) as partition_key
    where false

)

select * from final
