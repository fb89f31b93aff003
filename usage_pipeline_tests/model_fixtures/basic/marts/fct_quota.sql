{{ config(materialized='table') }}

select
    snapshot_id,
    vendor,
    account_id,
    unit,
    period_start,
    period_end,
    included,
    observed_at,
    loaded_at,
    partition_key
from {{ ref('int_demo__quota') }}
