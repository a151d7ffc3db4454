-- Share of residents within 400 m of an available vehicle, per neighborhood, local hour and mode
-- ('scooter', 'bikeshare', 'any'), averaged over the snapshot windows of the hour. Residents are
-- the neighborhood's population spread evenly over its area (int_resident_cells). Zero-filled.
with neighborhoods as (
    select * from {{ ref('stg_city__neighborhoods') }}
),

windows as (
    select distinct snapshot_at, local_date, local_hour, mode
    from {{ ref('int_supply_snapshots') }}
    where is_source_of_record and mode is not null
    union
    select distinct snapshot_at, local_date, local_hour, 'any' as mode
    from {{ ref('int_supply_snapshots') }}
    where is_source_of_record and mode is not null
),

hours as (
    select local_date, local_hour, mode, count(distinct snapshot_at) as snapshot_windows
    from windows
    group by all
),

covered as (
    select windows.local_date, windows.local_hour, c.mode, c.neighborhood_id, sum(c.residents_covered) as residents_covered
    from {{ ref('int_vehicle_coverage_snapshots') }} as c
    inner join windows on c.snapshot_at = windows.snapshot_at and c.mode = windows.mode
    group by all
),

final as (
    select
        neighborhoods.neighborhood_id,
        neighborhoods.neighborhood_name,
        hours.local_date,
        hours.local_hour,
        hours.mode,
        hours.snapshot_windows,
        neighborhoods.population,
        round(coalesce(covered.residents_covered, 0) / hours.snapshot_windows, 2) as residents_covered,
        -- no residents, no share: null rather than a division by zero
        round(least(coalesce(covered.residents_covered, 0) / hours.snapshot_windows
            / nullif(neighborhoods.population, 0), 1.0), 4) as share_residents_covered,
        neighborhoods.income_quintile,
        neighborhoods.equity_zone
    from neighborhoods
    cross join hours
    left join covered
        on neighborhoods.neighborhood_id = covered.neighborhood_id
        and hours.local_date = covered.local_date
        and hours.local_hour = covered.local_hour
        and hours.mode = covered.mode
)

select * from final
