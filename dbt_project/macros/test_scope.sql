{#
  Data tests on the trip path check each batch when it enters the warehouse, so an incremental day
  costs the same with 7 or 60 days of history. Landed batches never change (a corrected
  resubmission is a new batch), so re-testing old ones every build finds nothing new.

  A test opts in with a placeholder as its `where` config:
  - `__new_trip_batches__`: rows of the current trip batches (the latest landed batch of each
    window, from the manifests) that the fact has not loaded: in `dbt build`, the batches this
    build is about to add (tests on the views upstream of the fact run before it is built); in a
    `dbt test` after a build, the batches that build added. Everything before fct_trips exists.
    The batch ids are looked up when the test runs and inlined as constants, with their bronze
    files' names (trip_batches_filter): the scans then open those files only (a join on a
    subquery would read every landed trip first). A row without a batch id is never in scope:
    the not_null tests on batch_id itself are not scoped.
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
    {%- set batch_ids = none if everything else _trip_batches_in_test_scope() -%}
    {%- set where = where | replace('__new_trip_batches__',
        'true' if batch_ids is none else '(' ~ trip_batches_filter(batch_ids) ~ ')') -%}
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


{#- The batch ids `__new_trip_batches__` stands for, or none for every row (no fact built yet).
    Fact batches are looked up in int_trip_batch_days, which records each batch with the load that
    added it (a small table, where the fact has a row per trip). In `dbt build` these tests run
    before the views' descendants (int_trip_batch_days, the fact) are built, so the batches to test
    are the current ones not recorded yet; in a `dbt test`, those of the fact's latest load. -#}
{% macro _trip_batches_in_test_scope() %}
  {%- set fact = _built_relation('fct_trips') -%}
  {%- set batch_days = _built_relation('int_trip_batch_days') -%}
  {%- set manifests = _built_relation('stg_lake__manifests') -%}
  {%- if fact is none or batch_days is none or manifests is none -%}{{ return(none) }}{%- endif -%}
  {%- set loaded = "select batch_id from " ~ batch_days ~ (
      "" if flags.WHICH == 'build' else " where loaded_at < (select max(loaded_at) from " ~ fact ~ ")") -%}
  {%- set found = run_query("select batch_id from (" ~ current_trip_batches(manifests) ~ ")"
      ~ " where batch_id not in (" ~ loaded ~ ") order by 1") -%}
  {{ return(found.columns[0].values() | list) }}
{% endmacro %}


{#- A model as built so far, or none before its first build; looked up in the graph rather than
    ref()'d, so tests on the views upstream of it do not depend on it. -#}
{% macro _built_relation(model_name) %}
  {%- for node in graph.nodes.values() -%}
    {%- if node.resource_type == 'model' and node.name == model_name -%}
      {{ return(adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias)) }}
    {%- endif -%}
  {%- endfor -%}
  {{ return(none) }}
{% endmacro %}
