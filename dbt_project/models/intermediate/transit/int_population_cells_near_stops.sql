-- Pairs of population cell and stop no more than `near_frequent_service_m` metres apart, with
-- their distance: the catchment of every stop, whichever hours it is frequent in.
with cells as (
    select cell_id, neighborhood_id, lon, lat from {{ ref('int_population_cells') }}
),

stops as (
    select stop_key, lon, lat from {{ ref('int_transit_stops_assigned_to_neighborhoods') }}
    where location_type = 0
),

reach as (
    select greatest(
        (select max(abs(lat)) from cells), (select max(abs(lat)) from stops)
    ) + 0.1 as max_abs_lat
),

cell_bins as (
    select
        cells.*,
        {{ metre_bin_x('cells.lon', var('near_frequent_service_m'), 'reach.max_abs_lat') }} as bin_x,
        {{ metre_bin_y('cells.lat', var('near_frequent_service_m')) }} as bin_y
    from cells cross join reach
),

stop_bins as (
    select
        stops.*,
        {{ metre_bin_x('stops.lon', var('near_frequent_service_m'), 'reach.max_abs_lat') }} + dx as bin_x,
        {{ metre_bin_y('stops.lat', var('near_frequent_service_m')) }} + dy as bin_y
    from stops
    cross join reach
    cross join (values (-1), (0), (1)) as offsets_x(dx)
    cross join (values (-1), (0), (1)) as offsets_y(dy)
),

pairs as (
    select
        cell_bins.cell_id,
        cell_bins.neighborhood_id,
        stop_bins.stop_key,
        {{ distance_m('cell_bins.lon', 'cell_bins.lat', 'stop_bins.lon', 'stop_bins.lat') }} as distance_m
    from cell_bins
    inner join stop_bins
        on cell_bins.bin_x = stop_bins.bin_x
        and cell_bins.bin_y = stop_bins.bin_y
)

select * from pairs
where distance_m <= {{ var('near_frequent_service_m') }}
