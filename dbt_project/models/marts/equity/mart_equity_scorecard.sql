-- The equity scorecard: each supply and service metric per local day, by income quintile and for
-- equity zones against the rest of the city, with the ratio to a reference group (the richest
-- quintile; the rest of the city). A group's value pools its neighborhoods: residents-weighted,
-- never an average of neighborhood rates. Trip rates are not repeated here: they carry trip
-- counts, and are published k-suppressed in mart_equity_trips_daily.
with neighborhoods as (
    select neighborhood_id, population, income_quintile, equity_zone from {{ ref('stg_city__neighborhoods') }}
),

-- per neighborhood and day: the metric's numerator (vehicles, residents, docks); the
-- denominator is always the neighborhood's residents
availability as (
    select neighborhood_id, local_date, avg(vehicles) as numerator
    from (
        select neighborhood_id, local_date, local_hour, sum(avg_available_vehicles) as vehicles
        from {{ ref('mart_vehicle_availability') }}
        group by all
    )
    group by all
),

coverage as (
    select neighborhood_id, local_date, avg(residents_covered) as numerator
    from {{ ref('mart_vehicle_coverage') }}
    where mode = 'any'
    group by all
),

transit as (
    select neighborhood_id, local_date, residents_near_frequent_service as numerator
    from {{ ref('mart_transit_service') }}
    where local_hour = {{ var('transit_peak_hour') }}
),

docks as (
    select neighborhood_id, local_date, docks as numerator
    from {{ ref('mart_bikeshare_docks') }}
),

metrics as (
    select 'vehicles_available_per_1000_residents' as metric, 1000.0 as scale, * from availability
    union all
    select 'share_residents_near_available_vehicle', 1.0, * from coverage
    union all
    select 'share_residents_near_frequent_transit', 1.0, * from transit
    union all
    select 'bikeshare_docks_per_1000_residents', 1000.0, * from docks
),

by_neighborhood as (
    select metrics.*, neighborhoods.population, neighborhoods.income_quintile, neighborhoods.equity_zone
    from metrics
    inner join neighborhoods on metrics.neighborhood_id = neighborhoods.neighborhood_id
),

by_group as (
    select metric, scale, local_date, 'income_quintile' as grouping, cast(income_quintile as varchar) as group_name,
        sum(numerator) as numerator, sum(population) as residents
    from by_neighborhood
    group by all
    union all
    select metric, scale, local_date, 'equity_zone',
        case when equity_zone then 'equity zones' else 'rest of city' end,
        sum(numerator), sum(population)
    from by_neighborhood
    group by all
),

valued as (
    select *, scale * numerator / nullif(residents, 0) as value
    from by_group
),

final as (
    select
        valued.metric,
        valued.local_date,
        valued.grouping,
        valued.group_name,
        cast(valued.residents as bigint) as residents,
        valued.value,
        reference.group_name as reference_group,
        valued.value / nullif(reference.value, 0) as ratio_to_reference
    from valued
    inner join valued as reference
        on valued.metric = reference.metric
        and valued.local_date = reference.local_date
        and valued.grouping = reference.grouping
        and reference.group_name = case valued.grouping when 'income_quintile' then '5' else 'rest of city' end
)

select * from final
