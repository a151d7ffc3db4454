-- One row per trip with the neighborhoods its start and end points fall in (null when outside
-- every polygon) and its local start day/hour in the city's timezone.
with trips as (
    select * from {{ ref('stg_mds__trips') }}
),

neighborhoods as (
    select neighborhood_id, geometry from {{ ref('stg_city__neighborhoods') }}
),

-- Inner joins on ST_Contains let DuckDB plan a spatial join; min() picks one neighborhood
-- deterministically should polygons overlap (points on a shared edge are in neither).
start_assignments as (
    select trips.trip_key, min(neighborhoods.neighborhood_id) as neighborhood_id
    from trips
    inner join neighborhoods on st_contains(neighborhoods.geometry, trips.start_point)
    group by trips.trip_key
),

end_assignments as (
    select trips.trip_key, min(neighborhoods.neighborhood_id) as neighborhood_id
    from trips
    inner join neighborhoods on st_contains(neighborhoods.geometry, trips.end_point)
    group by trips.trip_key
),

assigned as (
    select
        trips.trip_key,
        trips.partner_id,
        trips.provider_id,
        trips.trip_id,
        trips.vehicle_type,
        trips.start_at,
        trips.end_at,
        trips.duration_s,
        trips.distance_m,
        trips.start_lat,
        trips.start_lon,
        trips.end_lat,
        trips.end_lon,
        start_assignments.neighborhood_id as start_neighborhood_id,
        end_assignments.neighborhood_id as end_neighborhood_id,
        -- timezone(zone, timestamptz) gives the wall-clock time there, whatever the session zone
        cast(timezone('{{ var("city_timezone") }}', trips.start_at) as date) as start_local_date,
        cast(hour(timezone('{{ var("city_timezone") }}', trips.start_at)) as tinyint) as start_local_hour,
        cast(timezone('{{ var("city_timezone") }}', trips.end_at) as date) as end_local_date,
        cast(hour(timezone('{{ var("city_timezone") }}', trips.end_at)) as tinyint) as end_local_hour
    from trips
    left join start_assignments on trips.trip_key = start_assignments.trip_key
    left join end_assignments on trips.trip_key = end_assignments.trip_key
)

select * from assigned
