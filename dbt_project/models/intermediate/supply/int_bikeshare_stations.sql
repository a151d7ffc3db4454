-- One row per bike-share station as its partner last described it (GBFS station_information),
-- with the neighborhood it stands in.
with information as (
    select info.*, snapshots.snapshot_at
    from {{ ref('stg_gbfs__station_information') }} as info
    inner join {{ ref('int_supply_snapshots') }} as snapshots on info.batch_id = snapshots.batch_id
),

latest as (
    select * from information
    qualify row_number() over (partition by partner_id, station_id order by snapshot_at desc, batch_id desc) = 1
),

neighborhoods as (
    select neighborhood_id, geometry from {{ ref('stg_city__neighborhoods') }}
),

assignments as (
    select latest.partner_id, latest.station_id, min(neighborhoods.neighborhood_id) as neighborhood_id
    from latest
    inner join neighborhoods on st_contains(neighborhoods.geometry, st_point(latest.lon, latest.lat))
    group by all
),

final as (
    select
        latest.partner_id,
        latest.station_id,
        latest.partner_id || '|' || latest.station_id as station_key,
        latest.station_name,
        latest.lat,
        latest.lon,
        assignments.neighborhood_id,
        latest.capacity,
        latest.snapshot_at as described_at
    from latest
    left join assignments
        on latest.partner_id = assignments.partner_id and latest.station_id = assignments.station_id
)

select * from final
