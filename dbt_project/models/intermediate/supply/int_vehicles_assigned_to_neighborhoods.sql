-- One row per free-floating vehicle per status snapshot of its partner's source of record, with
-- the neighborhood it stands in (null when outside every polygon or moving) and whether it is
-- available to rent and deployed (parked in the public right of way).
with snapshots as (
    select * from {{ ref('int_supply_snapshots') }}
    where is_source_of_record and dataset in ('mds_vehicle_status', 'gbfs_vehicle_status')
),

mds as (
    select
        batch_id,
        device_id as vehicle_id,
        vehicle_state,
        vehicle_state = 'available' as is_available,
        -- MDS 2.0: parked on the street, rentable or not; on_trip vehicles are moving
        vehicle_state in ('available', 'reserved', 'non_operational') as is_deployed,
        lat,
        lon
    from {{ ref('stg_mds__vehicle_status') }}
),

gbfs as (
    select
        batch_id,
        vehicle_id,
        case when is_disabled then 'non_operational' when is_reserved then 'reserved' else 'available' end
            as vehicle_state,
        not is_reserved and not is_disabled as is_available,
        true as is_deployed,  -- GBFS lists only vehicles on the street (rented ones are absent)
        lat,
        lon
    from {{ ref('stg_gbfs__vehicle_status') }}
),

vehicles as (
    select snapshots.*, v.vehicle_id, v.vehicle_state, v.is_available, v.is_deployed, v.lat, v.lon
    from snapshots
    inner join (select * from mds union all select * from gbfs) as v on snapshots.batch_id = v.batch_id
),

neighborhoods as (
    select neighborhood_id, geometry from {{ ref('stg_city__neighborhoods') }}
),

-- vehicles on a trip are between places: not attributed to a neighborhood
assignments as (
    select vehicles.batch_id, vehicles.vehicle_id, min(neighborhoods.neighborhood_id) as neighborhood_id
    from vehicles
    inner join neighborhoods on st_contains(neighborhoods.geometry, st_point(vehicles.lon, vehicles.lat))
    where vehicles.vehicle_state != 'on_trip'
    group by all
),

final as (
    select
        vehicles.batch_id,
        vehicles.partner_id,
        vehicles.dataset,
        vehicles.mode,
        vehicles.snapshot_at,
        vehicles.local_date,
        vehicles.local_hour,
        vehicles.vehicle_id,
        vehicles.vehicle_state,
        vehicles.is_available,
        vehicles.is_deployed,
        vehicles.lat,
        vehicles.lon,
        assignments.neighborhood_id
    from vehicles
    left join assignments
        on vehicles.batch_id = assignments.batch_id and vehicles.vehicle_id = assignments.vehicle_id
)

select * from final
