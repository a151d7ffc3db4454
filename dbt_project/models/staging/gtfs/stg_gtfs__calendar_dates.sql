-- calendar_dates.txt of each partner's latest complete GTFS version: days added (1) or removed (2).
with source as (
    {{ lake_source('gtfs', 'calendar_dates') }}
),

latest as (
    {{ gtfs_latest_feed_versions() }}
),

renamed as (
    select
        source.partner_id,
        latest.feed_window,
        source.service_id,
        cast(source.date as date) as service_date,
        cast(source.exception_type as tinyint) as exception_type
    from source
    inner join latest
        on source.partner_id = latest.partner_id
        and {{ gtfs_feed_window('source.filename') }} = latest.feed_window
)

select * from renamed
