-- The mix of pass types of bike-share trips by the income quintile of the start neighborhood
-- and local day. Every pass type seen appears for every quintile and day (zero-filled). No share
-- column: with a suppressed cell, the shares of the visible ones would give the total back.
with trips as (
    select
        coalesce(stations.neighborhood_id, trips.start_neighborhood_id) as neighborhood_id,
        trips.start_local_date as local_date,
        trips.pass_type
    from {{ ref('int_bikeshare_trips') }} as trips
    left join {{ ref('int_bikeshare_stations') }} as stations on trips.start_station_key = stations.station_key
),

neighborhoods as (
    select * from {{ ref('stg_city__neighborhoods') }}
),

spine as (
    select quintiles.income_quintile, days.local_date, passes.pass_type
    from (select distinct income_quintile from neighborhoods) as quintiles
    cross join (select distinct local_date from trips) as days
    cross join (select distinct pass_type from trips) as passes
),

counted as (
    select neighborhoods.income_quintile, trips.local_date, trips.pass_type, count(*) as trips_started
    from trips
    inner join neighborhoods on trips.neighborhood_id = neighborhoods.neighborhood_id
    group by all
),

final as (
    select
        spine.income_quintile,
        spine.local_date,
        spine.pass_type,
        coalesce(counted.trips_started, 0) as trips_started
    from spine
    left join counted
        on spine.income_quintile = counted.income_quintile
        and spine.local_date = counted.local_date
        and spine.pass_type = counted.pass_type
)

select * from final
