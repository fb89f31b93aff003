{{ config(materialized='view') }}

-- Workato usage per bucket, in UTC. A view over staging on purpose: staging already holds
-- exactly the latest pull of each day window (a re-pull replaces the window's rows in one
-- transaction), so the fact is always that state, with no second copy to fall behind and no
-- stale rows when a re-pulled window shrinks or comes back `data: null`.
-- grouping = 'workspace': the unfiltered totals (deleted recipes included);
-- grouping = 'recipe': one row per recipe (deleted recipes absent). Filter on grouping before
-- adding up.

with

usage as (

    select * from {{ source('staging', 'stg_workato__usage') }}

),

final as (

    select
        ---------- keys
        grouping,
        workspace_id,
        cast(workspace_id as varchar) as account_id,
        external_id,
        workspace_name,
        recipe_id,
        recipe_name,
        folder_id,
        folder_name,
        ---------- interval
        interval_start,
        interval_end,
        interval_start_local,
        interval_unit,
        timezone,
        ---------- numbers
        tasks,
        successful_jobs,
        failed_jobs,
        successful_jobs + failed_jobs as jobs,
        recipe_count,
        active_recipe_count,
        ---------- period
        period_start,
        period_end,
        period_label,
        ---------- lineage
        window_start,
        window_end,
        snapshot_id,
        observed_at,
        loaded_at,
        partition_key
    from usage

)

select * from final
