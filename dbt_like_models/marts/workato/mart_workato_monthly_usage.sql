{{ config(materialized='view') }}

-- A monthly view of Workato usage (no second pull: the day windows added up). The period is
-- the billing period of int_workato__units_used: the calendar month in the admin zone.
-- days_pulled counts the day windows of the period that have a workspace-total pull, so a
-- month is complete when days_pulled = days_in_period (gaps: backfill them).

with

daily as (

    select * from {{ ref('int_workato__daily_usage') }}
    where grouping = 'workspace'

),

reconciliation as (

    select * from {{ ref('int_workato__recipe_reconciliation') }}

),

requests as (

    select * from {{ source('staging', 'stg_workato__requests') }}
    where grouping = 'workspace'

),

coverage as (

    select
        period_start,
        count(distinct partition_key) as days_pulled,
        max(window_end) as pulled_until
    from requests
    group by period_start

),

totals as (

    select
        workspace_id,
        period_start,
        max(account_id) as account_id,
        max(external_id) as external_id,
        max(workspace_name) as workspace_name,
        max(period_end) as period_end,
        max(period_label) as period_label,
        sum(tasks) as tasks,
        sum(successful_jobs) as successful_jobs,
        sum(failed_jobs) as failed_jobs,
        count(*) as days_with_usage,
        max(loaded_at) as loaded_at
    from daily
    group by workspace_id, period_start

),

recipe_side as (

    select
        workspace_id,
        period_start,
        sum(recipe_tasks) as recipe_tasks,
        sum(deleted_recipe_tasks) as deleted_recipe_tasks,
        count(*) as days_reconciled
    from reconciliation
    group by workspace_id, period_start

),

final as (

    select
        ---------- keys
        totals.account_id,
        totals.workspace_id,
        totals.external_id,
        totals.workspace_name,
        ---------- period
        totals.period_label,
        totals.period_start,
        totals.period_end,
        ---------- numbers
        cast(totals.tasks as bigint) as tasks,
        cast(totals.successful_jobs as bigint) as successful_jobs,
        cast(totals.failed_jobs as bigint) as failed_jobs,
        cast(totals.successful_jobs + totals.failed_jobs as bigint) as jobs,
        cast(recipe_side.recipe_tasks as bigint) as recipe_tasks,                   -- null: no per-recipe pull
        cast(recipe_side.deleted_recipe_tasks as bigint) as deleted_recipe_tasks,
        ---------- coverage
        cast(round((extract(epoch from totals.period_end) - extract(epoch from totals.period_start)) / 86400.0) as bigint)
            as days_in_period,
        coverage.days_pulled,
        totals.days_with_usage,
        coalesce(recipe_side.days_reconciled, 0) as days_reconciled,
        coverage.pulled_until,
        ---------- lineage
        totals.loaded_at
    from totals
    left join coverage on coverage.period_start = totals.period_start
    left join recipe_side
        on recipe_side.workspace_id = totals.workspace_id
        and recipe_side.period_start = totals.period_start

)

select * from final
