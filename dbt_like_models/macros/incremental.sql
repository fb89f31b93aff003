{#
  The incremental filter idiom: on an incremental run, read only the upstream rows loaded since
  the last build of this model.

      {% if is_incremental() %} where {{ new_rows() }} {% endif %}

  `column` is the upstream column stamped when the rows were written (staging: loaded_at); the
  model must carry it through to its own table, since the high-water mark is read from
  {{ this }} (on PostgreSQL the runner indexes the model's loaded_at, so that max() is one index
  probe, not a scan of its history). An empty target reads everything (coalesce), never nothing.

  `lookback` re-reads a margin before the high-water mark: on PostgreSQL a staging writer stamps
  loaded_at inside its transaction and may commit after a model run has read the maximum, so a
  strict `>` could skip its rows for good. Re-reading them is harmless, because the runner
  replaces rows by unique_key.
#}
{% macro new_rows(column='loaded_at', lookback='1 hour') -%}
{{ column }} > (
        select coalesce(max({{ column }}), timestamptz '1970-01-01 00:00:00+00') - interval '{{ lookback }}'
        from {{ this }}
    )
{%- endmacro %}

{#
  Keep the rows of the partitions a CTE lists (the per-tick facts' `touched`):

      where {{ partition_in('touched') }}

  On an incremental run on PostgreSQL the filter is `= any(array(select ...))`: the planner
  then looks the few touched partitions up in the staging index on partition_key, where
  `in (select ...)` was estimated at thousands of partitions and read the whole history. A
  full build keeps `in (select ...)`, a hash join (an array of every partition probed per row
  would be quadratic), and DuckDB keeps it always (zone maps skip old row groups).
#}
{% macro partition_in(cte, column='partition_key') -%}
{%- if is_incremental() and target.type == 'postgres' -%}
{{ column }} = any(array(select {{ column }} from {{ cte }}))
{%- else -%}
{{ column }} in (select {{ column }} from {{ cte }})
{%- endif -%}
{%- endmacro %}
