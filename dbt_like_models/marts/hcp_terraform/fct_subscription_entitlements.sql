{{ config(materialized='table') }}

-- Entitlement history as validity intervals, derived from the ordered snapshots every time
-- (gaps and islands), so `usage-pipeline replay` re-derives it from raw alone.
--
-- Per organization (external id) × value source × entitlement key, walk the ticks at which
-- that source was observed. A new interval opens at the first snapshot that saw a value when:
--   * it is the first observation, or
--   * the previous observation did not have the key (it disappeared and came back), or
--   * the value, the subscription or the feature set differs from the previous observation, or
--   * one or more daily ticks were missed since the previous observation (a gap).
-- An interval ends (valid_to) at the next observation's observed_at when that observation came
-- on the very next tick (ended_by changed: another value; subscription_changed: the same value
-- under another subscription or feature set, or none visible; removed: the key is gone); when
-- the next tick was missed it ends
-- at last_seen_at, the last snapshot that saw it (ended_by gap): the time between last_seen_at
-- and the next interval is unknown and covered by no row. An interval seen at the latest tick
-- any organization was observed is current (valid_to null).

with

states as (

    select * from {{ ref('int_hcp_terraform__entitlement_states') }}

),

organizations as (

    select * from {{ source('staging', 'stg_hcp_terraform__organizations') }}

),

latest_tick as (

    select max(tick_date) as tick_date
    from {{ ref('int_hcp_terraform__observations') }}

),

current_names as (

    select organization_external_id, organization_name
    from (
        select
            organization_external_id,
            organization_name,
            row_number() over (
                partition by organization_external_id order by observed_at desc, snapshot_id desc
            ) as position
        from organizations
    ) as named
    where position = 1

),

sequenced as (

    select
        states.*,
        lag(tick_date) over history as previous_tick_date,
        lag(is_present) over history as previous_is_present,
        lag(value_type) over history as previous_value_type,
        lag(enabled) over history as previous_enabled,
        lag(limit_value) over history as previous_limit_value,
        lag(is_unlimited) over history as previous_is_unlimited,
        lag(subscription_id) over history as previous_subscription_id,
        lag(feature_set_id) over history as previous_feature_set_id,
        lead(tick_date) over history as next_tick_date,
        lead(observed_at) over history as next_observed_at,
        lead(is_present) over history as next_is_present,
        lead(value_type) over history as next_value_type,
        lead(enabled) over history as next_enabled,
        lead(limit_value) over history as next_limit_value,
        lead(is_unlimited) over history as next_is_unlimited
    from states
    window history as (partition by organization_external_id, value_source, entitlement_key order by tick_date)

),

flagged as (

    select
        sequenced.*,
        coalesce(tick_date - previous_tick_date > 1, false) as is_after_gap,
        case
            when not is_present then 0
            when previous_tick_date is null then 1
            when tick_date - previous_tick_date > 1 then 1
            when not previous_is_present then 1
            when value_type is distinct from previous_value_type
                or enabled is distinct from previous_enabled
                or limit_value is distinct from previous_limit_value
                or is_unlimited is distinct from previous_is_unlimited
                or subscription_id is distinct from previous_subscription_id
                or feature_set_id is distinct from previous_feature_set_id then 1
            else 0
        end as opens_interval
    from sequenced

),

numbered as (

    select
        flagged.*,
        sum(opens_interval) over (
            partition by organization_external_id, value_source, entitlement_key
            order by tick_date
            rows between unbounded preceding and current row
        ) as interval_number
    from flagged

),

present as (

    select
        numbered.*,
        row_number() over (
            partition by organization_external_id, value_source, entitlement_key, interval_number
            order by tick_date
        ) as position_from_start,
        row_number() over (
            partition by organization_external_id, value_source, entitlement_key, interval_number
            order by tick_date desc
        ) as position_from_end,
        count(*) over (
            partition by organization_external_id, value_source, entitlement_key, interval_number
        ) as snapshot_count
    from numbered
    where is_present

),

interval_starts as (

    select * from present where position_from_start = 1

),

interval_ends as (

    select * from present where position_from_end = 1

),

final as (

    select
        ---------- keys
        interval_starts.organization_external_id,
        coalesce(current_names.organization_name, interval_ends.organization_external_id) as organization_name,
        interval_starts.value_source,
        interval_starts.entitlement_key,
        ---------- validity
        interval_starts.observed_at as valid_from,
        case
            when interval_ends.next_tick_date is null and interval_ends.tick_date >= latest_tick.tick_date then null
            when interval_ends.next_tick_date is null then interval_ends.observed_at
            when interval_ends.next_tick_date - interval_ends.tick_date > 1 then interval_ends.observed_at
            else interval_ends.next_observed_at
        end as valid_to,
        interval_ends.observed_at as last_seen_at,
        case
            when interval_ends.next_tick_date is null and interval_ends.tick_date >= latest_tick.tick_date then null
            when interval_ends.next_tick_date is null then 'gap'
            when interval_ends.next_tick_date - interval_ends.tick_date > 1 then 'gap'
            when not interval_ends.next_is_present then 'removed'
            when interval_ends.next_value_type is distinct from interval_ends.value_type
                or interval_ends.next_enabled is distinct from interval_ends.enabled
                or interval_ends.next_limit_value is distinct from interval_ends.limit_value
                or interval_ends.next_is_unlimited is distinct from interval_ends.is_unlimited then 'changed'
            else 'subscription_changed'
        end as ended_by,
        interval_ends.next_tick_date is null and interval_ends.tick_date >= latest_tick.tick_date as is_current,
        interval_starts.is_after_gap as starts_after_gap,
        ---------- value
        interval_starts.value_type,
        interval_starts.enabled,
        interval_starts.limit_value,                     -- null with is_unlimited = unlimited
        interval_starts.is_unlimited,
        ---------- subscription and plan in force
        interval_starts.subscription_id,
        interval_starts.feature_set_id,
        interval_ends.feature_set_name,
        ---------- lineage
        interval_starts.snapshot_id,
        interval_ends.snapshot_id as last_snapshot_id,
        interval_starts.snapshot_count
    from interval_starts
    inner join interval_ends
        on interval_ends.organization_external_id = interval_starts.organization_external_id
        and interval_ends.value_source = interval_starts.value_source
        and interval_ends.entitlement_key = interval_starts.entitlement_key
        and interval_ends.interval_number = interval_starts.interval_number
    cross join latest_tick
    left join current_names
        on current_names.organization_external_id = interval_starts.organization_external_id

)

select * from final
