-- The hours of a neighborhood's day add up to its trips started that day (the total the
-- publication's complementary suppression of hour cells relies on).
with hours as (
    select neighborhood_id, trip_date, mode, sum(trips_started) as trips_started
    from {{ ref('mart_trips_per_neighborhood_mode_hour') }}
    group by all
)

select days.neighborhood_id, days.trip_date, days.mode, days.trips_started, hours.trips_started as from_hours
from {{ ref('mart_trips_per_neighborhood_day') }} as days
left join hours using (neighborhood_id, trip_date, mode)
where days.trips_started <> coalesce(hours.trips_started, 0)
