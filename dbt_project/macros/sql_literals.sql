{#- SQL literals for values found at compile time and inlined into a query. -#}

{#- One quoted string. -#}
{% macro sql_string(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}

{#- A parenthesised list for `in`, `(null)` when empty; `type` casts each value (a varchar needs none). -#}
{% macro sql_values(values, type='varchar') -%}
    ({%- for v in values -%}
        {%- if v is none -%}null{%- elif type == 'varchar' -%}{{ sql_string(v) }}
        {%- else -%}cast({{ sql_string(v) }} as {{ type }}){%- endif -%}
        {{- ", " if not loop.last -}}
    {%- else -%}null{%- endfor -%})
{%- endmacro %}

{#- A DuckDB list of strings, e.g. the files a table function reads. -#}
{% macro sql_list(values) -%}
    [{%- for v in values -%}{{ sql_string(v) }}{{ ", " if not loop.last }}{%- endfor -%}]
{%- endmacro %}
