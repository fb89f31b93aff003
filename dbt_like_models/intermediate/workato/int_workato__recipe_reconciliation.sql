{{ config(materialized='view') }}

-- Σ per-recipe tasks against the workspace total of the same day window, for windows where
-- both pulls landed. Workato drops deleted recipes from any query with more than the minimal
-- fields (API_CONTRACTS.md §3.4), so the per-recipe sum may fall short of the total: the gap
-- is deleted_recipe_tasks (a warning). Per-recipe above the total is an error: jobs are
-- never double-counted.

with

requests as (

    select * from {{ source('staging', 'stg_workato__requests') }}

),

daily as (

    select * from {{ ref('int_workato__daily_usage') }}

),

both_pulled as (

    select partition_key
    from requests
    group by partition_key
    having sum(case when grouping = 'workspace' then 1 else 0 end) > 0
        and sum(case when grouping = 'recipe' then 1 else 0 end) > 0

),

workspaces as (

    select distinct daily.partition_key, daily.workspace_id
    from daily
    inner join both_pulled on both_pulled.partition_key = daily.partition_key

),

totals as (

    select * from daily where grouping = 'workspace'

),

recipes as (

    select * from daily where grouping = 'recipe'

),

final as (

    select
        ---------- keys
        workspaces.partition_key,
        workspaces.workspace_id,
        cast(workspaces.workspace_id as varchar) as account_id,
        ---------- window and period
        coalesce(totals.window_start, recipes.window_start) as window_start,
        coalesce(totals.window_end, recipes.window_end) as window_end,
        coalesce(totals.period_start, recipes.period_start) as period_start,
        coalesce(totals.period_label, recipes.period_label) as period_label,
        ---------- numbers
        coalesce(totals.tasks, 0) as total_tasks,
        coalesce(recipes.tasks, 0) as recipe_tasks,
        coalesce(totals.tasks, 0) - coalesce(recipes.tasks, 0) as deleted_recipe_tasks,
        ---------- lineage
        totals.snapshot_id as total_snapshot_id,
        recipes.snapshot_id as recipe_snapshot_id
    from workspaces
    left join totals
        on totals.partition_key = workspaces.partition_key
        and totals.workspace_id = workspaces.workspace_id
    left join recipes
        on recipes.partition_key = workspaces.partition_key
        and recipes.workspace_id = workspaces.workspace_id

)

select * from final
