-- The local days for which transit service is computed, one row: the dbt vars
-- transit_start_date / transit_end_date, else the days trips cover, else the week starting on the
-- day the oldest of the latest GTFS versions was landed. Transit marts cover exactly these days.
{%- set start_var = var('transit_start_date', none) %}
{%- set end_var = var('transit_end_date', none) %}

with trips as (
    select start_local_date from {{ ref('fct_trips') }}
),

feed_versions as (
    select min(try_cast(left(feed_window, 10) as date)) as landed_on from {{ ref('stg_gtfs__agency') }}
),

period as (
    select
        coalesce(
            {{ "cast('" ~ start_var ~ "' as date)" if start_var else "cast(null as date)" }},
            (select min(start_local_date) from trips),
            (select landed_on from feed_versions)
        ) as first_day,
        coalesce(
            {{ "cast('" ~ end_var ~ "' as date)" if end_var else "cast(null as date)" }},
            (select max(start_local_date) from trips),
            (select landed_on + 6 from feed_versions)
        ) as last_day
)

select first_day, last_day from period
where first_day is not null and last_day is not null
