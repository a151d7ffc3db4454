-- Per local day, the share of residents near frequent service in designated equity zones vs the
-- rest of the city, and their ratio (1 = parity; below 1 = equity zones less served). A day-level
-- figure read at one stated hour, `transit_peak_hour` (default 8: 08:00-08:59 local, the morning
-- commute); mart_transit_service has every hour.
with service as (
    select * from {{ ref('mart_transit_service') }}
    where local_hour = {{ var('transit_peak_hour') }}
),

by_zone as (
    select
        local_date,
        sum(population) filter (where equity_zone) as equity_zone_population,
        sum(residents_near_frequent_service) filter (where equity_zone) as equity_zone_residents_near,
        sum(population) filter (where not equity_zone) as other_population,
        sum(residents_near_frequent_service) filter (where not equity_zone) as other_residents_near
    from service
    group by local_date
),

shares as (
    select
        local_date,
        coalesce(equity_zone_population, 0) as equity_zone_population,
        coalesce(equity_zone_residents_near, 0) as equity_zone_residents_near,
        coalesce(equity_zone_residents_near, 0) / nullif(equity_zone_population, 0) as equity_zone_share,
        coalesce(other_population, 0) as other_population,
        coalesce(other_residents_near, 0) as other_residents_near,
        coalesce(other_residents_near, 0) / nullif(other_population, 0) as other_share
    from by_zone
),

final as (
    select
        local_date,
        cast({{ var('transit_peak_hour') }} as tinyint) as local_hour,
        cast(equity_zone_population as bigint) as equity_zone_population,
        round(equity_zone_residents_near, 1) as equity_zone_residents_near_frequent_service,
        round(equity_zone_share, 4) as equity_zone_share_near_frequent_service,
        cast(other_population as bigint) as other_population,
        round(other_residents_near, 1) as other_residents_near_frequent_service,
        round(other_share, 4) as other_share_near_frequent_service,
        -- null when the rest of the city has no frequent service nearby: a ratio to zero is undefined
        round(equity_zone_share / nullif(other_share, 0), 4) as equity_ratio
    from shares
)

select * from final
