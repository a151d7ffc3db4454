-- Scheduled departures per stop, local day and local hour over the analysed period.
--
-- A departure is a trip leaving a stop where riders may board: every stop of the trip but its
-- last, unless marked "no pickup" (pickup_type 1). Stops the feed leaves untimed between
-- timepoints get a time interpolated linearly by position between the timed stops around them.
-- GTFS times count from noon minus 12 h of the service day in the agency's zone (midnight except
-- on the days clocks change), so 25:10:00 is the next local day at 01:10.
with stop_times as (
    select * from {{ ref('stg_gtfs__stop_times') }}
),

trips as (
    select * from {{ ref('stg_gtfs__trips') }}
),

agency_zones as (
    -- GTFS requires every agency of a feed to share one timezone
    select partner_id, min(agency_timezone) as agency_timezone
    from {{ ref('stg_gtfs__agency') }}
    group by partner_id
),

service_dates as (
    select * from {{ ref('int_transit_service_dates') }}
),

period as (
    select * from {{ ref('int_transit_period') }}
),

stops as (
    select * from {{ ref('int_transit_stops_assigned_to_neighborhoods') }}
),

positioned as (
    select
        trip_key,
        partner_id,
        stop_key,
        stop_sequence,
        pickup_type,
        coalesce(departure_s, arrival_s) as time_s,
        row_number() over trip_order as position,
        count(*) over (partition by trip_key) as n_stops
    from stop_times
    window trip_order as (partition by trip_key order by stop_sequence)
),

bracketed as (
    select
        *,
        last_value(case when time_s is not null then position end ignore nulls) over before as prev_position,
        last_value(time_s ignore nulls) over before as prev_s,
        first_value(case when time_s is not null then position end ignore nulls) over after as next_position,
        first_value(time_s ignore nulls) over after as next_s
    from positioned
    window
        before as (partition by trip_key order by position rows between unbounded preceding and current row),
        after as (partition by trip_key order by position rows between current row and unbounded following)
),

timed as (
    select
        trip_key,
        partner_id,
        stop_key,
        position,
        n_stops,
        pickup_type,
        case
            when time_s is not null then time_s
            when prev_s is not null and next_s is not null then
                cast(floor(prev_s + (next_s - prev_s) * (position - prev_position) / (next_position - prev_position)) as integer)
        end as departure_s
    from bracketed
),

boardings as (
    select timed.*, trips.service_id, trips.route_id,
        -- route-relative direction; the headsign stands in when the feed has no direction_id
        coalesce(cast(trips.direction_id as varchar), 'headsign:' || coalesce(trips.trip_headsign, '')) as direction
    from timed
    inner join trips on timed.trip_key = trips.trip_key
    where timed.position < timed.n_stops
        and timed.pickup_type <> 1
        and timed.departure_s is not null
),

instants as (
    select
        boardings.partner_id,
        boardings.stop_key,
        boardings.route_id,
        boardings.direction,
        -- noon of the service day in the agency's zone, minus 12 h, plus the GTFS time
        timezone(agency_zones.agency_timezone, service_dates.service_date + interval 12 hour)
            - interval 12 hour + to_seconds(boardings.departure_s) as departs_at
    from boardings
    inner join service_dates
        on boardings.partner_id = service_dates.partner_id
        and boardings.service_id = service_dates.service_id
    inner join agency_zones on boardings.partner_id = agency_zones.partner_id
),

localized as (
    select
        partner_id,
        stop_key,
        route_id,
        direction,
        cast(timezone('{{ var("city_timezone") }}', departs_at) as date) as local_date,
        cast(hour(timezone('{{ var("city_timezone") }}', departs_at)) as tinyint) as local_hour
    from instants
),

per_route_direction as (
    select partner_id, stop_key, local_date, local_hour, route_id, direction, count(*) as departures
    from localized
    inner join period on localized.local_date between period.first_day and period.last_day
    group by all
),

per_stop as (
    select
        stop_key,
        local_date,
        local_hour,
        cast(sum(departures) as integer) as departures,
        cast(max(departures) as integer) as max_route_direction_departures,
        cast(count(distinct route_id) as integer) as routes
    from per_route_direction
    group by all
),

final as (
    select
        per_stop.stop_key,
        stops.partner_id,
        stops.stop_id,
        stops.lat,
        stops.lon,
        stops.neighborhood_id,
        per_stop.local_date,
        per_stop.local_hour,
        per_stop.departures,
        per_stop.max_route_direction_departures,
        per_stop.routes
    from per_stop
    inner join stops on per_stop.stop_key = stops.stop_key
)

select * from final
