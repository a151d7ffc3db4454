-- MDS trips as landed: renamed, cast and put in explicit units. No joins, no filtering.
-- depends_on: {{ ref('stg_lake__manifests') }}  (the trip tests' scope lists this view's new batches
-- from the manifests: they must be read before these tests run; see macros/test_scope.sql)
with source as (
    {{ lake_source('mds', 'trips') }}
),

renamed as (
    select
        partner_id,
        batch_id,
        -- the landed file the row was read from, in its dataset's folder: a filter on it lets the
        -- scan skip the lake's other files unopened
        {{ lake_relative_path('filename', 'mds', 'trips') }} as bronze_file,
        provider_id,
        device_id,
        trip_id,
        -- the partner comes from credentials/drop location, never the payload: key on it
        partner_id || '|' || trip_id as trip_key,
        vehicle_type,
        cast(start_time as timestamptz) as start_at,
        cast(end_time as timestamptz) as end_at,
        cast(duration as bigint) as duration_s,
        cast(distance as double) as distance_m,
        cast(start_lon as double) as start_lon,
        cast(start_lat as double) as start_lat,
        cast(end_lon as double) as end_lon,
        cast(end_lat as double) as end_lat,
        st_point(start_lon, start_lat) as start_point,
        st_point(end_lon, end_lat) as end_point
    from source
)

select * from renamed
