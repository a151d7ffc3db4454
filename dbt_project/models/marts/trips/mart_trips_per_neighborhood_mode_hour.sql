-- Trips started and ended per neighborhood, mode, local day and local hour, per 1,000 residents.
-- Started counts a trip at its start's day/hour and neighborhood, ended at its end's. Every
-- neighborhood appears for every hour of every day in the loaded range and every mode (zero-filled).
-- Incremental by day: a build rebuilds only the days its new batches touch (macros/trip_days.sql);
-- a full refresh gives the same rows.
{%- set nbhd_cols = ['neighborhood_id', 'neighborhood_name', 'population', 'income_quintile', 'equity_zone'] %}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ trip_mart_delete_days(this, 'any', true, " ~ nbhd_cols ~ ") }}"
) }}
-- depends_on: {{ ref('int_trip_batch_days') }} {{ ref('int_trip_batches_current') }}
{%- set rebuild_days = trip_mart_days(this, 'any', true, nbhd_cols) %}

with trips as (
    select * from {{ ref('fct_trips') }}
    where {{ trip_days_filter('start_local_date', rebuild_days) }}
        or {{ trip_days_filter('end_local_date', rebuild_days) }}
),

-- days (of a start or an end) and modes of all trips; incrementally, from the batches' day
-- summary rather than the fact
all_trips as (
    {%- if is_incremental() %}
    select d.local_date, d.mode {{ _current_days('(trips_started > 0 or trips_ended > 0)') }}
    {%- else %}
    select start_local_date as local_date, mode from {{ ref('fct_trips') }}
    union all
    select end_local_date as local_date, mode from {{ ref('fct_trips') }}
    {%- endif %}
),

neighborhoods as (
    select * from {{ ref('stg_city__neighborhoods') }}
),

day_bounds as (
    select min(local_date) as first_day, max(local_date) as last_day from all_trips
),

days as (
    select cast(day as date) as trip_date
    from day_bounds, range(day_bounds.first_day, day_bounds.last_day + interval 1 day, interval 1 day) as t(day)
    where {{ trip_days_filter('cast(day as date)', rebuild_days) }}
),

hours as (
    select cast(h as tinyint) as local_hour from range(0, 24) as t(h)
),

modes as (
    select distinct mode from all_trips where mode is not null
),

spine as (
    select neighborhoods.neighborhood_id, days.trip_date, hours.local_hour, modes.mode
    from neighborhoods cross join days cross join hours cross join modes
),

started as (
    select
        start_neighborhood_id as neighborhood_id, start_local_date as trip_date, start_local_hour as local_hour,
        mode, count(*) as trips_started
    from trips
    where start_neighborhood_id is not null
    group by all
),

ended as (
    select
        end_neighborhood_id as neighborhood_id, end_local_date as trip_date, end_local_hour as local_hour,
        mode, count(*) as trips_ended
    from trips
    where end_neighborhood_id is not null
    group by all
),

final as (
    select
        spine.neighborhood_id,
        neighborhoods.neighborhood_name,
        spine.trip_date,
        spine.local_hour,
        spine.mode,
        coalesce(started.trips_started, 0) as trips_started,
        coalesce(ended.trips_ended, 0) as trips_ended,
        neighborhoods.population,
        -- no residents, no rate: null rather than a division by zero
        round(coalesce(started.trips_started, 0) * 1000.0 / nullif(neighborhoods.population, 0), 4)
            as trips_started_per_1000_residents,
        round(coalesce(ended.trips_ended, 0) * 1000.0 / nullif(neighborhoods.population, 0), 4)
            as trips_ended_per_1000_residents,
        neighborhoods.income_quintile,
        neighborhoods.equity_zone
    from spine
    inner join neighborhoods on spine.neighborhood_id = neighborhoods.neighborhood_id
    left join started
        on spine.neighborhood_id = started.neighborhood_id
        and spine.trip_date = started.trip_date
        and spine.local_hour = started.local_hour
        and spine.mode = started.mode
    left join ended
        on spine.neighborhood_id = ended.neighborhood_id
        and spine.trip_date = ended.trip_date
        and spine.local_hour = ended.local_hour
        and spine.mode = ended.mode
)

select * from final
