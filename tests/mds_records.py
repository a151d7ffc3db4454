"""MDS 2.0 trip records for landing tests: one clean trip per n, in one known hour."""

import json
import uuid
from datetime import datetime, timezone

from ingest.landing import Window

HOUR = Window.hour(datetime(2026, 11, 2, 5, tzinfo=timezone.utc))
T0 = int(HOUR.start.timestamp() * 1000)


def trip(provider_id: str, n: int = 0, **over) -> dict:
    """A valid trip ending inside HOUR; `over` replaces or adds fields."""
    rec = {
        "provider_id": provider_id,
        "device_id": str(uuid.UUID(int=1000 + n)),
        "trip_id": str(uuid.UUID(int=n + 1)),
        "vehicle_type": "scooter",
        "start_time": T0 + 60_000 * n,
        "end_time": T0 + 60_000 * n + 600_000,
        "start_location": {"lat": 41.85, "lng": -87.7},
        "end_location": {"lat": 41.86, "lng": -87.71},
        "duration": 600,
        "distance": 1800,
    }
    rec.update(over)
    return rec


def payload(records) -> bytes:
    return json.dumps({"version": "2.0.0", "trips": records}).encode()
