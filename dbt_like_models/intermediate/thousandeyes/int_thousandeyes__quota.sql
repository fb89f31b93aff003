{{ config(materialized='view') }}

-- ThousandEyes' side of marts.fct_quota: one row per snapshot × unit for every *Included
-- field the payload carries. A zero stays 0 (enterpriseAgentsIncluded is 0 outside legacy
-- billing); an absent field gives no row. enterprise_units have no included quantity in the
-- usage API (metered billing), so they never appear here. ThousandEyes has no "unlimited".

{% set units = [
    ('cloud_units', 'cloud_units_included'),
    ('endpoint_agents', 'endpoint_agents_included'),
    ('endpoint_agents_essentials', 'endpoint_agents_essentials_included'),
    ('endpoint_agents_embedded', 'endpoint_agents_embedded_included'),
    ('enterprise_agents', 'enterprise_agents_included'),
] %}

with

usage as (

    select * from {{ ref('int_thousandeyes__usage') }}

),

unpivoted as (

    {% for unit, column in units %}
    select
        snapshot_id, account_id, '{{ unit }}' as unit, period_start, period_end,
        {{ column }} as included, observed_at, loaded_at, partition_key
    from usage
    where {{ column }} is not null
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
        cast(included as bigint) as included,
        observed_at,
        loaded_at,
        partition_key
    from unpivoted

)

select * from final
