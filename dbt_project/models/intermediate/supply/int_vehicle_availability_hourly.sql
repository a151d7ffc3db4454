-- Average available vehicles per partner, mode, neighborhood and local hour: the vehicles
-- available in each of the partner's snapshots of that hour, averaged over those snapshots (a
-- snapshot where the neighborhood had none counts as 0). Rows only where any vehicle was seen.
with snapshots as (
    select partner_id, mode, local_date, local_hour, count(distinct batch_id) as snapshots
    from {{ ref('int_supply_snapshots') }}
    where is_source_of_record
    group by all
),

available as (
    select partner_id, mode, local_date, local_hour, neighborhood_id, sum(vehicles) as vehicle_snapshots
    from {{ ref('int_available_supply_points') }}
    where neighborhood_id is not null
    group by all
),

final as (
    select
        available.partner_id,
        available.mode,
        available.neighborhood_id,
        available.local_date,
        available.local_hour,
        snapshots.snapshots,
        available.vehicle_snapshots * 1.0 / snapshots.snapshots as avg_available_vehicles
    from available
    inner join snapshots
        on available.partner_id = snapshots.partner_id
        and available.mode = snapshots.mode
        and available.local_date = snapshots.local_date
        and available.local_hour = snapshots.local_hour
)

select * from final
