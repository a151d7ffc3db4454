-- Origin-destination flows: trips per origin neighborhood, destination neighborhood, mode and
-- local start day. Only pairs with trips appear (a missing pair is 0). A trip whose end lies
-- outside every neighborhood (or could not be placed) keeps a null destination, so the flows
-- out of an origin add up to the trips started there in mart_trips_per_neighborhood_day: the
-- publication's complementary suppression relies on that total.
-- Incremental by day: a build rebuilds only the days its new batches touch (macros/trip_days.sql);
-- a full refresh gives the same rows.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ trip_mart_delete_days(this, 'start', false, ['neighborhood_id', 'neighborhood_name'], od_flow_neighborhoods(this)) }}"
) }}
-- depends_on: {{ ref('int_trip_batch_days') }} {{ ref('int_trip_batches_current') }}
{%- set rebuild_days = trip_mart_days(this, 'start', false, ['neighborhood_id', 'neighborhood_name'], od_flow_neighborhoods(this)) %}

with trips as (
    select * from {{ ref('fct_trips') }}
    where start_neighborhood_id is not null
        and {{ trip_days_filter('start_local_date', rebuild_days) }}
),

neighborhoods as (
    select neighborhood_id, neighborhood_name from {{ ref('stg_city__neighborhoods') }}
),

flows as (
    select
        start_neighborhood_id as origin_neighborhood_id,
        end_neighborhood_id as destination_neighborhood_id,
        start_local_date as trip_date,
        mode,
        count(*) as trips
    from trips
    group by all
),

final as (
    select
        flows.origin_neighborhood_id,
        origin.neighborhood_name as origin_neighborhood_name,
        flows.destination_neighborhood_id,
        destination.neighborhood_name as destination_neighborhood_name,
        flows.trip_date,
        flows.mode,
        flows.trips
    from flows
    inner join neighborhoods as origin on flows.origin_neighborhood_id = origin.neighborhood_id
    left join neighborhoods as destination on flows.destination_neighborhood_id = destination.neighborhood_id
)

select * from final
