{#
  GTFS feed versions in the lake. Each changed zip the agency publishes lands as one bronze file
  per GTFS table, named for its window (`.../gtfs_<table>/partner=<p>/<window>.parquet`); optional
  files absent from the zip land empty. A version is complete when every table landed for that
  window (a table whose batch was rejected is missing, and the version with it), and staging
  reads each partner's latest complete version, so all tables come from the same zip.
#}

{% macro gtfs_feed_window(filename_column) -%}
    regexp_extract({{ filename_column }}, '([^/]+)[.]parquet$', 1)
{%- endmacro %}

{# One row per partner: partner_id and feed_window, the label of its latest complete version. #}
{% macro gtfs_latest_feed_versions() %}
  {%- set tables = ['agency', 'stops', 'routes', 'trips', 'stop_times', 'calendar', 'calendar_dates'] -%}
  {%- if execute -%}
    select partner_id, max(feed_window) as feed_window
    from (
        select partner_id, feed_window
        from (
        {%- for table in tables %}
            select distinct
                regexp_extract(file, 'partner=([^/]+)/[^/]+$', 1) as partner_id,
                {{ gtfs_feed_window('file') }} as feed_window,
                '{{ table }}' as gtfs_table
            from glob('{{ lake_source_meta('gtfs', table)['lake_glob'] | replace("'", "''") }}')
            {{ "union all" if not loop.last }}
        {%- endfor %}
        )
        group by partner_id, feed_window
        having count(distinct gtfs_table) = {{ tables | length }}
    )
    group by partner_id
  {%- else -%}
    select cast(null as varchar) as partner_id, cast(null as varchar) as feed_window
  {%- endif -%}
{% endmacro %}

{# GTFS time 'H:MM:SS' (hours may pass 24) as seconds after noon minus 12 h of the service day. #}
{% macro gtfs_time_seconds(column) -%}
    case when nullif(trim({{ column }}), '') is not null then
        cast(split_part(trim({{ column }}), ':', 1) as integer) * 3600
        + cast(split_part(trim({{ column }}), ':', 2) as integer) * 60
        + cast(split_part(trim({{ column }}), ':', 3) as integer)
    end
{%- endmacro %}
