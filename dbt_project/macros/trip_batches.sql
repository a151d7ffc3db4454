{#- The current batch of every trip-feed window, from the manifests: the latest landed batch of the
    window (a corrected resubmission replaces the window's bronze file). Rejected batches and failed
    fetches land nothing, so they never replace a window's batch. int_trip_batches_current is this
    query; the trip tests' scope (test_scope.sql) runs it too, as the tests may run before that
    table is rebuilt. -#}
{% macro current_trip_batches(manifests) -%}
    select * exclude (landing_rank) from (
        select
            *,
            row_number() over (
                partition by partner_id, feed, window_start_at
                order by finished_at desc, batch_id desc
            ) as landing_rank
        from {{ manifests }}
        where feed in ('mds_trips', 'bikeshare_trips', 'ridehail_trips')
            and outcome in ('accepted', 'partial', 'empty')
    )
    where landing_rank = 1
{%- endmacro %}


{#- Rows of the given trip batches, in a relation with batch_id and bronze_file (the trip views):
    the batch ids, and their bronze files by name, which DuckDB decides before opening any file (on
    batch_id alone it opens every file of the lake to skip its rows from their statistics).
    Landing names a window's bronze file partner=<partner>/<window label>.parquet and its batch
    <partner>:<feed>:<window label>:<sha12> (ingest.landing.Lake); ids of another shape get the
    batch filter only. -#}
{% macro trip_batches_filter(batch_ids, prefix='') -%}
    {%- set files = [] -%}
    {%- for b in batch_ids -%}
        {%- set parts = (b | string).split(':') -%}
        {%- if parts | length == 4 -%}{%- do files.append('partner=' ~ parts[0] ~ '/' ~ parts[2] ~ '.parquet') -%}{%- endif -%}
    {%- endfor -%}
    {{ prefix }}batch_id in {{ sql_values(batch_ids) }}
    {%- if files and files | length == batch_ids | length %}
        and {{ prefix }}bronze_file in {{ sql_values(files | unique | list) }}
    {%- endif -%}
{%- endmacro %}
