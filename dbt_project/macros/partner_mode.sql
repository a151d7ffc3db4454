{# The mode of a partner's free-floating vehicles from var('partner_modes'), null when not configured. #}
{% macro partner_mode(column) %}
    {%- set modes = var('partner_modes', {}) -%}
    {%- if modes -%}
    case {{ column }}
        {%- for partner, mode in modes.items() %}
        when '{{ partner }}' then '{{ mode }}'
        {%- endfor %}
    end
    {%- else -%}
    cast(null as varchar)
    {%- endif -%}
{% endmacro %}
