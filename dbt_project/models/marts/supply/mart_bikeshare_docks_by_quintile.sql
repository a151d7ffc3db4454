-- The bike-share question by neighborhood income quintile (1 = poorest) and local day: docks per
-- 1,000 residents and trips per dock per day, from mart_bikeshare_docks.
with neighborhood_days as (
    select * from {{ ref('mart_bikeshare_docks') }}
),

by_quintile as (
    select
        income_quintile,
        local_date,
        cast(sum(stations) as bigint) as stations,
        cast(sum(docks) as bigint) as docks,
        cast(sum(population) as bigint) as population,
        cast(sum(trips_started) as bigint) as trips_started
    from neighborhood_days
    group by all
),

final as (
    select
        income_quintile,
        local_date,
        stations,
        docks,
        population,
        round(docks * 1000.0 / nullif(population, 0), 4) as docks_per_1000_residents,
        trips_started,
        round(trips_started * 1.0 / nullif(docks, 0), 4) as trips_per_dock
    from by_quintile
)

select * from final
