-- The flows out of an origin add up to the trips started there (the total the publication's
-- complementary suppression of OD cells relies on).
with flows as (
    select origin_neighborhood_id as neighborhood_id, trip_date, mode, sum(trips) as trips
    from {{ ref('mart_od_flows') }}
    group by all
),

started as (
    select neighborhood_id, trip_date, mode, trips_started
    from {{ ref('mart_trips_per_neighborhood_day') }}
)

select started.*, flows.trips
from started
full outer join flows using (neighborhood_id, trip_date, mode)
where coalesce(started.trips_started, 0) <> coalesce(flows.trips, 0)
