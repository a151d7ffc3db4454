{#
  Generic test: no value of `column_name` in the latest load (rows with the greatest loaded_at)
  appears twice in the whole model. Equivalent to `unique` on a table whose earlier loads were
  tested when they arrived (a duplicate needs at least one new row), but it hashes only the new
  values and probes the column with them, instead of grouping every row of the history. After a
  full refresh every row is of the latest load, and it is `unique` on all of them; so it is after a
  build that did not finish (var `trip_marts_rebuild_all`): what that build loaded was not tested.
#}
{% test unique_with_latest_load(model, column_name) %}
with latest as (
    select {{ column_name }} from {{ model }}
    {%- if not var('trip_marts_rebuild_all', false) %}
    where loaded_at = (select max(loaded_at) from {{ model }})
    {%- endif %}
)

select {{ column_name }}, count(*) as n
from {{ model }}
where {{ column_name }} in (select {{ column_name }} from latest)
group by {{ column_name }}
having count(*) > 1
{% endtest %}
