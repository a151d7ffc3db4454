-- Scheduled transit service per neighborhood, local day and hour: departures at the stops in the
-- neighborhood, how many of its stops are frequent that hour, and the share of its residents
-- within `near_frequent_service_m` metres (default 400) of a stop frequent that hour, wherever
-- that stop is (service near a boundary serves both sides). Every neighborhood x day x hour of
-- the analysed period appears, zero-filled.
with neighborhoods as (
    select * from {{ ref('stg_city__neighborhoods') }}
),

period as (
    select * from {{ ref('int_transit_period') }}
),

stops as (
    select neighborhood_id, count(*) as stops
    from {{ ref('int_transit_stops_assigned_to_neighborhoods') }}
    where location_type = 0 and neighborhood_id is not null
    group by neighborhood_id
),

departures as (
    select * from {{ ref('int_transit_departures') }}
),

frequent_stops as (
    select * from {{ ref('int_transit_frequent_stops') }}
),

cells as (
    select * from {{ ref('int_population_cells') }}
),

near_stops as (
    select * from {{ ref('int_population_cells_near_stops') }}
),

days as (
    select cast(day as date) as local_date
    from period, range(period.first_day, period.last_day + 1, interval 1 day) as t(day)
),

spine as (
    select neighborhoods.neighborhood_id, days.local_date, cast(hours.local_hour as tinyint) as local_hour
    from neighborhoods
    cross join days
    cross join range(0, 24) as hours(local_hour)
),

service as (
    select
        neighborhood_id,
        local_date,
        local_hour,
        sum(departures) as departures,
        count(*) filter (where max_route_direction_departures >= {{ var('frequent_departures_per_hour') }})
            as frequent_stops
    from departures
    where neighborhood_id is not null
    group by all
),

-- each cell counted once per hour, however many frequent stops it is near
covered_cells as (
    select distinct near_stops.cell_id, frequent_stops.local_date, frequent_stops.local_hour
    from near_stops
    inner join frequent_stops on near_stops.stop_key = frequent_stops.stop_key
),

coverage as (
    select cells.neighborhood_id, covered_cells.local_date, covered_cells.local_hour,
        sum(cells.population) as residents_near_frequent_service
    from covered_cells
    inner join cells on covered_cells.cell_id = cells.cell_id
    group by all
),

final as (
    select
        spine.neighborhood_id,
        neighborhoods.neighborhood_name,
        spine.local_date,
        spine.local_hour,
        cast(coalesce(stops.stops, 0) as integer) as stops,
        cast(coalesce(service.departures, 0) as integer) as departures,
        cast(coalesce(service.frequent_stops, 0) as integer) as frequent_stops,
        neighborhoods.population,
        round(coalesce(coverage.residents_near_frequent_service, 0), 1) as residents_near_frequent_service,
        -- no residents, no share; least() absorbs float error in a fully covered neighborhood
        round(least(coalesce(coverage.residents_near_frequent_service, 0) / nullif(neighborhoods.population, 0), 1.0), 4)
            as share_near_frequent_service,
        neighborhoods.income_quintile,
        neighborhoods.equity_zone
    from spine
    inner join neighborhoods on spine.neighborhood_id = neighborhoods.neighborhood_id
    left join stops on spine.neighborhood_id = stops.neighborhood_id
    left join service
        on spine.neighborhood_id = service.neighborhood_id
        and spine.local_date = service.local_date
        and spine.local_hour = service.local_hour
    left join coverage
        on spine.neighborhood_id = coverage.neighborhood_id
        and spine.local_date = coverage.local_date
        and spine.local_hour = coverage.local_hour
)

select * from final
