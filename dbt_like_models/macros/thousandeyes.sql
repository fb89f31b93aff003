{#
  The three CTEs every per-tick ThousandEyes fact starts with:

      with {{ thousandeyes_tick_ctes('stg_thousandeyes__tests', 'tests') }},
      final as (... from tests inner join usage on usage.snapshot_id = tests.snapshot_id)

  `touched`: the ticks staged since the last build (all of them on a full build); `usage`: the
  organization-level row of each touched tick (period, org); `<detail_cte>`: the detail staging
  table's rows of the same ticks. An incremental run then replaces those ticks whole (unique_key
  partition_key), so a re-pulled tick keeps only its latest snapshot's rows.
#}
{% macro thousandeyes_tick_ctes(detail_table, detail_cte) -%}
touched as (

    select distinct partition_key
    from {{ source('staging', 'stg_thousandeyes__usage') }}
    {% if is_incremental() %} where {{ new_rows() }} {% endif %}

),

usage as (

    select * from {{ source('staging', 'stg_thousandeyes__usage') }}
    where {{ partition_in('touched') }}

),

{{ detail_cte }} as (

    select * from {{ source('staging', detail_table) }}
    where {{ partition_in('touched') }}

)
{%- endmacro %}
