-- One row per neighborhood x local day x mode: the mart's composite primary key.
select neighborhood_id, trip_date, mode, count(*) as n_rows
from {{ ref('mart_trips_per_neighborhood_day') }}
group by neighborhood_id, trip_date, mode
having count(*) > 1
