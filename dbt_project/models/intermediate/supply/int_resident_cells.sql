-- Where residents live, as the city knows it: each neighborhood's population spread evenly over
-- its area, measured on a grid of square cells (var coverage_cell_m, 100 m) whose centres fall
-- inside the polygon. Coordinates are metres on a local plane centred on the city (WGS84 metres
-- per degree at its centre: under a metre of error at 400 m across a 50 km city), so distances
-- are plain Euclidean. A polygon too small to hold a cell centre gets one cell at a
-- point on its surface, so its residents are never dropped.
{% set cell = var('coverage_cell_m') %}
with neighborhoods as (
    select neighborhood_id, population, geometry from {{ ref('stg_city__neighborhoods') }}
),

origin as (
    select
        avg(st_y(st_centroid(geometry))) as lat0,
        avg(st_x(st_centroid(geometry))) as lon0
    from neighborhoods
),

plane as (
    select lat0, lon0, {{ m_per_deg_lon('lat0') }} as m_per_deg_lon, {{ m_per_deg_lat('lat0') }} as m_per_deg_lat
    from origin
),

bounds as (
    select
        neighborhoods.*,
        plane.*,
        cast(floor((st_xmin(geometry) - lon0) * m_per_deg_lon / {{ cell }}) as bigint) as ix0,
        cast(floor((st_xmax(geometry) - lon0) * m_per_deg_lon / {{ cell }}) as bigint) as ix1,
        cast(floor((st_ymin(geometry) - lat0) * m_per_deg_lat / {{ cell }}) as bigint) as iy0,
        cast(floor((st_ymax(geometry) - lat0) * m_per_deg_lat / {{ cell }}) as bigint) as iy1
    from neighborhoods cross join plane
),

grid as (
    select neighborhood_id, geometry, lat0, lon0, m_per_deg_lon, m_per_deg_lat,
        unnest(range(ix0, ix1 + 1)) as ix, iy0, iy1
    from bounds
),

candidates as (
    select *, (ix + 0.5) * {{ cell }} as x_m, (unnest(range(iy0, iy1 + 1)) + 0.5) * {{ cell }} as y_m
    from grid
),

inside as (
    select neighborhood_id, x_m, y_m, lon0 + x_m / m_per_deg_lon as lon, lat0 + y_m / m_per_deg_lat as lat
    from candidates
    where st_contains(geometry, st_point(lon0 + x_m / m_per_deg_lon, lat0 + y_m / m_per_deg_lat))
),

fallback as (
    select
        bounds.neighborhood_id,
        (st_x(st_pointonsurface(bounds.geometry)) - bounds.lon0) * bounds.m_per_deg_lon as x_m,
        (st_y(st_pointonsurface(bounds.geometry)) - bounds.lat0) * bounds.m_per_deg_lat as y_m,
        st_x(st_pointonsurface(bounds.geometry)) as lon,
        st_y(st_pointonsurface(bounds.geometry)) as lat
    from bounds
    where bounds.neighborhood_id not in (select neighborhood_id from inside)
),

cells as (
    select * from inside
    union all
    select * from fallback
),

final as (
    select
        cells.neighborhood_id,
        row_number() over (order by cells.neighborhood_id, cells.x_m, cells.y_m) as cell_id,
        cells.x_m,
        cells.y_m,
        cells.lon,
        cells.lat,
        neighborhoods.population * 1.0 / count(*) over (partition by cells.neighborhood_id) as residents
    from cells
    inner join neighborhoods on cells.neighborhood_id = neighborhoods.neighborhood_id
)

select * from final
