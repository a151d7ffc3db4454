-- Per local day and mode: trips per 1,000 residents in designated equity zones vs the rest of
-- the city, and their ratio (1.0 = parity; below 1 = equity zones underserved).
with neighborhood_days as (
    select * from {{ ref('mart_trips_per_neighborhood_day') }}
),

by_zone as (
    select
        trip_date,
        mode,
        cast(sum(trips_started) filter (where equity_zone) as bigint) as equity_zone_trips_started,
        cast(sum(population) filter (where equity_zone) as bigint) as equity_zone_population,
        cast(sum(trips_started) filter (where not equity_zone) as bigint) as other_trips_started,
        cast(sum(population) filter (where not equity_zone) as bigint) as other_population
    from neighborhood_days
    group by trip_date, mode
),

rates as (
    select
        trip_date,
        mode,
        coalesce(equity_zone_trips_started, 0) as equity_zone_trips_started,
        coalesce(equity_zone_population, 0) as equity_zone_population,
        coalesce(equity_zone_trips_started, 0) * 1000.0 / nullif(equity_zone_population, 0)
            as equity_zone_trips_per_1000_residents,
        coalesce(other_trips_started, 0) as other_trips_started,
        coalesce(other_population, 0) as other_population,
        coalesce(other_trips_started, 0) * 1000.0 / nullif(other_population, 0)
            as other_trips_per_1000_residents
    from by_zone
),

final as (
    select
        trip_date,
        mode,
        equity_zone_trips_started,
        equity_zone_population,
        round(equity_zone_trips_per_1000_residents, 4) as equity_zone_trips_per_1000_residents,
        other_trips_started,
        other_population,
        round(other_trips_per_1000_residents, 4) as other_trips_per_1000_residents,
        -- null when the rest of the city has no trips: a ratio to zero is undefined, not infinite
        round(equity_zone_trips_per_1000_residents / nullif(other_trips_per_1000_residents, 0), 4)
            as equity_ratio
    from rates
)

select * from final
