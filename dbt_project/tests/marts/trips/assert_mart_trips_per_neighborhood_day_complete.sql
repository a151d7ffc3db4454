-- Zero-fill: every neighborhood appears for every (day, mode) present in the mart.
with neighborhoods as (
    select count(*) as n from {{ ref('stg_city__neighborhoods') }}
),

per_day as (
    select trip_date, mode, count(distinct neighborhood_id) as n
    from {{ ref('mart_trips_per_neighborhood_day') }}
    group by trip_date, mode
)

select per_day.*
from per_day cross join neighborhoods
where per_day.n <> neighborhoods.n
