-- Trips started per neighborhood, local day and mode, per 1,000 residents. Every neighborhood
-- appears for every day in the loaded range (zero-filled), so absences are visible as zeros.
-- Incremental by day: a build rebuilds only the days its new batches touch (macros/trip_days.sql);
-- a full refresh gives the same rows.
{%- set nbhd_cols = ['neighborhood_id', 'neighborhood_name', 'population', 'income_quintile', 'equity_zone'] %}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ trip_mart_delete_days(this, 'start', true, " ~ nbhd_cols ~ ") }}"
) }}
-- depends_on: {{ ref('int_trip_batch_days') }} {{ ref('int_trip_batches_current') }}
{%- set rebuild_days = trip_mart_days(this, 'start', true, nbhd_cols) %}

with trips as (
    select * from {{ ref('fct_trips') }}
    where {{ trip_days_filter('start_local_date', rebuild_days) }}
),

-- start days and modes of all trips (the range and the modes of the spine); incrementally, from
-- the batches' day summary rather than the fact
all_trips as (
    {%- if is_incremental() %}
    select d.local_date as start_local_date, d.mode {{ _current_days('trips_started > 0') }}
    {%- else %}
    select start_local_date, mode from {{ ref('fct_trips') }}
    {%- endif %}
),

neighborhoods as (
    select * from {{ ref('stg_city__neighborhoods') }}
),

-- the loaded range: first to last local day with any trip
day_bounds as (
    select min(start_local_date) as first_day, max(start_local_date) as last_day from all_trips
),

days as (
    select cast(day as date) as trip_date
    from day_bounds, range(day_bounds.first_day, day_bounds.last_day + interval 1 day, interval 1 day) as t(day)
    where {{ trip_days_filter('cast(day as date)', rebuild_days) }}
),

modes as (
    select distinct mode from all_trips
),

spine as (
    select neighborhoods.neighborhood_id, days.trip_date, modes.mode
    from neighborhoods cross join days cross join modes
),

started as (
    select start_neighborhood_id as neighborhood_id, start_local_date as trip_date, mode, count(*) as trips_started
    from trips
    where start_neighborhood_id is not null
    group by all
),

final as (
    select
        spine.neighborhood_id,
        neighborhoods.neighborhood_name,
        spine.trip_date,
        spine.mode,
        coalesce(started.trips_started, 0) as trips_started,
        neighborhoods.population,
        -- no residents, no rate: null rather than a division by zero
        round(coalesce(started.trips_started, 0) * 1000.0 / nullif(neighborhoods.population, 0), 4)
            as trips_per_1000_residents,
        neighborhoods.income_quintile,
        neighborhoods.equity_zone
    from spine
    inner join neighborhoods on spine.neighborhood_id = neighborhoods.neighborhood_id
    left join started
        on spine.neighborhood_id = started.neighborhood_id
        and spine.trip_date = started.trip_date
        and spine.mode = started.mode
)

select * from final
