{#
  The shared quota shape with no rows, for a vendor whose API reports usage only.
  A row with included = null would claim "unlimited", which nobody knows; no row lets
  marts.mart_usage_vs_quota say `no_quota`. fct_quota unions every vendor's int model alike.
#}
{% macro no_quota_rows() -%}
select
    cast(null as varchar) as snapshot_id,
    cast(null as varchar) as vendor,
    cast(null as varchar) as account_id,
    cast(null as varchar) as unit,
    cast(null as timestamptz) as period_start,
    cast(null as timestamptz) as period_end,
    cast(null as bigint) as included,
    cast(null as timestamptz) as observed_at,
    cast(null as timestamptz) as loaded_at,
    cast(null as varchar) as partition_key
where false
{%- endmacro %}
