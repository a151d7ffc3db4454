-- Bike-share docks and their use per neighborhood and local day: docks per 1,000 residents
-- and trips started per dock. Docks are the capacity of the stations the operator lists in the
-- neighborhood (int_bikeshare_stations); days are those with any bike-share trip or snapshot.
with neighborhoods as (
    select * from {{ ref('stg_city__neighborhoods') }}
),

stations as (
    select * from {{ ref('int_bikeshare_stations') }} where neighborhood_id is not null
),

docks as (
    select neighborhood_id, count(*) as stations, sum(capacity) as docks
    from stations
    group by all
),

trips as (
    select * from {{ ref('int_bikeshare_trips') }}
),

days as (
    select distinct start_local_date as local_date from trips
    union
    select distinct local_date from {{ ref('int_supply_snapshots') }} where dataset = 'gbfs_station_status'
),

-- a trip counts where its station stands (the neighborhood of its start point otherwise)
started as (
    select coalesce(stations.neighborhood_id, trips.start_neighborhood_id) as neighborhood_id,
        trips.start_local_date as local_date, count(*) as trips_started
    from trips
    left join stations on trips.start_station_key = stations.station_key
    group by all
),

final as (
    select
        neighborhoods.neighborhood_id,
        neighborhoods.neighborhood_name,
        days.local_date,
        coalesce(docks.stations, 0) as stations,
        coalesce(docks.docks, 0) as docks,
        neighborhoods.population,
        round(coalesce(docks.docks, 0) * 1000.0 / nullif(neighborhoods.population, 0), 4) as docks_per_1000_residents,
        coalesce(started.trips_started, 0) as trips_started,
        -- no docks, no rate (trips may still start there from a station just outside)
        round(coalesce(started.trips_started, 0) * 1.0 / nullif(docks.docks, 0), 4) as trips_per_dock,
        neighborhoods.income_quintile,
        neighborhoods.equity_zone
    from neighborhoods
    cross join days
    left join docks on neighborhoods.neighborhood_id = docks.neighborhood_id
    left join started
        on neighborhoods.neighborhood_id = started.neighborhood_id and days.local_date = started.local_date
)

select * from final
