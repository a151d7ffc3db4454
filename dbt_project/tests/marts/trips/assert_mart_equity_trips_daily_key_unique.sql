-- One row per local day x mode.
select trip_date, mode, count(*) as n_rows
from {{ ref('mart_equity_trips_daily') }}
group by trip_date, mode
having count(*) > 1
