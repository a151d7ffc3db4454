-- Trips started and ended per neighborhood, mode, local day and local hour, per 1,000 residents.
-- Started counts a trip at its start's day/hour and neighborhood, ended at its end's. Every
-- neighborhood appears for every hour of every day in the loaded range and every mode (zero-filled).
with trips as (
    select * from {{ ref('fct_trips') }}
),

neighborhoods as (
    select * from {{ ref('stg_city__neighborhoods') }}
),

day_bounds as (
    select
        least(min(start_local_date), min(end_local_date)) as first_day,
        greatest(max(start_local_date), max(end_local_date)) as last_day
    from trips
),

days as (
    select cast(day as date) as trip_date
    from day_bounds, range(day_bounds.first_day, day_bounds.last_day + interval 1 day, interval 1 day) as t(day)
),

hours as (
    select cast(h as tinyint) as local_hour from range(0, 24) as t(h)
),

modes as (
    select distinct mode from trips
),

spine as (
    select neighborhoods.neighborhood_id, days.trip_date, hours.local_hour, modes.mode
    from neighborhoods cross join days cross join hours cross join modes
),

started as (
    select
        start_neighborhood_id as neighborhood_id, start_local_date as trip_date, start_local_hour as local_hour,
        mode, count(*) as trips_started
    from trips
    where start_neighborhood_id is not null
    group by all
),

ended as (
    select
        end_neighborhood_id as neighborhood_id, end_local_date as trip_date, end_local_hour as local_hour,
        mode, count(*) as trips_ended
    from trips
    where end_neighborhood_id is not null
    group by all
),

final as (
    select
        spine.neighborhood_id,
        neighborhoods.neighborhood_name,
        spine.trip_date,
        spine.local_hour,
        spine.mode,
        coalesce(started.trips_started, 0) as trips_started,
        coalesce(ended.trips_ended, 0) as trips_ended,
        neighborhoods.population,
        -- no residents, no rate: null rather than a division by zero
        round(coalesce(started.trips_started, 0) * 1000.0 / nullif(neighborhoods.population, 0), 4)
            as trips_started_per_1000_residents,
        round(coalesce(ended.trips_ended, 0) * 1000.0 / nullif(neighborhoods.population, 0), 4)
            as trips_ended_per_1000_residents,
        neighborhoods.income_quintile,
        neighborhoods.equity_zone
    from spine
    inner join neighborhoods on spine.neighborhood_id = neighborhoods.neighborhood_id
    left join started
        on spine.neighborhood_id = started.neighborhood_id
        and spine.trip_date = started.trip_date
        and spine.local_hour = started.local_hour
        and spine.mode = started.mode
    left join ended
        on spine.neighborhood_id = ended.neighborhood_id
        and spine.trip_date = ended.trip_date
        and spine.local_hour = ended.local_hour
        and spine.mode = ended.mode
)

select * from final
