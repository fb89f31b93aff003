{% macro share(numerator, denominator) -%}
round({{ numerator }} / nullif({{ denominator }}, 0), 4)
{%- endmacro %}
