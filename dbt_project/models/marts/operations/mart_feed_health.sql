-- Feed health per partner, feed and local day: batches received, accepted and rejected, fetch
-- errors, rows received, accepted and quarantined, and lateness against the contract's SLA.
-- A window's day is the city's local day of its start, except for daily files, whose window is
-- the file's date (ingest aligns it to UTC midnight): that date is taken as it is. A window is
-- due once it has closed (a daily file's local day has ended) plus the contract's latency
-- (var feed_sla_hours, generated from the contracts by mobility.warehouse.build).
with manifests as (
    select * from {{ ref('stg_lake__manifests') }}
),

sla as (
    {%- set sla_hours = var('feed_sla_hours', {}) %}
    {%- if sla_hours %}
    select * from (values
        {%- for feed, hours in sla_hours.items() %}
        ('{{ feed }}', cast({{ hours }} as double)){{ "," if not loop.last }}
        {%- endfor %}
    ) as t(feed, sla_hours)
    {%- else %}
    select cast(null as varchar) as feed, cast(null as double) as sla_hours where false
    {%- endif %}
),

windows as (
    select
        manifests.*,
        window_end_at - window_start_at >= interval 1 day as is_daily_file,
        case
            when window_end_at - window_start_at >= interval 1 day
                then cast(timezone('UTC', window_start_at) as date)
            else cast(timezone('{{ var("city_timezone") }}', window_start_at) as date)
        end as local_date
    from manifests
),

timed as (
    select
        windows.*,
        sla.sla_hours,
        case
            when is_daily_file
                then timezone('{{ var("city_timezone") }}', cast(local_date + interval 1 day as timestamp))
            else window_end_at
        end as window_closed_at,
        -- lateness of bytes that arrived; a failed fetch or an absent window has no arrival
        case
            when outcome not in ('error', 'no_data', 'unchanged')
                then epoch(finished_at - window_closed_at) / 3600.0
        end as hours_after_close
    from windows
    left join sla on windows.feed = sla.feed
),

final as (
    select
        partner_id,
        feed,
        local_date,
        count(*) as batches,
        count(*) filter (where outcome not in ('error', 'no_data', 'unchanged')) as batches_received,
        count(*) filter (where outcome in ('accepted', 'partial', 'empty')) as batches_accepted,
        count(*) filter (where outcome = 'partial') as batches_partial,
        count(*) filter (where outcome = 'rejected') as batches_rejected,
        count(*) filter (where outcome = 'error') as fetch_errors,
        count(*) filter (where outcome = 'no_data') as windows_without_data,
        coalesce(sum(rows_received), 0) as rows_received,
        coalesce(sum(rows_accepted), 0) as rows_accepted,
        coalesce(sum(rows_rejected), 0) as rows_quarantined,
        max(sla_hours) as sla_hours,
        round(max(hours_after_close), 3) as max_hours_after_close,
        count(*) filter (where hours_after_close > sla_hours) as batches_late
    from timed
    group by partner_id, feed, local_date
)

select * from final
