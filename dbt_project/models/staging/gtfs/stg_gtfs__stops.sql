-- stops.txt of each partner's latest complete GTFS version; stop_key is unique across partners.
with source as (
    {{ lake_source('gtfs', 'stops') }}
),

latest as (
    {{ gtfs_latest_feed_versions() }}
),

renamed as (
    select
        source.partner_id,
        latest.feed_window,
        source.stop_id,
        source.partner_id || '|' || source.stop_id as stop_key,
        source.stop_code,
        source.stop_name,
        cast(source.stop_lat as double) as stop_lat,
        cast(source.stop_lon as double) as stop_lon,
        -- empty means 0: a stop or platform where vehicles pick up riders
        cast(coalesce(source.location_type, 0) as tinyint) as location_type,
        source.parent_station,
        source.zone_id
    from source
    inner join latest
        on source.partner_id = latest.partner_id
        and {{ gtfs_feed_window('source.filename') }} = latest.feed_window
)

select * from renamed
