{#
  The incremental filter idiom: on an incremental run, read only the upstream rows loaded since
  the last build of this model.

      {% if is_incremental() %} where {{ new_rows() }} {% endif %}

  `column` is the upstream column stamped when the rows were written (staging: loaded_at); the
  model must carry it through to its own table, since the high-water mark is read from
  {{ this }}. An empty target reads everything (coalesce), never nothing.

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
