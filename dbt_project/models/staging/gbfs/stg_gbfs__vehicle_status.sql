-- GBFS vehicles of each snapshot, renamed and cast. Rented vehicles are absent from GBFS.
with source as (
    {{ lake_source('gbfs', 'vehicle_status') }}
),

renamed as (
    select
        partner_id,
        batch_id,
        vehicle_id,
        cast(lat as double) as lat,
        cast(lon as double) as lon,
        coalesce(is_reserved, false) as is_reserved,
        coalesce(is_disabled, false) as is_disabled,
        vehicle_type_id,
        cast(last_reported as timestamptz) as last_reported_at,
        cast(current_range_meters as double) as current_range_m,
        station_id
    from source
)

select * from renamed
