-- Residents within var coverage_radius_m (400 m) of an available vehicle, per neighborhood,
-- mode and snapshot window (five minutes; partners' snapshots of the same window are pooled),
-- on the grid of int_resident_cells. Mode 'any' pools every mode. Rows only where some resident
-- is covered; the mart fills the zeros.
{% set radius = var('coverage_radius_m') %}
with cells as (
    select *, cast(floor(x_m / {{ radius }}) as bigint) as bx, cast(floor(y_m / {{ radius }}) as bigint) as by_
    from {{ ref('int_resident_cells') }}
),

-- the same plane as the cells (same origin and scale)
plane as (
    select
        avg(st_y(st_centroid(geometry))) as lat0,
        avg(st_x(st_centroid(geometry))) as lon0
    from {{ ref('stg_city__neighborhoods') }}
),

points as (
    select snapshot_at, mode, x_m, y_m
    from (
        select
            p.snapshot_at,
            p.mode,
            (p.lon - plane.lon0) * {{ m_per_deg_lon('plane.lat0') }} as x_m,
            (p.lat - plane.lat0) * {{ m_per_deg_lat('plane.lat0') }} as y_m
        from {{ ref('int_available_supply_points') }} as p cross join plane
    )
    union all by name
    select snapshot_at, 'any' as mode, x_m, y_m
    from (
        select
            p.snapshot_at,
            (p.lon - plane.lon0) * {{ m_per_deg_lon('plane.lat0') }} as x_m,
            (p.lat - plane.lat0) * {{ m_per_deg_lat('plane.lat0') }} as y_m
        from {{ ref('int_available_supply_points') }} as p cross join plane
    )
),

-- a point covers cells in its own bucket (radius-sized squares) and the eight around it
point_buckets as (
    select points.*, cast(floor(x_m / {{ radius }}) as bigint) + dx as bx, cast(floor(y_m / {{ radius }}) as bigint) + dy as by_
    from points, (select unnest([-1, 0, 1]) as dx), (select unnest([-1, 0, 1]) as dy)
),

covered as (
    select distinct point_buckets.snapshot_at, point_buckets.mode, cells.cell_id
    from point_buckets
    inner join cells on point_buckets.bx = cells.bx and point_buckets.by_ = cells.by_
    where (cells.x_m - point_buckets.x_m) ^ 2 + (cells.y_m - point_buckets.y_m) ^ 2 <= {{ radius }} ^ 2
),

final as (
    select
        covered.snapshot_at,
        covered.mode,
        cells.neighborhood_id,
        sum(cells.residents) as residents_covered
    from covered
    inner join cells on covered.cell_id = cells.cell_id
    group by all
)

select * from final
