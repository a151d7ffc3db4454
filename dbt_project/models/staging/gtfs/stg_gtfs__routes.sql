-- routes.txt of each partner's latest complete GTFS version.
with source as (
    {{ lake_source('gtfs', 'routes') }}
),

latest as (
    {{ gtfs_latest_feed_versions() }}
),

renamed as (
    select
        source.partner_id,
        latest.feed_window,
        source.route_id,
        source.partner_id || '|' || source.route_id as route_key,
        source.agency_id,
        source.route_short_name,
        source.route_long_name,
        cast(source.route_type as integer) as route_type
    from source
    inner join latest
        on source.partner_id = latest.partner_id
        and {{ gtfs_feed_window('source.filename') }} = latest.feed_window
)

select * from renamed
