{# Generic test: no two rows share the values of `columns` (a compound key); dbt_utils' test, without the package. #}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
