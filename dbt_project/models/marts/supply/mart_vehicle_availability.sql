-- Average available vehicles per neighborhood, local hour and mode, and per 1,000 residents.
-- Every neighborhood appears for every hour and mode some snapshot covers (zero-filled), so a
-- neighborhood without vehicles shows as 0, not as a missing row. Partners of a mode are summed.
with neighborhoods as (
    select * from {{ ref('stg_city__neighborhoods') }}
),

hours as (
    select distinct local_date, local_hour, mode
    from {{ ref('int_supply_snapshots') }}
    where is_source_of_record and mode is not null
),

available as (
    select neighborhood_id, local_date, local_hour, mode, sum(avg_available_vehicles) as avg_available_vehicles
    from {{ ref('int_vehicle_availability_hourly') }}
    group by all
),

final as (
    select
        neighborhoods.neighborhood_id,
        neighborhoods.neighborhood_name,
        hours.local_date,
        hours.local_hour,
        hours.mode,
        round(coalesce(available.avg_available_vehicles, 0), 4) as avg_available_vehicles,
        neighborhoods.population,
        round(coalesce(available.avg_available_vehicles, 0) * 1000.0 / nullif(neighborhoods.population, 0), 4)
            as available_per_1000_residents,
        neighborhoods.income_quintile,
        neighborhoods.equity_zone
    from neighborhoods
    cross join hours
    left join available
        on neighborhoods.neighborhood_id = available.neighborhood_id
        and hours.local_date = available.local_date
        and hours.local_hour = available.local_hour
        and hours.mode = available.mode
)

select * from final
