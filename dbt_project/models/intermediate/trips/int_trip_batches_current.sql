-- The batch whose rows the lake holds now, per trip feed, partner and window: the latest landed
-- batch of the window (a corrected resubmission replaces the window's bronze file). Rejected
-- batches and failed fetches land nothing, so they never replace a window's batch.
-- A table, unlike its folder's views: fct_trips and the tests read it several times per build,
-- and each read of the view would parse every manifest of the lake again.
{{ config(materialized='table') }}
with manifests as (
    select * from {{ ref('stg_lake__manifests') }}
    where feed in ('mds_trips', 'bikeshare_trips', 'ridehail_trips')
        and outcome in ('accepted', 'partial', 'empty')
),

ranked as (
    select
        *,
        row_number() over (
            partition by partner_id, feed, window_start_at
            order by finished_at desc, batch_id desc
        ) as landing_rank
    from manifests
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
from ranked
where landing_rank = 1
