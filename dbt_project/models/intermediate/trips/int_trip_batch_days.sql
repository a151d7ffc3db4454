-- The local days each trip batch covers: one row per batch, mode and local day on which its trips
-- start or end, with how many. Append-only: a batch's rows never change, so a batch is read once,
-- when it first becomes a window's current batch, and its row stays after a corrected batch
-- replaces it. That is what lets fct_trips and the trip marts work on the days a change touches:
-- the days of a window's old batch (to delete) and of its new one (to add), without scanning the
-- fact. A batch without trips (an empty window) keeps one row with null mode and day.
-- `loaded_at` is the start of the dbt run that added the batch: the marts rebuild the days of the
-- windows of the latest load.
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}

{#- new batches inlined as constants, as in fct_trips: the scans then open their files only -#}
{%- set new_batch_ids = new_trip_batch_ids(this) if execute and is_incremental() else [] -%}
{%- set new_batches = sql_values(new_batch_ids) %}

with batches as (
    select batch_id, source_window from {{ ref('int_trip_batches_current') }}
    {%- if is_incremental() %}
    where batch_id in {{ new_batches }}
    {%- endif %}
),

trips as (
    select batch_id, mode, start_at, end_at from {{ ref('int_trips_unified') }}
    {%- if is_incremental() %}
    where {{ trip_batches_filter(new_batch_ids) }}
    {%- endif %}
),

-- the same local days as fct_trips' start_local_date and end_local_date
trip_days as (
    select batch_id, mode, cast(timezone('{{ var("city_timezone") }}', start_at) as date) as local_date,
        1 as started, 0 as ended
    from trips
    union all
    select batch_id, mode, cast(timezone('{{ var("city_timezone") }}', end_at) as date) as local_date,
        0 as started, 1 as ended
    from trips
),

per_day as (
    select batch_id, mode, local_date, sum(started) as trips_started, sum(ended) as trips_ended
    from trip_days
    group by all
)

select
    batches.batch_id,
    batches.source_window,
    per_day.mode,
    per_day.local_date,
    cast(coalesce(per_day.trips_started, 0) as bigint) as trips_started,
    cast(coalesce(per_day.trips_ended, 0) as bigint) as trips_ended,
    cast('{{ run_started_at.isoformat() }}' as timestamptz) as loaded_at
from batches
left join per_day on batches.batch_id = per_day.batch_id
