-- MDS /vehicles/status snapshots: one row per vehicle per snapshot batch, renamed and cast.
with source as (
    {{ lake_source('mds', 'vehicle_status') }}
),

renamed as (
    select
        partner_id,
        batch_id,
        provider_id,
        device_id,
        vehicle_state,
        event_types,
        event_types[1] as last_event_type,
        cast(event_time as timestamptz) as last_event_at,
        cast(telemetry_time as timestamptz) as telemetry_at,
        cast(lat as double) as lat,
        cast(lon as double) as lon,
        cast(battery_percent as integer) as battery_percent
    from source
)

select * from renamed
