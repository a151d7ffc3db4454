-- One row per origin x destination (null = outside/unknown) x local day x mode.
select origin_neighborhood_id, destination_neighborhood_id, trip_date, mode, count(*) as n_rows
from {{ ref('mart_od_flows') }}
group by origin_neighborhood_id, destination_neighborhood_id, trip_date, mode
having count(*) > 1
