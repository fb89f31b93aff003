select
    snapshot_id,
    'demo' as vendor,
    account_id,
    unit,
    period_start,
    period_end,
    included::bigint as included,
    observed_at,
    loaded_at,
    partition_key
from {{ source('staging', 'stg_demo__quota') }}
