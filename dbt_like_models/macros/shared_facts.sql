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

{#
  Every vendor's `int_<vendor>__<suffix>` model in one shape, for the shared facts:

      unioned as ( {{ union_vendor_models('quota', ['snapshot_id', ..., 'partition_key']) }} )

  On an incremental run each vendor contributes the partitions that have any new row, re-read
  whole, so rows a re-pull no longer has are replaced too (the facts' unique_key is
  vendor × partition_key). Adding a vendor is adding it to this list.
#}
{% macro union_vendor_models(suffix, columns) -%}
{% for vendor in ['thousandeyes', 'hcp_terraform', 'terraform_enterprise', 'workato'] %}
    select {{ columns | join(', ') }}
    from {{ ref('int_' ~ vendor ~ '__' ~ suffix) }}
    {% if is_incremental() %}
    where partition_key in (select partition_key from {{ ref('int_' ~ vendor ~ '__' ~ suffix) }} where {{ new_rows() }})
    {% endif %}
    {% if not loop.last %}union all{% endif %}
{% endfor %}
{%- endmacro %}
