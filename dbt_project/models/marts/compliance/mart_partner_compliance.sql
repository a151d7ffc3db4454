-- Partner compliance per operator, local day and check hour (var compliance_local_hours, from
-- partners.yaml): the share of its deployed fleet standing in equity zones in its first status
-- snapshot of that hour against the required share (var equity_zone_required_share), its
-- deployed fleet against its cap (var fleet_caps), and the timeliness and completeness of its
-- data that day (from the batch manifests).
{%- set caps = var('fleet_caps', {}) %}
{%- set latency = var('contract_latency_hours', {}) %}
with vehicles as (
    select * from {{ ref('int_vehicles_assigned_to_neighborhoods') }}
),

neighborhoods as (
    select neighborhood_id, equity_zone from {{ ref('stg_city__neighborhoods') }}
),

check_hours as (
    select unnest({{ var('compliance_local_hours') | list | tojson }}::integer[]) as check_hour
),

operator_days as (
    select distinct partner_id, local_date from vehicles
),

-- the first snapshot of each operator in each check hour
checked_snapshots as (
    select distinct partner_id, local_date, local_hour as check_hour, batch_id, snapshot_at
    from vehicles
    where local_hour in (select check_hour from check_hours)
    qualify dense_rank() over (partition by partner_id, local_date, local_hour order by snapshot_at, batch_id) = 1
),

deployment as (
    select
        checked_snapshots.partner_id,
        checked_snapshots.local_date,
        checked_snapshots.check_hour,
        checked_snapshots.snapshot_at,
        count(*) filter (where vehicles.is_deployed) as deployed_vehicles,
        count(*) filter (where vehicles.is_deployed and vehicles.neighborhood_id is not null) as deployed_in_city,
        count(*) filter (where vehicles.is_deployed and neighborhoods.equity_zone) as deployed_in_equity_zones
    from checked_snapshots
    inner join vehicles on checked_snapshots.batch_id = vehicles.batch_id
    left join neighborhoods on vehicles.neighborhood_id = neighborhoods.neighborhood_id
    group by all
),

manifests as (
    select
        *,
        cast(timezone('{{ var("city_timezone") }}', window_start_at) as date) as local_date
    from {{ ref('stg_lake__manifests') }}
),

-- timeliness: landed batches that finished within their contract's latency SLA after the window
timeliness as (
    select
        partner_id,
        local_date,
        count(*) as batches_landed,
        count(*) filter (where finished_at <= window_end_at + sla) as batches_within_sla
    from (
        select
            *,
            {%- if latency %}
            case contract
                {%- for contract, hours in latency.items() %}
                when '{{ contract }}' then to_seconds({{ (hours * 3600) | round | int }})
                {%- endfor %}
            end as sla
            {%- else %}
            cast(null as interval) as sla
            {%- endif %}
        from manifests
        where outcome in ('accepted', 'partial', 'empty')
    )
    where sla is not null  -- a contract without a latency SLA cannot be late
    group by all
),

-- completeness: of the hourly windows of each pull feed (MDS trips and events) in the loaded
-- range, the share with a landed batch; snapshot feeds are polled by the city, not sent
hourly_feeds as (
    select partner_id, feed, window_start_at, outcome, local_date
    from manifests
    where window_end_at - window_start_at = interval 1 hour
),

feed_range as (
    select feed, min(window_start_at) as first_window, max(window_start_at) as last_window
    from hourly_feeds
    group by all
),

expected as (
    select partners.partner_id, feed_range.feed, cast(timezone('{{ var("city_timezone") }}', w.window_start_at) as date) as local_date,
        count(*) as windows_expected
    from feed_range
    inner join (select distinct partner_id, feed from hourly_feeds) as partners on feed_range.feed = partners.feed
    cross join lateral (
        select unnest(range(feed_range.first_window, feed_range.last_window + interval 1 hour, interval 1 hour)) as window_start_at
    ) as w
    group by all
),

delivered as (
    select partner_id, feed, local_date, count(distinct window_start_at) as windows_delivered
    from hourly_feeds
    where outcome in ('accepted', 'partial', 'empty')
    group by all
),

completeness as (
    select
        expected.partner_id,
        expected.local_date,
        sum(expected.windows_expected) as windows_expected,
        sum(coalesce(delivered.windows_delivered, 0)) as windows_delivered
    from expected
    left join delivered
        on expected.partner_id = delivered.partner_id
        and expected.feed = delivered.feed
        and expected.local_date = delivered.local_date
    group by all
),

final as (
    select
        operator_days.partner_id,
        operator_days.local_date,
        cast(check_hours.check_hour as tinyint) as check_hour,
        -- the snapshot's exact time stays in the warehouse: published grain is the hour
        deployment.snapshot_at is not null as has_snapshot,
        coalesce(deployment.deployed_vehicles, 0) as deployed_vehicles,
        coalesce(deployment.deployed_in_city, 0) as deployed_in_city,
        coalesce(deployment.deployed_in_equity_zones, 0) as deployed_in_equity_zones,
        round(deployment.deployed_in_equity_zones * 1.0 / nullif(deployment.deployed_in_city, 0), 4)
            as equity_zone_share,
        cast({{ var('equity_zone_required_share') }} as double) as required_equity_zone_share,
        deployment.deployed_in_equity_zones * 1.0 / nullif(deployment.deployed_in_city, 0)
            >= {{ var('equity_zone_required_share') }} as meets_equity_zone_share,
        {%- if caps %}
        case operator_days.partner_id
            {%- for partner, cap in caps.items() %}
            when '{{ partner }}' then {{ cap | int }}
            {%- endfor %}
        end
        {%- else %}
        cast(null as integer)
        {%- endif %} as fleet_cap,
        coalesce(deployment.deployed_vehicles, 0) > fleet_cap as fleet_cap_exceeded,
        timeliness.batches_landed,
        timeliness.batches_within_sla,
        round(timeliness.batches_within_sla * 1.0 / nullif(timeliness.batches_landed, 0), 4) as timeliness_share,
        completeness.windows_expected,
        completeness.windows_delivered,
        round(completeness.windows_delivered * 1.0 / nullif(completeness.windows_expected, 0), 4) as completeness_share
    from operator_days
    cross join check_hours
    left join deployment
        on operator_days.partner_id = deployment.partner_id
        and operator_days.local_date = deployment.local_date
        and check_hours.check_hour = deployment.check_hour
    left join timeliness
        on operator_days.partner_id = timeliness.partner_id and operator_days.local_date = timeliness.local_date
    left join completeness
        on operator_days.partner_id = completeness.partner_id and operator_days.local_date = completeness.local_date
)

select * from final
