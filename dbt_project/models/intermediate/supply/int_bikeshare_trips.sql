-- Bike-share trips from fct_trips (mode 'bikeshare'), with the station they started at.
-- fct_trips gains its bike-share columns (start_station_id, pass_type) with the bike-share
-- trip feed; until the warehouse has them this model is empty rather than broken.
{%- set trips = ref('fct_trips') %}
{%- set columns = adapter.get_columns_in_relation(trips) | map(attribute='name') | map('lower') | list if execute else [] %}
{%- if 'start_station_id' in columns and 'pass_type' in columns %}
select
    trip_key,
    partner_id,
    cast(start_station_id as varchar) as start_station_id,
    partner_id || '|' || cast(start_station_id as varchar) as start_station_key,
    start_neighborhood_id,
    start_local_date,
    coalesce(pass_type, 'unknown') as pass_type
from {{ trips }}
where mode = 'bikeshare'
{%- else %}
select
    cast(null as varchar) as trip_key,
    cast(null as varchar) as partner_id,
    cast(null as varchar) as start_station_id,
    cast(null as varchar) as start_station_key,
    cast(null as integer) as start_neighborhood_id,
    cast(null as date) as start_local_date,
    cast(null as varchar) as pass_type
where false
{%- endif %}
