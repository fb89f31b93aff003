{{ config(materialized='incremental', unique_key=['snapshot_id', 'account_id', 'unit']) }}

-- TFE's billable quantities in the shared units-used shape, for marts.fct_units_used.
-- The metrics that carry a unit are named in constants.METRICS (billable_rum_count ->
-- managed_resources, user_count -> users, active_agents_count -> agents). They are gauges
-- counted when the snapshot is taken, so the period is the snapshot's UTC day and observed_at
-- is the snapshot's own time (a bundle fetched today still holds last week's snapshots: the
-- value belongs to the day TFE measured it, not the day we fetched it). A zero that
-- only means "opted out" is not a usage and is left out. Deduplication is inherited from
-- fct_tfe_usage_metrics: one row per TFE snapshot × unit.

with

metrics as (

    select * from {{ ref('fct_tfe_usage_metrics') }}
    where unit is not null
      and is_reported
      and value is not null
    {% if is_incremental() %}
      and loaded_at >= (select coalesce(max(loaded_at), timestamptz '1970-01-01 00:00:00+00') from {{ this }})
    {% endif %}

),

final as (

    select
        ---------- keys
        tfe_snapshot_id as snapshot_id,         -- TFE's snapshot id: one bundle holds several snapshots
        'terraform_enterprise' as vendor,
        account_id,                             -- license_id
        unit,
        ---------- period
        date_trunc('day', snapshot_at) as period_start,
        date_trunc('day', snapshot_at) + interval '1 day' as period_end,
        ---------- numbers
        cast(value as bigint) as used,
        cast(null as bigint) as projected,      -- TFE projects nothing
        cast(null as bigint) as next_period_projected,
        ---------- lineage
        snapshot_at as observed_at,             -- when TFE measured it; the fetch time is in the fct
        loaded_at,
        tfe_snapshot_id as partition_key        -- what a re-pull replaces in fct_units_used
    from metrics

)

select * from final
