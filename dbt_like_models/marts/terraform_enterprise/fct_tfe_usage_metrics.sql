{{ config(materialized='incremental', unique_key=['tfe_snapshot_id', 'metric_key']) }}

-- One row per TFE snapshot × metric, deduplicated by TFE's own snapshot id across every pull.
-- Bundles overlap from pull to pull, so one snapshot arrives in many landed bundles; the copy
-- kept is the one from the latest fetch (observed_at, then the time-ordered raw snapshot_id).
-- Incremental: only rows staged since the last build are read, and each key they touch is
-- decided again together with the row already kept for it, so a replay of old pulls (newer
-- loaded_at, older observed_at) never displaces a later fetch.

with

staged_metrics as (

    select * from {{ source('staging', 'stg_terraform_enterprise__metrics') }}
    {% if is_incremental() %}
    -- `>=`: a load that shares the last loaded_at is read again, harmlessly (same keys, same pick)
    where loaded_at >= (select coalesce(max(loaded_at), timestamptz '1970-01-01 00:00:00+00') from {{ this }})
    {% endif %}

),

staged_snapshots as (

    select * from {{ source('staging', 'stg_terraform_enterprise__snapshots') }}
    {% if is_incremental() %}
    where loaded_at >= (select coalesce(max(loaded_at), timestamptz '1970-01-01 00:00:00+00') from {{ this }})
    {% endif %}

),

staged_bundles as (

    select * from {{ source('staging', 'stg_terraform_enterprise__bundles') }}
    {% if is_incremental() %}
    where loaded_at >= (select coalesce(max(loaded_at), timestamptz '1970-01-01 00:00:00+00') from {{ this }})
    {% endif %}

),

new_rows as (

    select
        ---------- keys
        m.tfe_snapshot_id,
        m.metric_key,
        ---------- account
        s.license_id as account_id,
        s.license_id,
        m.account_id as installation,
        ---------- metric
        m.metric_name,
        m.inner_key,
        m.is_known_metric,
        m.unit,
        ---------- value
        m.value,
        m.value_text,
        m.metric_mode as mode,
        m.is_reported,
        m.not_reported_reason,
        s.product_usage_reporting_opt_in,
        s.billable_rum_opt_in,
        ---------- snapshot
        s.snapshot_at,
        s.snapshot_at_raw,
        s.product,
        s.product_version,
        s.schema_version,
        s.process_id,
        s.checksum as snapshot_checksum,
        b.bundle_mode,
        ---------- lineage
        m.snapshot_id,
        m.partition_key,
        m.observed_at as first_observed_at,
        m.observed_at,
        m.loaded_at
    from staged_metrics as m
    inner join staged_snapshots as s
        on s.snapshot_id = m.snapshot_id and s.tfe_snapshot_id = m.tfe_snapshot_id
    inner join staged_bundles as b
        on b.snapshot_id = m.snapshot_id

),

candidates as (

    select * from new_rows
    {% if is_incremental() %}
    union all
    select
        tfe_snapshot_id, metric_key, account_id, license_id, installation,
        metric_name, inner_key, is_known_metric, unit,
        value, value_text, mode, is_reported, not_reported_reason,
        product_usage_reporting_opt_in, billable_rum_opt_in,
        snapshot_at, snapshot_at_raw, product, product_version, schema_version, process_id,
        snapshot_checksum, bundle_mode,
        snapshot_id, partition_key, first_observed_at, observed_at, loaded_at
    from {{ this }}
    where tfe_snapshot_id in (select tfe_snapshot_id from new_rows)
    {% endif %}

),

first_seen as (

    -- from staging, not from the kept row: a re-pulled tick replaces its staging rows, so the
    -- first fetch is what staging still holds; an incremental build then equals a replay
    select tfe_snapshot_id, min(observed_at) as first_seen_at
    from {{ source('staging', 'stg_terraform_enterprise__snapshots') }}
    where tfe_snapshot_id in (select tfe_snapshot_id from new_rows)
    group by tfe_snapshot_id

),

ranked as (

    select
        candidates.*,
        row_number() over (
            partition by tfe_snapshot_id, metric_key
            order by observed_at desc, snapshot_id desc
        ) as copy_rank,
        max(loaded_at) over (partition by tfe_snapshot_id, metric_key) as last_loaded_at
    from candidates

),

final as (

    select
        ---------- keys
        tfe_snapshot_id,
        metric_key,
        ---------- account
        account_id,                             -- = license_id (DESIGN: TFE's tenant)
        license_id,
        installation,                           -- host of TFE_SYSTEM_API_URL
        ---------- metric
        metric_name,
        inner_key,
        is_known_metric,
        unit,
        ---------- value
        value,
        value_text,
        mode,                                   -- metric-level mode ("write"), not the bundle's
        is_reported,
        not_reported_reason,
        product_usage_reporting_opt_in,
        billable_rum_opt_in,
        ---------- snapshot
        snapshot_at,
        snapshot_at_raw,
        product,
        product_version,
        schema_version,
        process_id,
        snapshot_checksum,
        bundle_mode,
        ---------- lineage
        snapshot_id,                            -- the landed bundle this copy came from
        partition_key,
        first_seen.first_seen_at as first_observed_at,
        ranked.observed_at,
        ranked.last_loaded_at as loaded_at
    from ranked
    join first_seen using (tfe_snapshot_id)
    where ranked.copy_rank = 1

)

select * from final
