-- Every stop of the latest GTFS versions with the neighborhood containing it (null outside all).
with stops as (
    select * from {{ ref('stg_gtfs__stops') }}
),

neighborhoods as (
    select neighborhood_id, geometry from {{ ref('stg_city__neighborhoods') }}
),

-- an inner join on ST_Contains lets DuckDB plan a spatial join; min() is deterministic should
-- polygons overlap
assignments as (
    select stops.stop_key, min(neighborhoods.neighborhood_id) as neighborhood_id
    from stops
    inner join neighborhoods on st_contains(neighborhoods.geometry, st_point(stops.stop_lon, stops.stop_lat))
    group by stops.stop_key
),

final as (
    select
        stops.stop_key,
        stops.partner_id,
        stops.stop_id,
        stops.stop_name,
        stops.location_type,
        stops.stop_lat as lat,
        stops.stop_lon as lon,
        assignments.neighborhood_id
    from stops
    left join assignments on stops.stop_key = assignments.stop_key
    where stops.stop_lat is not null and stops.stop_lon is not null
)

select * from final
