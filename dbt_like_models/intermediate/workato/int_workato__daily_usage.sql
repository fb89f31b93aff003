{{ config(materialized='view') }}

-- Each day window's buckets added up, per grouping and workspace. The two groupings stay apart:
-- `workspace` is the unfiltered total (deleted recipes included), `recipe` the sum over the
-- per-recipe rows (deleted recipes absent, API_CONTRACTS.md §3.4).

with

usage as (

    select * from {{ source('staging', 'stg_workato__usage') }}

),

final as (

    select
        ---------- keys
        partition_key,
        grouping,
        workspace_id,
        cast(workspace_id as varchar) as account_id,
        max(external_id) as external_id,
        max(workspace_name) as workspace_name,
        ---------- window and period
        min(window_start) as window_start,
        max(window_end) as window_end,
        min(period_start) as period_start,
        max(period_end) as period_end,
        max(period_label) as period_label,
        ---------- numbers
        cast(sum(tasks) as bigint) as tasks,
        cast(sum(successful_jobs) as bigint) as successful_jobs,
        cast(sum(failed_jobs) as bigint) as failed_jobs,
        count(*) as bucket_rows,
        ---------- lineage
        max(snapshot_id) as snapshot_id,
        max(observed_at) as observed_at,
        max(loaded_at) as loaded_at
    from usage
    group by partition_key, grouping, workspace_id

)

select * from final
