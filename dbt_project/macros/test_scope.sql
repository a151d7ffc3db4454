{#
  Data tests on the trip path check each batch when it enters the warehouse, so an incremental day
  costs the same with 7 or 60 days of history. Landed batches never change (a corrected
  resubmission is a new batch), so re-testing old ones every build finds nothing new.

  A test opts in with a placeholder as its `where` config:
  - `__new_trip_batches__`: rows of batches fct_trips does not hold yet (the ones this build is
    about to add: tests on the views upstream of the fact run before it is built), and of the
    batches its latest load added, so a `dbt test` after a build checks that build's batches.
    Everything before fct_trips exists.
  - `__latest_load__`: fct_trips rows of its latest load (this run's, in a build that adds rows;
    all of them after a full refresh).
  Uniqueness across batches is tested on all of fct_trips, for the keys of its latest load
  (unique_with_latest_load: a duplicate needs a new row).
  After a build that did not finish (var `trip_marts_rebuild_all`, set by pipeline.build_warehouse)
  both placeholders mean every row: what that build loaded may have failed its tests.
  dbt calls this macro for every test with a `where` config (dbt docs: "custom where logic").
#}
{% macro get_where_subquery(relation) -%}
  {%- set where = config.get('where', '') -%}
  {%- if not where -%}
    {{ return(relation) }}
  {%- endif -%}
  {#- after a build that did not finish (pipeline.build_warehouse sets the var), the rows it loaded
      may have failed their tests: test every row again, not only the latest load's -#}
  {%- set everything = var('trip_marts_rebuild_all', false) -%}
  {%- if '__new_trip_batches__' in where -%}
    {%- set fact = none if everything else _trip_fact_relation() -%}
    {#- a row without a batch id is never "already held": its not_null test must still see it.
        distinct: the anti-join then hashes one entry per batch, not one per trip of the history -#}
    {%- set scope = ('(batch_id is null or batch_id not in (select distinct batch_id from ' ~ fact
        ~ ' where loaded_at < (select max(loaded_at) from ' ~ fact ~ ')))') if fact is not none else 'true' -%}
    {%- set where = where | replace('__new_trip_batches__', scope) -%}
  {%- endif -%}
  {%- if '__latest_load__' in where -%}
    {%- set where = where | replace('__latest_load__', 'true' if everything else
        '(loaded_at is null or loaded_at = (select max(loaded_at) from ' ~ relation ~ '))') -%}
  {%- endif -%}
  {%- set filtered -%}
    (select * from {{ relation }} where {{ where }}) dbt_subquery
  {%- endset -%}
  {{ return(filtered) }}
{%- endmacro %}


{#- fct_trips as built so far, or none before its first build; looked up in the graph rather than
    ref()'d, so tests on its upstream views do not depend on it. -#}
{% macro _trip_fact_relation() %}
  {%- for node in graph.nodes.values() -%}
    {%- if node.resource_type == 'model' and node.name == 'fct_trips' -%}
      {{ return(adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias)) }}
    {%- endif -%}
  {%- endfor -%}
  {{ return(none) }}
{% endmacro %}
