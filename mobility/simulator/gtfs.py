"""A GTFS schedule feed built deterministically from the city's ``transit.json``.

Each route runs both directions from ``service_start`` to ``service_end`` (local time; times past
midnight are written 24:xx as GTFS requires). Weekday headways are ``headway_peak_min`` for
departures 07-09 and 16-19 and ``headway_offpeak_min`` otherwise; weekends run off-peak all day.
The zip has fixed member order and timestamps, so the same network gives the same bytes (and the
same ETag) in every process.
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from datetime import date
from typing import Any

from mobility.simulator.drops import to_csv

PEAK_WINDOWS = ((7 * 3600, 9 * 3600), (16 * 3600, 19 * 3600))
DWELL_S = 20


def _secs(hhmm: str) -> int:
    parts = [int(p) for p in hhmm.split(":")]
    return parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)


def gtfs_time(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _km(a: dict[str, Any], b: dict[str, Any]) -> float:
    lat0 = math.radians((a["stop_lat"] + b["stop_lat"]) / 2)
    dx = (b["stop_lon"] - a["stop_lon"]) * 111.320 * math.cos(lat0)
    dy = (b["stop_lat"] - a["stop_lat"]) * 110.574
    return math.hypot(dx, dy)


def departures(route: dict[str, Any], weekday: bool) -> list[int]:
    """First-stop departure times (seconds after local midnight) for one direction."""
    t, end = _secs(route.get("service_start", "05:00")), _secs(route.get("service_end", "23:30"))
    peak, off = float(route.get("headway_peak_min", 10)), float(route.get("headway_offpeak_min", 20))
    out = []
    while t <= end:
        out.append(t)
        in_peak = weekday and any(lo <= t < hi for lo, hi in PEAK_WINDOWS)
        t += int(round((peak if in_peak else off) * 60))
    return out


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    return to_csv(rows, columns, lineterminator="\r\n")  # GTFS files are usually CRLF


def build_gtfs(transit: dict[str, Any], start: date, end: date) -> bytes:
    """The feed zip for service between ``start`` and ``end`` (inclusive)."""
    ag = transit.get("agency") or {}
    agency = {
        "agency_id": ag.get("agency_id", "metro"),
        "agency_name": ag.get("agency_name", "Metro Transit Authority"),
        "agency_url": ag.get("agency_url", "https://metro.example.org"),
        "agency_timezone": ag.get("agency_timezone", "America/Chicago"),
        "agency_lang": ag.get("agency_lang", "en"),
    }
    stops = {s["stop_id"]: s for s in transit["stops"]}
    routes, trips, stop_times = [], [], []
    for r in transit["routes"]:
        routes.append({
            "route_id": r["route_id"], "agency_id": agency["agency_id"],
            "route_short_name": r.get("route_short_name", r["route_id"]),
            "route_long_name": r.get("route_long_name", ""), "route_type": int(r.get("route_type", 3)),
        })
        speed = float(r.get("speed_kmh", 20))
        for direction, seq in ((0, list(r["stop_ids"])), (1, list(reversed(r["stop_ids"])))):
            # run time per hop from distance and speed, never under a minute between stops
            hops = [max(60, round(_km(stops[a], stops[b]) / speed * 3600)) for a, b in zip(seq, seq[1:])]
            for service, weekday in (("WKDY", True), ("WKND", False)):
                for k, dep in enumerate(departures(r, weekday)):
                    trip_id = f"{r['route_id']}_{direction}_{service}_{k:03d}"
                    trips.append({
                        "route_id": r["route_id"], "service_id": service, "trip_id": trip_id,
                        "trip_headsign": stops[seq[-1]]["stop_name"], "direction_id": direction,
                    })
                    t = dep
                    for i, stop_id in enumerate(seq):
                        if i:
                            t += hops[i - 1]
                        dwell = DWELL_S if 0 < i < len(seq) - 1 else 0
                        stop_times.append({
                            "trip_id": trip_id, "arrival_time": gtfs_time(t),
                            "departure_time": gtfs_time(t + dwell), "stop_id": stop_id,
                            "stop_sequence": i + 1, "timepoint": 1,
                        })
                        t += dwell
    d0, d1 = start.strftime("%Y%m%d"), end.strftime("%Y%m%d")
    calendar = [
        {"service_id": "WKDY", "monday": 1, "tuesday": 1, "wednesday": 1, "thursday": 1, "friday": 1,
         "saturday": 0, "sunday": 0, "start_date": d0, "end_date": d1},
        {"service_id": "WKND", "monday": 0, "tuesday": 0, "wednesday": 0, "thursday": 0, "friday": 0,
         "saturday": 1, "sunday": 1, "start_date": d0, "end_date": d1},
    ]
    network_hash = hashlib.sha256(repr(sorted(transit.items(), key=lambda kv: kv[0])).encode()).hexdigest()[:12]
    feed_info = [{
        "feed_publisher_name": agency["agency_name"], "feed_publisher_url": agency["agency_url"],
        "feed_lang": "en", "feed_start_date": d0, "feed_end_date": d1, "feed_version": f"{d0}-{network_hash}",
    }]
    files = {
        "agency.txt": _csv([agency], list(agency)),
        "stops.txt": _csv(
            [{k: s[k] for k in ("stop_id", "stop_name", "stop_lat", "stop_lon")} for s in transit["stops"]],
            ["stop_id", "stop_name", "stop_lat", "stop_lon"],
        ),
        "routes.txt": _csv(routes, ["route_id", "agency_id", "route_short_name", "route_long_name", "route_type"]),
        "trips.txt": _csv(trips, ["route_id", "service_id", "trip_id", "trip_headsign", "direction_id"]),
        "stop_times.txt": _csv(
            stop_times, ["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence", "timepoint"]
        ),
        "calendar.txt": _csv(calendar, list(calendar[0])),
        "feed_info.txt": _csv(feed_info, list(feed_info[0])),
    }
    buf = io.BytesIO()
    stamp = (max(start.year, 1980), start.month, start.day, 0, 0, 0)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()
