-- One row per neighborhood x local day x local hour x mode: the mart's composite primary key.
select neighborhood_id, trip_date, local_hour, mode, count(*) as n_rows
from {{ ref('mart_trips_per_neighborhood_mode_hour') }}
group by neighborhood_id, trip_date, local_hour, mode
having count(*) > 1
