-- First/last mile: per neighborhood (where the trip started) and local day, the micromobility
-- trips (fct_trips modes in `micromobility_modes`) that start within `first_last_mile_m` metres
-- (default 200) of a stop frequent in the trip's local start hour, or end within it of a stop
-- frequent in its local end hour, and their share of all micromobility trips started there.
-- Every neighborhood x day of the analysed period appears, zero-filled.
-- Incremental by day: a build rebuilds only the days its new trip batches touch, and all days when
-- the transit service or the city changed (macros/trip_days.sql); a full refresh gives the same rows.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ first_last_mile_delete_days(this) }}"
) }}
-- depends_on: {{ ref('int_trip_batch_days') }} {{ ref('int_transit_feed_versions') }}
{%- set rebuild_days = first_last_mile_days(this) %}

with trips as (
    select * from {{ ref('fct_trips') }}
    where {{ trip_days_filter('start_local_date', rebuild_days) }}
        and mode in (
        {%- for mode in var('micromobility_modes') %}'{{ mode }}'{{ ", " if not loop.last }}{% endfor -%}
    )
),

neighborhoods as (
    select * from {{ ref('stg_city__neighborhoods') }}
),

period as (
    select * from {{ ref('int_transit_period') }}
),

frequent_stops as (
    select stop_key, lon, lat, local_date, local_hour from {{ ref('int_transit_frequent_stops') }}
),

trips_in_period as (
    select trips.*
    from trips
    inner join period on trips.start_local_date between period.first_day and period.last_day
    where trips.start_neighborhood_id is not null
),

reach as (
    select greatest(
        coalesce((select max(abs(lat)) from frequent_stops), 0),
        coalesce((select max(greatest(abs(start_lat), abs(end_lat))) from trips_in_period), 0)
    ) + 0.1 as max_abs_lat
),

-- trip ends as points at a local day and hour: the start, and the end
trip_points as (
    select trip_key, 'start' as trip_end, start_lon as lon, start_lat as lat,
        start_local_date as local_date, start_local_hour as local_hour
    from trips_in_period
    where start_lat is not null and start_lon is not null
    union all
    select trip_key, 'end' as trip_end, end_lon as lon, end_lat as lat,
        end_local_date as local_date, end_local_hour as local_hour
    from trips_in_period
    where end_lat is not null and end_lon is not null
),

point_bins as (
    select
        trip_points.*,
        {{ metre_bin_x('trip_points.lon', var('first_last_mile_m'), 'reach.max_abs_lat') }} as bin_x,
        {{ metre_bin_y('trip_points.lat', var('first_last_mile_m')) }} as bin_y
    from trip_points cross join reach
),

stop_bins as (
    select
        frequent_stops.*,
        {{ metre_bin_x('frequent_stops.lon', var('first_last_mile_m'), 'reach.max_abs_lat') }} + dx as bin_x,
        {{ metre_bin_y('frequent_stops.lat', var('first_last_mile_m')) }} + dy as bin_y
    from frequent_stops
    cross join reach
    cross join (values (-1), (0), (1)) as offsets_x(dx)
    cross join (values (-1), (0), (1)) as offsets_y(dy)
),

near_points as (
    select distinct point_bins.trip_key, point_bins.trip_end
    from point_bins
    inner join stop_bins
        on point_bins.local_date = stop_bins.local_date
        and point_bins.local_hour = stop_bins.local_hour
        and point_bins.bin_x = stop_bins.bin_x
        and point_bins.bin_y = stop_bins.bin_y
    where {{ distance_m('point_bins.lon', 'point_bins.lat', 'stop_bins.lon', 'stop_bins.lat') }}
        <= {{ var('first_last_mile_m') }}
),

flagged as (
    select
        trips_in_period.trip_key,
        trips_in_period.start_neighborhood_id as neighborhood_id,
        trips_in_period.start_local_date as trip_date,
        bool_or(near_points.trip_end = 'start') as starts_near,
        bool_or(near_points.trip_end = 'end') as ends_near
    from trips_in_period
    left join near_points on trips_in_period.trip_key = near_points.trip_key
    group by all
),

counts as (
    select
        neighborhood_id,
        trip_date,
        count(*) as micromobility_trips,
        count(*) filter (where starts_near) as trips_starting_near_frequent_stop,
        count(*) filter (where ends_near) as trips_ending_near_frequent_stop,
        count(*) filter (where starts_near or ends_near) as first_last_mile_trips
    from flagged
    group by all
),

days as (
    select cast(day as date) as trip_date
    from period, range(period.first_day, period.last_day + 1, interval 1 day) as t(day)
    where {{ trip_days_filter('cast(day as date)', rebuild_days) }}
),

final as (
    select
        neighborhoods.neighborhood_id,
        neighborhoods.neighborhood_name,
        days.trip_date,
        cast(coalesce(counts.micromobility_trips, 0) as bigint) as micromobility_trips,
        cast(coalesce(counts.trips_starting_near_frequent_stop, 0) as bigint) as trips_starting_near_frequent_stop,
        cast(coalesce(counts.trips_ending_near_frequent_stop, 0) as bigint) as trips_ending_near_frequent_stop,
        cast(coalesce(counts.first_last_mile_trips, 0) as bigint) as first_last_mile_trips,
        -- the other side of the share: published only through it, so a small count here hides it too
        cast(coalesce(counts.micromobility_trips - counts.first_last_mile_trips, 0) as bigint)
            as other_micromobility_trips,
        -- no trips, no share: null rather than a division by zero
        round(coalesce(counts.first_last_mile_trips, 0) / nullif(coalesce(counts.micromobility_trips, 0), 0), 4)
            as first_last_mile_share,
        neighborhoods.income_quintile,
        neighborhoods.equity_zone
    from neighborhoods
    cross join days
    left join counts
        on neighborhoods.neighborhood_id = counts.neighborhood_id
        and days.trip_date = counts.trip_date
)

select * from final
