-- Every point where a rider could pick up a vehicle, per status snapshot: each available
-- free-floating vehicle, and each renting bike-share station with at least one bike. `vehicles`
-- is how many are there (1 for a free-floating vehicle, the bikes docked for a station).
with vehicles as (
    select batch_id, partner_id, mode, snapshot_at, local_date, local_hour, neighborhood_id, lat, lon,
        1 as vehicles
    from {{ ref('int_vehicles_assigned_to_neighborhoods') }}
    where is_available
),

station_snapshots as (
    select * from {{ ref('int_supply_snapshots') }}
    where is_source_of_record and dataset = 'gbfs_station_status'
),

stations as (
    select
        station_snapshots.batch_id,
        station_snapshots.partner_id,
        station_snapshots.mode,
        station_snapshots.snapshot_at,
        station_snapshots.local_date,
        station_snapshots.local_hour,
        info.neighborhood_id,
        info.lat,
        info.lon,
        status.num_bikes_available as vehicles
    from {{ ref('stg_gbfs__station_status') }} as status
    inner join station_snapshots on status.batch_id = station_snapshots.batch_id
    inner join {{ ref('int_bikeshare_stations') }} as info
        on status.partner_id = info.partner_id and status.station_id = info.station_id
    where status.num_bikes_available > 0 and coalesce(status.is_renting, true) and coalesce(status.is_installed, true)
)

select * from vehicles
union all
select * from stations
