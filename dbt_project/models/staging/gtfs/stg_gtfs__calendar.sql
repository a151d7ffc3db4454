-- calendar.txt of each partner's latest complete GTFS version: weekly service patterns.
with source as (
    {{ lake_source('gtfs', 'calendar') }}
),

latest as (
    {{ gtfs_latest_feed_versions() }}
),

renamed as (
    select
        source.partner_id,
        latest.feed_window,
        source.service_id,
        cast(source.monday as boolean) as monday,
        cast(source.tuesday as boolean) as tuesday,
        cast(source.wednesday as boolean) as wednesday,
        cast(source.thursday as boolean) as thursday,
        cast(source.friday as boolean) as friday,
        cast(source.saturday as boolean) as saturday,
        cast(source.sunday as boolean) as sunday,
        cast(source.start_date as date) as start_date,
        cast(source.end_date as date) as end_date
    from source
    inner join latest
        on source.partner_id = latest.partner_id
        and {{ gtfs_feed_window('source.filename') }} = latest.feed_window
)

select * from renamed
