-- Every trip of every mode in one shape: MDS micromobility, bike-share and ride-hail.
-- Ride-hail files give the pickup/dropoff neighborhood (community area) and only its centroid,
-- which may be blank: the reported neighborhood is kept beside the coordinates, so fct_trips
-- can place a trip by either and no trip is dropped for lacking coordinates.
with mds as (
    select
        trip_key,
        partner_id,
        batch_id,
        bronze_file,
        'mds_trips' as feed,
        trip_id,
        {{ mds_vehicle_mode('vehicle_type') }} as mode,
        start_at,
        end_at,
        duration_s,
        distance_m,
        start_lat,
        start_lon,
        end_lat,
        end_lon,
        cast(null as integer) as start_reported_neighborhood_id,
        cast(null as integer) as end_reported_neighborhood_id,
        cast(null as varchar) as start_station_id,
        cast(null as varchar) as end_station_id,
        cast(null as varchar) as pass_type
    from {{ ref('stg_mds__trips') }}
),

bikeshare as (
    select
        trip_key,
        partner_id,
        batch_id,
        bronze_file,
        'bikeshare_trips' as feed,
        trip_id,
        'bikeshare' as mode,
        start_at,
        end_at,
        duration_s,
        cast(null as double) as distance_m,
        start_lat,
        start_lon,
        end_lat,
        end_lon,
        cast(null as integer) as start_reported_neighborhood_id,
        cast(null as integer) as end_reported_neighborhood_id,
        start_station_id,
        end_station_id,
        pass_type
    from {{ ref('stg_bikeshare__trips') }}
),

ridehail as (
    select
        trip_key,
        partner_id,
        batch_id,
        bronze_file,
        'ridehail_trips' as feed,
        trip_id,
        'ridehail' as mode,
        start_at,
        end_at,
        duration_s,
        distance_m,
        pickup_centroid_lat as start_lat,
        pickup_centroid_lon as start_lon,
        dropoff_centroid_lat as end_lat,
        dropoff_centroid_lon as end_lon,
        pickup_neighborhood_id as start_reported_neighborhood_id,
        dropoff_neighborhood_id as end_reported_neighborhood_id,
        cast(null as varchar) as start_station_id,
        cast(null as varchar) as end_station_id,
        cast(null as varchar) as pass_type
    from {{ ref('stg_ridehail__trips') }}
)

select * from mds
union all
select * from bikeshare
union all
select * from ridehail
