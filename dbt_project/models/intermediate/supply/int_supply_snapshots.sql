-- One row per status snapshot batch that landed (vehicle or station status), with its time in
-- the city's zone, the mode it measures and whether it is the partner's source of record.
-- An empty snapshot (no vehicle shown) is a real zero, so snapshots come from the manifests,
-- not from the bronze rows.
with manifests as (
    select * from {{ ref('stg_lake__manifests') }}
    where feed in ('mds_vehicle_status', 'gbfs')
        and outcome in ('accepted', 'partial', 'empty')
),

typed as (
    select
        batch_id,
        partner_id,
        feed,
        -- batch ids are partner:feed:window[:table]:sha12; a GBFS 2.3 feed lands two tables
        case
            when feed = 'mds_vehicle_status' then 'mds_vehicle_status'
            when batch_id like '%:station_status:%' then 'gbfs_station_status'
            when batch_id like '%:station_information:%' then 'gbfs_station_information'
            else 'gbfs_vehicle_status'
        end as dataset,
        window_start_at as snapshot_at
    from manifests
),

-- a partner that sends MDS vehicle status and GBFS shows the same vehicles twice: MDS, which
-- also lists rented and parked-but-unavailable vehicles, is its source of record
partners_with_mds as (
    select distinct partner_id from typed where dataset = 'mds_vehicle_status'
),

final as (
    select
        typed.batch_id,
        typed.partner_id,
        typed.dataset,
        case
            when typed.dataset = 'gbfs_station_status' then 'bikeshare'
            when typed.dataset = 'gbfs_station_information' then null
            else coalesce({{ partner_mode('typed.partner_id') }}, 'scooter')
        end as mode,
        case
            when typed.dataset = 'gbfs_vehicle_status' then partners_with_mds.partner_id is null
            else typed.dataset != 'gbfs_station_information'
        end as is_source_of_record,
        typed.snapshot_at,
        cast(timezone('{{ var("city_timezone") }}', typed.snapshot_at) as date) as local_date,
        cast(hour(timezone('{{ var("city_timezone") }}', typed.snapshot_at)) as tinyint) as local_hour
    from typed
    left join partners_with_mds on typed.partner_id = partners_with_mds.partner_id
)

select * from final
