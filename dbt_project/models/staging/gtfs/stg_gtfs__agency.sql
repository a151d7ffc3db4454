-- agency.txt of each partner's latest complete GTFS version.
with source as (
    {{ lake_source('gtfs', 'agency') }}
),

latest as (
    {{ gtfs_latest_feed_versions() }}
),

renamed as (
    select
        source.partner_id,
        latest.feed_window,
        source.agency_id,
        source.agency_name,
        source.agency_url,
        source.agency_timezone
    from source
    inner join latest
        on source.partner_id = latest.partner_id
        and {{ gtfs_feed_window('source.filename') }} = latest.feed_window
)

select * from renamed
