-- stop_times.txt of each partner's latest complete GTFS version, with times as seconds after
-- noon minus 12 h of the service day (GTFS times pass 24:00:00 for trips after midnight).
with source as (
    {{ lake_source('gtfs', 'stop_times') }}
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
        cast(source.stop_sequence as integer) as stop_sequence,
        source.stop_id,
        source.partner_id || '|' || source.stop_id as stop_key,
        source.arrival_time,
        source.departure_time,
        {{ gtfs_time_seconds('source.arrival_time') }} as arrival_s,
        {{ gtfs_time_seconds('source.departure_time') }} as departure_s,
        -- empty means 0: regular pickup / drop-off
        cast(coalesce(source.pickup_type, 0) as tinyint) as pickup_type,
        cast(coalesce(source.drop_off_type, 0) as tinyint) as drop_off_type,
        cast(source.shape_dist_traveled as double) as shape_dist_traveled,
        cast(source.timepoint as tinyint) as timepoint
    from source
    inner join latest
        on source.partner_id = latest.partner_id
        and {{ gtfs_feed_window('source.filename') }} = latest.feed_window
)

select * from renamed
