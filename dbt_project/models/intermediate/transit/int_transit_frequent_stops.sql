-- Stops with frequent service in a local hour: one route serves them in one direction at least
-- `frequent_departures_per_hour` times (default 4, a 15-minute headway) in that hour.
-- Counting one route and direction keeps a 30-minute route running both ways (4 departures an
-- hour at the stop) from passing for frequent service.
with departures as (
    select * from {{ ref('int_transit_departures') }}
),

final as (
    select
        stop_key,
        partner_id,
        stop_id,
        lat,
        lon,
        neighborhood_id,
        local_date,
        local_hour,
        departures,
        max_route_direction_departures
    from departures
    where max_route_direction_departures >= {{ var('frequent_departures_per_hour') }}
)

select * from final
