-- MDS events per device in event time, each with the state the device was last known in and
-- whether the event's transition follows it. Events may arrive out of order (MDS): a break is
-- flagged here, never dropped. The allowed prior states are those of ingest/transitions.py.
with events as (
    select * from {{ ref('stg_mds__events') }}
),

sequenced as (
    select
        events.*,
        lag(vehicle_state) over (partition by partner_id, device_id order by event_at, event_key) as previous_state,
        lag(event_at) over (partition by partner_id, device_id order by event_at, event_key) as previous_event_at
    from events
),

final as (
    select
        *,
        case
            when previous_state is null then null  -- nothing known before: nothing to judge
            when event_type = 'trip_start' then previous_state in ('available', 'reserved')
            when event_type = 'trip_end' then previous_state = 'on_trip'
            when event_type = 'trip_cancel' then previous_state in ('on_trip', 'reserved')
            when event_type = 'trip_leave_jurisdiction' then previous_state = 'on_trip'
            when event_type = 'trip_enter_jurisdiction' then previous_state = 'elsewhere'
            when event_type = 'reservation_start' then previous_state = 'available'
            when event_type in ('reservation_stop', 'reservation_cancel') then previous_state = 'reserved'
            else true
        end as follows_last_known_state
    from sequenced
)

select * from final
