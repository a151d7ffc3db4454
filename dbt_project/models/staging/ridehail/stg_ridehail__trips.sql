-- Ride-hail trips as landed: renamed, cast, put in explicit units, local wall-clock times turned
-- into instants in the city's zone. No joins, no filtering.
-- depends_on: {{ ref('stg_lake__manifests') }}  (the trip tests' scope lists this view's new batches
-- from the manifests: they must be read before these tests run; see macros/test_scope.sql)
with source as (
    {{ lake_source('ridehail', 'trips') }}
),

renamed as (
    select
        partner_id,
        batch_id,
        -- the landed file the row was read from, in its dataset's folder: a filter on it lets the
        -- scan skip the lake's other files unopened
        {{ lake_relative_path('filename', 'ridehail', 'trips') }} as bronze_file,
        trip_id,
        partner_id || '|' || trip_id as trip_key,
        -- naive local wall-clock time -> instant: timezone(zone, timestamp) reads it in that zone
        timezone('{{ var("city_timezone") }}', cast(trip_start_timestamp as timestamp)) as start_at,
        timezone('{{ var("city_timezone") }}', cast(trip_end_timestamp as timestamp)) as end_at,
        cast(trip_seconds as bigint) as duration_s,
        cast(trip_miles as double) * 1609.344 as distance_m,
        cast(pickup_community_area as integer) as pickup_neighborhood_id,
        cast(dropoff_community_area as integer) as dropoff_neighborhood_id,
        cast(pickup_centroid_latitude as double) as pickup_centroid_lat,
        cast(pickup_centroid_longitude as double) as pickup_centroid_lon,
        cast(dropoff_centroid_latitude as double) as dropoff_centroid_lat,
        cast(dropoff_centroid_longitude as double) as dropoff_centroid_lon,
        cast(fare as decimal(10, 2)) as fare_usd,
        cast(tip as decimal(10, 2)) as tip_usd,
        cast(additional_charges as decimal(10, 2)) as additional_charges_usd,
        cast(trip_total as decimal(10, 2)) as trip_total_usd,
        cast(shared_trip_authorized as boolean) as is_shared_trip_authorized,
        cast(trips_pooled as integer) as trips_pooled
    from source
)

select * from renamed
