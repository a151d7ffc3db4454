-- The GTFS feed versions transit service has been computed from: each partner's latest complete
-- version, added once, when a build first uses it. Append-only, so an incremental mart that joins
-- trips to transit service (mart_first_last_mile) can tell that the service changed in the latest
-- load and rebuild all its days instead of only the days of new trips.
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}

with latest as (
    {{ gtfs_latest_feed_versions() }}
)

select
    latest.partner_id,
    latest.feed_window,
    cast('{{ run_started_at.isoformat() }}' as timestamptz) as loaded_at
from latest
{%- if is_incremental() %}
where not exists (
    select 1 from {{ this }} as seen
    where seen.partner_id = latest.partner_id and seen.feed_window = latest.feed_window
)
{%- endif %}
