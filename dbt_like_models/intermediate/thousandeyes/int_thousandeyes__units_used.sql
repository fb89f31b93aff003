{{ config(materialized='view') }}

-- ThousandEyes' side of marts.fct_units_used: one row per snapshot × unit whose *Used field
-- the payload carries. Units are consumed so far in the customer's billing period; projected
-- and next_period_projected are the vendor's hourly projections (cloud and enterprise units
-- only; agent counts are a maximum over the period's hours and have no projection).

{% set units = [
    ('cloud_units', 'cloud_units_used', 'cloud_units_projected', 'cloud_units_next_period_projected'),
    ('enterprise_units', 'enterprise_units_used', 'enterprise_units_projected', 'enterprise_units_next_period_projected'),
    ('endpoint_agents', 'endpoint_agents_used', none, none),
    ('endpoint_agents_essentials', 'endpoint_agents_essentials_used', none, none),
    ('endpoint_agents_embedded', 'endpoint_agents_embedded_used', none, none),
    ('enterprise_agents', 'enterprise_agents_used', none, none),
] %}

with

usage as (

    select * from {{ ref('int_thousandeyes__usage') }}

),

unpivoted as (

    {% for unit, used, projected, next_projected in units %}
    select
        snapshot_id, account_id, '{{ unit }}' as unit, period_start, period_end,
        {{ used }} as used,
        {{ projected or 'cast(null as bigint)' }} as projected,
        {{ next_projected or 'cast(null as bigint)' }} as next_period_projected,
        observed_at, loaded_at, partition_key
    from usage
    where {{ used }} is not null
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select
        snapshot_id,
        cast('thousandeyes' as varchar) as vendor,
        account_id,
        cast(unit as varchar) as unit,
        period_start,
        period_end,
        cast(used as bigint) as used,
        cast(projected as bigint) as projected,
        cast(next_period_projected as bigint) as next_period_projected,
        observed_at,
        loaded_at,
        partition_key
    from unpivoted

)

select * from final
