"""MDS 2.0 vehicle state machine: does an event leave from the state the vehicle was last in?

MDS events may arrive out of order (a provider may publish late or resend an hour), so a
transition that does not follow the device's last known state is flagged, never rejected: the
count goes into the batch manifest as a warning, and the warehouse flags each event
(`int_mds_events_sequenced.follows_last_known_state`, same table as below).
"""

from __future__ import annotations

from collections.abc import Iterable

# event type -> the states a vehicle may be in just before it (MDS 2.0 micromobility state
# machine); event types not listed here can follow any state and are not judged
PRIOR_STATES: dict[str, frozenset[str]] = {
    "trip_start": frozenset({"available", "reserved"}),
    "trip_end": frozenset({"on_trip"}),
    "trip_cancel": frozenset({"on_trip", "reserved"}),
    "trip_leave_jurisdiction": frozenset({"on_trip"}),
    "trip_enter_jurisdiction": frozenset({"elsewhere"}),
    "reservation_start": frozenset({"available"}),
    "reservation_stop": frozenset({"reserved"}),
    "reservation_cancel": frozenset({"reserved"}),
}


def out_of_order_transitions(events: Iterable[dict]) -> list[str]:
    """Events, in the order received, whose transition does not follow the device's last known
    state: sent earlier in event time than the device's previous event, or leaving from a state
    the previous event did not leave the vehicle in. One description per flagged event."""
    last: dict[str, tuple[int, str]] = {}  # device -> (timestamp, vehicle_state) of its last event
    flagged = []
    for row, event in enumerate(events):
        device, ts, state = event.get("device_id"), event.get("timestamp"), event.get("vehicle_state")
        kind = (event.get("event_types") or [None])[0]
        if device is None or ts is None or state is None:
            continue
        if device in last:
            prev_ts, prev_state = last[device]
            if ts < prev_ts:
                flagged.append(f"row {row}: {kind} at {ts} arrived after the device's event at {prev_ts}")
            elif kind in PRIOR_STATES and prev_state not in PRIOR_STATES[kind]:
                flagged.append(f"row {row}: {kind} follows state '{prev_state}' (expected one of "
                               f"{sorted(PRIOR_STATES[kind])})")
        if device not in last or ts >= last[device][0]:
            last[device] = (ts, state)
    return flagged
