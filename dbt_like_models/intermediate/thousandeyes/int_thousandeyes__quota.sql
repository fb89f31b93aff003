{{ config(materialized='view') }}

-- ThousandEyes' side of marts.fct_quota: one row per snapshot × unit for every *Included
-- field the payload carries; a zero stays 0 and an absent field gives no row. Two units have
-- no included quantity to compare against:
-- * enterprise_units: metered billing; the usage API publishes no included number.
-- * enterprise_agents outside legacy billing: enterpriseAgentsIncluded "returns non-zero value
--   only for organizations with legacy billing" (API_CONTRACTS.md §4.1), so its 0 means "not
--   sold by count", not "none allowed"; a row would raise an over-quota alert every hour.
--   The 0 itself stays in staging and int_thousandeyes__usage.
-- ThousandEyes has no "unlimited": included is never null.

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
    {% if unit == 'enterprise_agents' %}and {{ column }} > 0{% endif %}
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
