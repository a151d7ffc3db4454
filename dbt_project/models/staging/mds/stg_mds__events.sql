-- MDS vehicle events as landed: renamed and cast. The state-machine check is in intermediate.
with source as (
    {{ lake_source('mds', 'events') }}
),

renamed as (
    select
        partner_id,
        batch_id,
        provider_id,
        device_id,
        event_id,
        partner_id || '|' || event_id as event_key,
        vehicle_state,
        event_types,
        -- the first event type names the transition (MDS lists the cause first)
        event_types[1] as event_type,
        cast("timestamp" as timestamptz) as event_at,
        cast(publication_time as timestamptz) as published_at,
        cast(lat as double) as lat,
        cast(lon as double) as lon,
        cast(battery_percent as integer) as battery_percent
    from source
)

select * from renamed
