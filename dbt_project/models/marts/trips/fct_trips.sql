-- One row per trip of every mode, keyed by partner + trip id, with its neighborhoods and local
-- day/hour. Incremental: the fact holds, for every trip-feed window, the rows of the window's
-- current batch (int_trip_batches_current). A build reads and places only the batches the fact
-- does not hold yet (a new day, a late window, a corrected resubmission) and replaces their
-- windows: the pre-hook deletes the rows of those windows (their earlier batches, which also
-- covers a window corrected to an empty file) on the days int_trip_batch_days says those batches
-- cover, so the delete reads only those days' row groups, not the whole fact. An incremental load
-- (a day or so) is written in start-day order for the same reason; a full build is not sorted:
-- sorting all history under the memory cap spills (fct_trips took 577 s of a 923 s full build at
-- 10M trips with the sort), and the lake's files, read window by window, keep row groups to a
-- few days anyway.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}{{ trip_fact_delete_replaced(this) }}{% endif %}"
) }}
-- depends_on: {{ ref('int_trip_batch_days') }}

{#- The new batches are looked up first and inlined as constants, with their bronze files'
    names: the scans then open those files only, instead of a join after reading every batch of
    the lake (trip_batches_filter). -#}
{%- set new_batch_ids = new_trip_batch_ids(this) if execute and is_incremental() else [] -%}
{%- set new_batches = sql_values(new_batch_ids) %}

with batches as (
    select * from {{ ref('int_trip_batches_current') }}
    {%- if is_incremental() %}
    where batch_id in {{ new_batches }}
    {%- endif %}
),

trips as (
    select unified.*, batches.source_window, batches.landed_at
    from {{ ref('int_trips_unified') }} as unified
    inner join batches on unified.batch_id = batches.batch_id
    {%- if is_incremental() %}
    where {{ trip_batches_filter(new_batch_ids, 'unified.') }}
    {%- endif %}
),

neighborhoods as (
    select neighborhood_id, geometry from {{ ref('stg_city__neighborhoods') }}
),

-- Points are placed only where no neighborhood was reported. Inner joins on ST_Contains let
-- DuckDB plan a spatial join; min() picks one neighborhood should polygons overlap.
start_points as (
    select trips.trip_key, min(neighborhoods.neighborhood_id) as neighborhood_id
    from trips
    inner join neighborhoods on st_contains(neighborhoods.geometry, st_point(trips.start_lon, trips.start_lat))
    where trips.start_reported_neighborhood_id is null
    group by trips.trip_key
),

end_points as (
    select trips.trip_key, min(neighborhoods.neighborhood_id) as neighborhood_id
    from trips
    inner join neighborhoods on st_contains(neighborhoods.geometry, st_point(trips.end_lon, trips.end_lat))
    where trips.end_reported_neighborhood_id is null
    group by trips.trip_key
),

final as (
    select
        trips.trip_key,
        trips.partner_id,
        trips.mode,
        trips.start_at,
        trips.end_at,
        trips.duration_s,
        trips.distance_m,
        coalesce(trips.start_reported_neighborhood_id, start_points.neighborhood_id) as start_neighborhood_id,
        coalesce(trips.end_reported_neighborhood_id, end_points.neighborhood_id) as end_neighborhood_id,
        -- timezone(zone, timestamptz) gives the wall-clock time there, whatever the session zone
        cast(timezone('{{ var("city_timezone") }}', trips.start_at) as date) as start_local_date,
        cast(hour(timezone('{{ var("city_timezone") }}', trips.start_at)) as tinyint) as start_local_hour,
        cast(timezone('{{ var("city_timezone") }}', trips.end_at) as date) as end_local_date,
        cast(hour(timezone('{{ var("city_timezone") }}', trips.end_at)) as tinyint) as end_local_hour,
        trips.start_lat,
        trips.start_lon,
        trips.end_lat,
        trips.end_lon,
        trips.start_station_id,
        trips.end_station_id,
        trips.pass_type,
        case
            when trips.start_reported_neighborhood_id is not null then 'reported'
            when trips.start_lon is not null and trips.start_lat is not null then 'point'
            else 'unknown'
        end as start_location_source,
        case
            when trips.end_reported_neighborhood_id is not null then 'reported'
            when trips.end_lon is not null and trips.end_lat is not null then 'point'
            else 'unknown'
        end as end_location_source,
        trips.trip_id,
        trips.feed,
        trips.batch_id,
        trips.source_window,
        trips.landed_at,
        cast('{{ run_started_at.isoformat() }}' as timestamptz) as loaded_at
    from trips
    left join start_points on trips.trip_key = start_points.trip_key
    left join end_points on trips.trip_key = end_points.trip_key
)

select * from final
{% if is_incremental() %}order by start_local_date{% endif %}
