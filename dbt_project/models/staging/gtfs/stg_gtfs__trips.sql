-- trips.txt of each partner's latest complete GTFS version.
with source as (
    {{ lake_source('gtfs', 'trips') }}
),

latest as (
    {{ gtfs_latest_feed_versions() }}
),

renamed as (
    select
        source.partner_id,
        latest.feed_window,
        source.trip_id,
        source.partner_id || '|' || source.trip_id as trip_key,
        source.route_id,
        source.service_id,
        source.trip_headsign,
        cast(source.direction_id as tinyint) as direction_id,
        source.block_id,
        source.shape_id
    from source
    inner join latest
        on source.partner_id = latest.partner_id
        and {{ gtfs_feed_window('source.filename') }} = latest.feed_window
)

select * from renamed
