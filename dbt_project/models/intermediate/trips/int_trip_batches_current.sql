-- The batch whose rows the lake holds now, per trip feed, partner and window: the latest landed
-- batch of the window (current_trip_batches).
-- A table, unlike its folder's views: fct_trips and the tests read it several times per build.
{{ config(materialized='table') }}
with current_batches as (
    {{ current_trip_batches(ref('stg_lake__manifests')) }}
)

select
    batch_id,
    partner_id,
    feed,
    window_start_at,
    window_end_at,
    partner_id || '|' || feed || '|' || strftime(window_start_at at time zone 'UTC', '%Y-%m-%dT%H:%M:%SZ')
        as source_window,
    finished_at as landed_at,
    rows_accepted
from current_batches
