-- Residents on a grid: each neighborhood's population spread uniformly over its polygon and
-- measured on square cells of `population_cell_m` metres clipped to it. A cell cut by a boundary
-- becomes one piece per neighborhood, each with its share of that neighborhood's residents
-- (piece area / polygon area), so a neighborhood's cells add up to its population. The point of
-- a piece (lon, lat) is its centroid: coverage questions ("within 400 m of ...") are asked of it.
with neighborhoods as (
    select
        neighborhood_id,
        population,
        geometry,
        st_area(geometry) as area_deg2,
        st_xmin(geometry) as xmin,
        st_ymin(geometry) as ymin,
        st_xmax(geometry) as xmax,
        st_ymax(geometry) as ymax
    from {{ ref('stg_city__neighborhoods') }}
),

-- one grid for the whole city, anchored at its south-west corner; cells are square (metres) at
-- the city's mid latitude, and population shares use areas, so their exact shape does not matter
grid as (
    select
        min(xmin) as x0,
        min(ymin) as y0,
        {{ var('population_cell_m') }} / 111195.0 as dlat,
        {{ var('population_cell_m') }} / (111195.0 * cos(radians((min(ymin) + max(ymax)) / 2))) as dlon
    from neighborhoods
),

columns_of as (
    select
        neighborhoods.*,
        grid.x0, grid.y0, grid.dlon, grid.dlat,
        unnest(range(
            cast(floor((neighborhoods.xmin - grid.x0) / grid.dlon) as bigint),
            cast(floor((neighborhoods.xmax - grid.x0) / grid.dlon) as bigint) + 1
        )) as grid_x
    from neighborhoods cross join grid
),

candidates as (
    select
        columns_of.*,
        unnest(range(
            cast(floor((ymin - y0) / dlat) as bigint),
            cast(floor((ymax - y0) / dlat) as bigint) + 1
        )) as grid_y
    from columns_of
),

pieces as (
    select
        neighborhood_id,
        population,
        area_deg2,
        grid_x,
        grid_y,
        st_intersection(geometry, cell) as piece
    from (
        select *, st_makeenvelope(x0 + grid_x * dlon, y0 + grid_y * dlat, x0 + (grid_x + 1) * dlon, y0 + (grid_y + 1) * dlat) as cell
        from candidates
    )
    where st_intersects(geometry, cell)
),

final as (
    select
        neighborhood_id || ':' || grid_x || ':' || grid_y as cell_id,
        neighborhood_id,
        grid_x,
        grid_y,
        st_x(st_centroid(piece)) as lon,
        st_y(st_centroid(piece)) as lat,
        population * st_area(piece) / area_deg2 as population
    from pieces
    where st_area(piece) > 0 and area_deg2 > 0
)

select * from final
