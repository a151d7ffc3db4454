"""Daily partner files: bike-share trip history (Indego style) and ride-hail trips (Chicago TNP).

``drop_files`` writes each file-drop feed of ``partners.yaml`` for one LOCAL date into
``DIR/drops/<drop_folder>/<filename_pattern>``, atomically (``.tmp`` then rename), so a watcher
never sees half a file. Timestamps in both files are local wall-clock time of the city
(``YYYY-MM-DD HH:MM:SS``), as both real sources publish them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mobility.settings import REGISTRY_PATH, Workdir
from mobility.simulator.consortium import PartnerSpec, demo_behaviour, load_demo_partners
from mobility.simulator.world import World

log = logging.getLogger(__name__)

BIKESHARE_COLUMNS = [
    "trip_id", "duration", "start_time", "end_time", "start_station", "start_lat", "start_lon",
    "end_station", "end_lat", "end_lon", "bike_id", "plan_duration", "trip_route_category",
    "passholder_type", "bike_type",
]
RIDEHAIL_COLUMNS = [
    "trip_id", "trip_start_timestamp", "trip_end_timestamp", "trip_seconds", "trip_miles",
    "pickup_community_area", "dropoff_community_area", "fare", "tip", "additional_charges",
    "trip_total", "shared_trip_authorized", "trips_pooled", "pickup_centroid_latitude",
    "pickup_centroid_longitude", "dropoff_centroid_latitude", "dropoff_centroid_longitude",
]
PASSES = np.array(["Indego30", "Indego365", "Day Pass", "Walk-up"])
PLAN_DAYS = {"Indego30": 30, "Indego365": 365, "Day Pass": 1, "Walk-up": 0}


def _local_str(world: World, ms: np.ndarray) -> list[str]:
    tz = world.city.tz
    return [
        datetime.fromtimestamp(int(m) / 1000, tz=timezone.utc).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        for m in ms
    ]


def _pick_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One column index per row of ``weights`` (rows need not be normalised)."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def bikeshare_rows(world: World, operator: str, day: date) -> list[dict[str, Any]]:
    """One local day of bike-share trip history (Indego columns; duration in minutes)."""
    st = world.stations(operator)
    start_ms, rng = world.daily_rng(operator, day)
    n, s = len(start_ms), len(st["station_id"])
    fleet = world.behaviour[operator].fleet_size
    # busier stations: more capacity; start stations follow the same (equity-skewed) siting
    start = rng.choice(s, size=n, p=st["capacity"] / st["capacity"].sum())
    d = world.city.dist_km(st["lon"][start, None], st["lat"][start, None], st["lon"][None, :], st["lat"][None, :])
    w = np.exp(-d / 1.5) * (d < 6)
    w[np.arange(n), start] = 0.08  # round trips are rare but real
    end = _pick_rows(rng, w)
    round_trip = end == start
    km = d[np.arange(n), end] * rng.uniform(1.15, 1.4, n)
    minutes = np.where(round_trip, rng.integers(8, 75, n), np.ceil(km / rng.uniform(9, 16, n) * 60) + 1)
    minutes = minutes.astype(np.int64)
    end_ms = start_ms + minutes * 60_000 + rng.integers(0, 60_000, n)
    equity = world.city.equity_zone[st["nbhd"][start]]
    # the Philadelphia lesson: walk-up (card) payment dominates where monthly passes are rarer
    p_rich, p_poor = [0.6, 0.15, 0.1, 0.15], [0.35, 0.05, 0.15, 0.45]
    passholder = np.where(equity, rng.choice(4, n, p=p_poor), rng.choice(4, n, p=p_rich))
    bike_id = 10000 + rng.integers(0, fleet, n)
    electric = rng.random(n) < 0.42
    starts, ends = _local_str(world, start_ms), _local_str(world, end_ms)
    base = int(day.strftime("%Y%m%d")) * 100_000
    return [
        {
            "trip_id": base + i, "duration": int(minutes[i]), "start_time": starts[i], "end_time": ends[i],
            "start_station": int(st["station_id"][start[i]]),
            "start_lat": f"{st['lat'][start[i]]:.6f}", "start_lon": f"{st['lon'][start[i]]:.6f}",
            "end_station": int(st["station_id"][end[i]]),
            "end_lat": f"{st['lat'][end[i]]:.6f}", "end_lon": f"{st['lon'][end[i]]:.6f}",
            "bike_id": int(bike_id[i]), "plan_duration": PLAN_DAYS[PASSES[passholder[i]]],
            "trip_route_category": "Round Trip" if round_trip[i] else "One Way",
            "passholder_type": PASSES[passholder[i]], "bike_type": "electric" if electric[i] else "standard",
        }
        for i in range(n)
    ]


def ridehail_rows(world: World, operator: str, day: date) -> list[dict[str, Any]]:
    """One local day of ride-hail trips (Chicago TNP fields, snake_case; community area =
    neighborhood_id; timestamps rounded to 15 minutes and fares to $2.50 as Chicago publishes)."""
    c = world.city
    start_ms, rng = world.daily_rng(operator, day)
    n = len(start_ms)
    b = world.behaviour[operator]
    inc = np.clip(c.income / np.median(c.income), 0.05, 20.0)
    wp = c.population * inc**b.income_elasticity
    pick = rng.choice(c.n, size=n, p=wp / wp.sum())
    d = c.dist_km(c.center_lon[pick, None], c.center_lat[pick, None], c.center_lon[None, :], c.center_lat[None, :])
    drop = _pick_rows(rng, c.population[None, :] * np.exp(-d / 5.0))
    miles = np.maximum(0.3, (d[np.arange(n), drop] + rng.exponential(0.8, n)) * 1.3 / 1.609344)
    seconds = np.round(miles / rng.uniform(11, 24, n) * 3600 + rng.integers(60, 300, n)).astype(np.int64)
    end_ms = start_ms + seconds * 1000
    q = 15 * 60_000
    fare = np.round((2.5 + 1.6 * miles + 0.28 * seconds / 60) / 2.5) * 2.5
    tip = np.where(rng.random(n) < 0.3, np.round(rng.uniform(1, 8, n)), 0.0)
    extra = np.round(rng.choice([0.72, 2.72, 5.72], n, p=[0.6, 0.3, 0.1]) + rng.uniform(0, 1.5, n), 2)
    shared = rng.random(n) < 0.12
    pooled = np.where(shared & (rng.random(n) < 0.5), rng.integers(2, 4, n), 1)
    starts, ends = _local_str(world, start_ms // q * q), _local_str(world, end_ms // q * q)
    raw = rng.bytes(20 * n)  # Chicago trip ids are 40-hex-character hashes
    return [
        {
            "trip_id": hashlib.sha1(raw[20 * i : 20 * i + 20]).hexdigest(),
            "trip_start_timestamp": starts[i], "trip_end_timestamp": ends[i],
            "trip_seconds": int(seconds[i]), "trip_miles": f"{miles[i]:.1f}",
            "pickup_community_area": int(c.ids[pick[i]]), "dropoff_community_area": int(c.ids[drop[i]]),
            "fare": f"{fare[i]:.2f}", "tip": f"{tip[i]:.2f}", "additional_charges": f"{extra[i]:.2f}",
            "trip_total": f"{fare[i] + tip[i] + extra[i]:.2f}",
            "shared_trip_authorized": "true" if shared[i] else "false", "trips_pooled": int(pooled[i]),
            "pickup_centroid_latitude": f"{c.center_lat[pick[i]]:.6f}",
            "pickup_centroid_longitude": f"{c.center_lon[pick[i]]:.6f}",
            "dropoff_centroid_latitude": f"{c.center_lat[drop[i]]:.6f}",
            "dropoff_centroid_longitude": f"{c.center_lon[drop[i]]:.6f}",
        }
        for i in range(n)
    ]


def to_csv(rows: list[dict[str, Any]], columns: list[str], lineterminator: str = "\n") -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator=lineterminator)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_atomic(path: Path, data: bytes) -> None:
    """Write then rename, so readers see either no file or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def drop_files(
    workdir: Workdir | str | Path,
    day: date,
    *,
    seed: int = 7,
    world: World | None = None,
    partners: dict[str, PartnerSpec] | None = None,
    scale: float = 1.0,
) -> list[Path]:
    """Write every file-drop feed's file for the local date ``day``; returns the paths written."""
    wd = workdir if isinstance(workdir, Workdir) else Workdir.resolve(workdir)
    partners = partners if partners is not None else load_demo_partners(REGISTRY_PATH)
    world = world or World(wd, seed, demo_behaviour(partners, scale))
    written: list[Path] = []
    for pid, spec in partners.items():
        feed = spec.feed_by_protocol("file_drop")
        if feed is None or pid not in world.behaviour:
            continue
        if spec.kind == "ridehail":
            data = to_csv(ridehail_rows(world, pid, day), RIDEHAIL_COLUMNS)
        elif spec.kind == "bikeshare_operator":
            data = to_csv(bikeshare_rows(world, pid, day), BIKESHARE_COLUMNS)
        else:
            log.warning("no file generator for partner %s of kind %s", pid, spec.kind)
            continue
        name = (feed.filename_pattern or f"{pid}-trips-{{date}}.csv").format(date=day.isoformat())
        path = wd.drops / (feed.drop_folder or pid) / name
        write_atomic(path, data)
        log.info("dropped %s (%d bytes)", path, len(data))
        written.append(path)
    return written
