-- Bike-share trips as landed: renamed, cast, put in explicit units, local wall-clock times turned
-- into instants in the city's zone. No joins, no filtering.
-- depends_on: {{ ref('stg_lake__manifests') }}  (the trip tests' scope lists this view's new batches
-- from the manifests: they must be read before these tests run; see macros/test_scope.sql)
with source as (
    {{ lake_source('bikeshare', 'trips') }}
),

renamed as (
    select
        partner_id,
        batch_id,
        -- the landed file the row was read from, in its dataset's folder: a filter on it lets the
        -- scan skip the lake's other files unopened
        {{ lake_relative_path('filename', 'bikeshare', 'trips') }} as bronze_file,
        trip_id,
        partner_id || '|' || trip_id as trip_key,
        bike_id,
        -- naive local wall-clock time -> instant: timezone(zone, timestamp) reads it in that zone
        timezone('{{ var("city_timezone") }}', cast(start_time as timestamp)) as start_at,
        timezone('{{ var("city_timezone") }}', cast(end_time as timestamp)) as end_at,
        cast(duration as bigint) * 60 as duration_s,
        cast(start_station as varchar) as start_station_id,
        cast(end_station as varchar) as end_station_id,
        cast(start_lat as double) as start_lat,
        cast(start_lon as double) as start_lon,
        cast(end_lat as double) as end_lat,
        cast(end_lon as double) as end_lon,
        cast(plan_duration as integer) as plan_duration_days,
        trip_route_category,
        passholder_type as pass_type,
        bike_type
    from source
)

select * from renamed
