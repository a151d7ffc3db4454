"""The deterministic world behind every simulated partner feed.

Every quantity is a pure function of (city, seed, behaviour, operator, time slot): trips of one
(operator, UTC hour) come from a random generator seeded with exactly that key, so any hour can be
produced independently, in any process, with identical results. Nothing here knows about HTTP.

Planted facts the pipeline must be able to find again:
- operators deploy proportionally fewer vehicles in equity zones (``equity_deployment_factor``),
  so trips and availability per resident are lower there;
- demand follows a daily rhythm (local time, morning and evening peaks) and a weekly one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mobility.settings import Workdir
from mobility.simulator.city import City, load_city
from mobility.simulator.consortium import OperatorBehaviour, demo_behaviour

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000

# Relative demand per local hour (normalised to mean 1 below). Weekdays: commute peaks at 8 and
# 17-18; weekends: a broad afternoon hump. Night hours are deliberately very low.
_WEEKDAY_RHYTHM = np.array(
    [0.35, 0.2, 0.12, 0.08, 0.08, 0.15, 0.4, 0.9, 1.6, 1.3, 1.0, 1.1,
     1.3, 1.25, 1.2, 1.35, 1.7, 2.0, 1.8, 1.4, 1.1, 0.9, 0.7, 0.5]
)
_WEEKEND_RHYTHM = np.array(
    [0.5, 0.35, 0.25, 0.15, 0.1, 0.1, 0.2, 0.35, 0.6, 0.9, 1.2, 1.5,
     1.7, 1.8, 1.8, 1.8, 1.7, 1.6, 1.5, 1.3, 1.1, 0.9, 0.8, 0.6]
)
WEEKDAY_RHYTHM = _WEEKDAY_RHYTHM / _WEEKDAY_RHYTHM.mean()
WEEKEND_RHYTHM = _WEEKEND_RHYTHM / _WEEKEND_RHYTHM.mean()

# stream tags keep the random streams of different purposes independent
_TRIPS, _FLEET, _DEPLOY, _TELEMETRY, _STATIONS, _STATION_STATUS, _DAILY, _FREE_BIKES = range(1, 9)

# Hours of generated trips kept per world. A request needs its hour and the one before; 4 ingest
# threads ask for adjacent hours. At 10M trips a day one hour holds up to ~0.5M trips (~170 MB),
# so an unbounded cache grew the simulator past 12 GB.
TRIP_HOURS_CACHED = 8
# Records per chunk of a streamed JSON body (a few MB of text at a time).
JSON_CHUNK_ROWS = 10_000

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# where the 32 hex digits of a UUID go in its 36-character form (dashes at 8, 13, 18, 23)
_UUID_DIGIT_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def stable_hash(text: str) -> int:
    """A process-independent 64-bit hash (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _uuid4_rows(raw: bytes) -> np.ndarray:
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16).copy()
    arr[:, 6] = (arr[:, 6] & 0x0F) | 0x40
    arr[:, 8] = (arr[:, 8] & 0x3F) | 0x80
    return arr


def uuid4_bytes(raw: bytes) -> np.ndarray:
    """16-byte chunks with the RFC 4122 version-4 bits set, one ``V16`` item each (a 1-D array:
    fancy indexing copies 16-byte items, ten times faster than rows of a uint8 matrix)."""
    return _uuid4_rows(raw).view("V16").ravel()


def uuids_from_bytes(raw: bytes | np.ndarray) -> list[str]:
    """Format 16-byte chunks (bytes, or rows of ``uuid4_bytes``) as version-4 UUID strings."""
    arr = _uuid4_rows(raw.tobytes() if isinstance(raw, np.ndarray) else raw)
    if not len(arr):
        return []
    # the text of every UUID in one buffer, one per line, then a single split (no Python loop)
    nibbles = np.empty((len(arr), 32), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = arr >> 4, arr & 0x0F
    text = np.full((len(arr), 37), ord("-"), dtype=np.uint8)
    text[:, _UUID_DIGIT_POS] = _HEX[nibbles]
    text[:, 36] = ord("\n")
    return text.tobytes().decode("ascii").split("\n")[:-1]


def uuid_order_keys(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort keys (low, high) of raw UUIDs (``uuid4_bytes``): their text sorts as their bytes do
    (hex digits keep byte order), so ``np.lexsort((low, high, ...))`` orders by the UUID string."""
    words = np.ascontiguousarray(ids).view(">u8").reshape(-1, 2)
    return words[:, 1], words[:, 0]


def _json_str(text: str) -> str:
    """A JSON string literal exactly as the simulator's serialiser writes it."""
    return json.dumps(text, ensure_ascii=False)


def hour_index(hour: datetime | str | int) -> int:
    """Hours since the epoch for a UTC hour given as datetime, ``YYYY-MM-DDTHH`` or an int."""
    if isinstance(hour, (int, np.integer)):
        return int(hour)
    if isinstance(hour, str):
        hour = datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
    if hour.tzinfo is None:
        hour = hour.replace(tzinfo=timezone.utc)
    return int(hour.timestamp() // 3600)


def hour_start(idx: int) -> datetime:
    return datetime.fromtimestamp(idx * 3600, tz=timezone.utc)


def to_ms(t: datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


@dataclass(frozen=True)
class TripBatch:
    """Columnar trips (all arrays the same length), sorted by (end_time, trip_id).
    The id columns hold raw UUIDs (16-byte items, ``uuid4_bytes``): a third of the memory of
    str objects, and formatted only when served (``uuids_from_bytes``)."""

    trip_id: np.ndarray
    start_event_id: np.ndarray
    end_event_id: np.ndarray
    device: np.ndarray  # index into the operator's fleet
    start_ms: np.ndarray
    end_ms: np.ndarray
    start_lon: np.ndarray
    start_lat: np.ndarray
    end_lon: np.ndarray
    end_lat: np.ndarray
    duration_s: np.ndarray
    distance_m: np.ndarray
    start_nbhd: np.ndarray  # index into City arrays
    end_nbhd: np.ndarray

    def __len__(self) -> int:
        return len(self.trip_id)

    def take(self, idx: np.ndarray) -> "TripBatch":
        idx = np.asarray(idx, dtype=np.int64)
        return TripBatch(**{name: getattr(self, name)[idx] for name in self.__dataclass_fields__})

    @staticmethod
    def concat(batches: list["TripBatch"]) -> "TripBatch":
        return TripBatch(**{name: np.concatenate([getattr(b, name) for b in batches])
                            for name in TripBatch.__dataclass_fields__})

    def sorted_by_end(self) -> "TripBatch":
        # by (end_ms, trip_id): lexsort's last key is the primary one
        order = np.lexsort((*uuid_order_keys(self.trip_id), self.end_ms)) if len(self) else np.zeros(0, np.int64)
        return self.take(order)


class World:
    """The simulated consortium: one city, one seed, one behaviour per partner."""

    def __init__(
        self,
        workdir_or_city_dir: Workdir | str | Path | City,
        seed: int = 7,
        partners_behaviour: dict[str, OperatorBehaviour] | None = None,
        *,
        scale: float = 1.0,
    ) -> None:
        self.city = (
            workdir_or_city_dir if isinstance(workdir_or_city_dir, City) else load_city(workdir_or_city_dir)
        )
        self.seed = int(seed)
        self.behaviour = partners_behaviour or demo_behaviour(scale=scale)
        c = self.city
        median_income = float(np.median(c.income)) or 1.0
        self._income_rel = np.clip(c.income / median_income, 0.05, 20.0)
        # per-operator caches of the slow-to-build but reused pieces; trips per hour are cached
        # by lru_cache on the bound methods below
        self._fleet: dict[str, list[str]] = {}
        self._fleet_raw: dict[str, np.ndarray] = {}
        self._fleet_stations: dict[str, dict[str, np.ndarray]] = {}
        self._trips_cached = lru_cache(maxsize=TRIP_HOURS_CACHED)(self._generate_hour)
        self._deploy_cached = lru_cache(maxsize=64)(self._deployment)
        self._daily_cached = lru_cache(maxsize=64)(self._local_day)

    # ------------------------------------------------------------------ helpers
    def _rng(self, operator: str, tag: int, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stable_hash(operator), tag, *[int(k) % 2**63 for k in key]])

    def _b(self, operator: str) -> OperatorBehaviour:
        try:
            return self.behaviour[operator]
        except KeyError:
            raise KeyError(f"unknown operator {operator!r}; known: {sorted(self.behaviour)}") from None

    def operators(self, kind: str = "scooter_operator") -> list[str]:
        return [p for p, b in self.behaviour.items() if b.kind == kind]

    def deployment_weights(self, operator: str) -> np.ndarray:
        """Relative vehicle supply per neighborhood: population x income preference x equity factor."""
        b = self._b(operator)
        w = self.city.population * self._income_rel**b.income_elasticity
        w = np.where(self.city.equity_zone, w * b.equity_deployment_factor, w)
        return w / w.sum()

    def local_hour_weekday(self, idx: int) -> tuple[int, int]:
        local = hour_start(idx).astimezone(self.city.tz)
        return local.hour, local.weekday()

    def expected_trips(self, operator: str, idx: int) -> float:
        """Mean number of trips starting in UTC hour ``idx`` (rhythm in local time)."""
        b = self._b(operator)
        h, wd = self.local_hour_weekday(idx)
        weekend = wd >= 5
        rhythm = WEEKEND_RHYTHM if weekend else WEEKDAY_RHYTHM
        return b.trips_per_day / 24 * rhythm[h] * (b.weekend_factor if weekend else 1.0)

    def operating(self, operator: str, idx: int) -> bool:
        return hour_start(idx) >= self._b(operator).operations_start

    def fleet(self, operator: str) -> list[str]:
        """The operator's device ids (UUIDs), fixed for the life of the world."""
        if operator not in self._fleet:
            self._fleet[operator] = uuids_from_bytes(self.fleet_raw(operator))
        return self._fleet[operator]

    def fleet_raw(self, operator: str) -> np.ndarray:
        """The device ids as raw UUIDs (``uuid4_bytes``): what the JSON writers format."""
        if operator not in self._fleet_raw:
            n = self._b(operator).fleet_size
            self._fleet_raw[operator] = uuid4_bytes(self._rng(operator, _FLEET).bytes(16 * n))
        return self._fleet_raw[operator]

    def provider_id(self, operator: str) -> str:
        pid = self._b(operator).provider_id
        return pid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"mobility-commons:{operator}"))

    # ------------------------------------------------------------------ trips
    def _generate_hour(self, operator: str, idx: int) -> TripBatch:
        """All trips of ``operator`` STARTING in UTC hour ``idx``."""
        b = self._b(operator)
        c = self.city
        rng = self._rng(operator, _TRIPS, idx)
        n_fleet = b.fleet_size
        n = 0
        if self.operating(operator, idx):
            # devices of even hours and odd hours are disjoint halves of the fleet and every trip
            # lasts < 60 min, so one device never has two overlapping trips
            n = min(int(rng.poisson(self.expected_trips(operator, idx))), n_fleet // 2)
        half = np.arange(idx % 2, n_fleet, 2)
        device = np.sort(rng.choice(half, size=n, replace=False)) if n else np.zeros(0, np.int64)
        start_nb = rng.choice(c.n, size=n, p=self.deployment_weights(operator))
        s_lon, s_lat = c.sample_points(start_nb, rng)
        start_ms = idx * HOUR_MS + rng.integers(0, HOUR_MS, size=n)

        # end point 1-4 km away (skewed short), kept inside the city: re-draw the direction for
        # points that leave it, then fall back to a point in the start neighborhood
        dist = 1.0 + 3.0 * rng.beta(1.6, 2.6, size=n)
        e_lon, e_lat = np.empty(n), np.empty(n)
        end_nb = np.full(n, -1, dtype=np.int64)
        todo = np.arange(n)
        for attempt in range(8):
            if not len(todo):
                break
            d = dist[todo] * (0.85**attempt)
            x, y = c.offset(s_lon[todo], s_lat[todo], d, rng.uniform(0, 2 * np.pi, len(todo)))
            nb = c.locate(x, y)
            ok = nb >= 0
            e_lon[todo[ok]], e_lat[todo[ok]], end_nb[todo[ok]] = x[ok], y[ok], nb[ok]
            todo = todo[~ok]
        if len(todo):
            x, y = c.sample_points(start_nb[todo], rng)
            e_lon[todo], e_lat[todo], end_nb[todo] = x, y, start_nb[todo]

        crow_km = c.dist_km(s_lon, s_lat, e_lon, e_lat)
        distance_m = np.maximum(50, np.round(crow_km * 1000 * rng.uniform(1.15, 1.4, n))).astype(np.int64)
        speed_ms = rng.uniform(8, 20, n) / 3.6
        duration_s = np.clip(np.round(distance_m / speed_ms + rng.integers(20, 90, n)), 60, 3540).astype(np.int64)
        end_ms = start_ms + duration_s * 1000
        ids = uuid4_bytes(rng.bytes(16 * 3 * n) if n else b"")
        batch = TripBatch(
            trip_id=ids[0::3].copy(), start_event_id=ids[1::3].copy(), end_event_id=ids[2::3].copy(),
            device=device, start_ms=start_ms.astype(np.int64), end_ms=end_ms.astype(np.int64),
            start_lon=s_lon, start_lat=s_lat, end_lon=e_lon, end_lat=e_lat,
            duration_s=duration_s, distance_m=distance_m,
            start_nbhd=start_nb.astype(np.int64), end_nbhd=end_nb,
        )
        return batch.sorted_by_end()

    def trips_started_in_hour(self, operator: str, hour: datetime | str | int) -> TripBatch:
        return self._trips_cached(operator, hour_index(hour))

    def _ending_batch(self, operator: str, idx: int) -> TripBatch:
        lo, hi = idx * HOUR_MS, (idx + 1) * HOUR_MS
        # each hour filtered before concatenating: no copy of two whole hours
        parts = [b.take(np.flatnonzero((b.end_ms >= lo) & (b.end_ms < hi)))
                 for b in (self._trips_cached(operator, idx - 1), self._trips_cached(operator, idx))]
        return TripBatch.concat(parts).sorted_by_end()

    def trips_ending_in_hour(self, operator: str, hour: datetime | str | int) -> list[dict[str, Any]]:
        """MDS 2.0 trip records whose end_time falls in the UTC hour: what /trips?end_time=H serves.
        (The server streams the same records as text with ``trip_records_json``.)"""
        t = self._ending_batch(operator, hour_index(hour))
        fleet, pid = self.fleet(operator), self.provider_id(operator)
        trip_ids = uuids_from_bytes(t.trip_id)
        return [
            {
                "provider_id": pid,
                "device_id": fleet[t.device[i]],
                "trip_id": trip_ids[i],
                "vehicle_type": "scooter",
                "propulsion_types": ["electric"],
                "start_time": int(t.start_ms[i]),
                "end_time": int(t.end_ms[i]),
                "start_location": {"lat": float(t.start_lat[i]), "lng": float(t.start_lon[i])},
                "end_location": {"lat": float(t.end_lat[i]), "lng": float(t.end_lon[i])},
                "duration": int(t.duration_s[i]),
                "distance": int(t.distance_m[i]),
            }
            for i in range(len(t))
        ]

    def trip_records_json(self, operator: str, hour: datetime | str | int,
                          chunk_rows: int = JSON_CHUNK_ROWS) -> Iterator[str]:
        """The records of ``trips_ending_in_hour`` as compact JSON text (``json.dumps`` with
        separators ``(",", ":")``, ``ensure_ascii=False``), comma-separated, in chunks of
        ``chunk_rows`` records: no dict per trip, and the text of one chunk at a time."""
        t = self._ending_batch(operator, hour_index(hour))
        fleet = self.fleet_raw(operator)
        pid = _json_str(self.provider_id(operator))
        for lo in range(0, len(t), chunk_rows):
            sl = slice(lo, lo + chunk_rows)
            # ids are UUIDs (no character needs escaping); floats print as json.dumps prints them
            # (float.__repr__), ints as int.__str__
            rows = zip(uuids_from_bytes(fleet[t.device[sl]]), uuids_from_bytes(t.trip_id[sl]), t.start_ms[sl].tolist(),
                       t.end_ms[sl].tolist(), t.start_lat[sl].tolist(), t.start_lon[sl].tolist(),
                       t.end_lat[sl].tolist(), t.end_lon[sl].tolist(), t.duration_s[sl].tolist(),
                       t.distance_m[sl].tolist())
            yield ",".join([
                f'{{"provider_id":{pid},"device_id":"{dev}","trip_id":"{tid}","vehicle_type":"scooter",'
                f'"propulsion_types":["electric"],"start_time":{s},"end_time":{e},'
                f'"start_location":{{"lat":{slat!r},"lng":{slon!r}}},"end_location":{{"lat":{elat!r},"lng":{elon!r}}},'
                f'"duration":{dur},"distance":{dist}}}'
                for dev, tid, s, e, slat, slon, elat, elon, dur, dist in rows
            ])

    def trip_truth(self, operator: str, start_utc: datetime, end_utc: datetime) -> pa.Table:
        """Ground truth for every trip whose END time is in [start_utc, end_utc)."""
        lo, hi = to_ms(start_utc), to_ms(end_utc)
        first, last = lo // HOUR_MS - 1, (hi - 1) // HOUR_MS
        both = TripBatch.concat([self._trips_cached(operator, i) for i in range(first, last + 1)])
        t = both.take(np.flatnonzero((both.end_ms >= lo) & (both.end_ms < hi))).sorted_by_end()
        ids = self.city.ids
        fleet = self.fleet(operator)
        return pa.table(
            {
                "trip_id": pa.array(uuids_from_bytes(t.trip_id), pa.string()),
                "provider_id": pa.array([self.provider_id(operator)] * len(t), pa.string()),
                "device_id": pa.array([fleet[d] for d in t.device], pa.string()),
                "start_time": pa.array(t.start_ms, pa.timestamp("ms", tz="UTC")),
                "end_time": pa.array(t.end_ms, pa.timestamp("ms", tz="UTC")),
                "start_neighborhood_id": pa.array(ids[t.start_nbhd], pa.int32()),
                "end_neighborhood_id": pa.array(ids[t.end_nbhd], pa.int32()),
                "start_lat": pa.array(t.start_lat), "start_lon": pa.array(t.start_lon),
                "end_lat": pa.array(t.end_lat), "end_lon": pa.array(t.end_lon),
                "distance": pa.array(t.distance_m, pa.int64()),
                "duration": pa.array(t.duration_s, pa.int64()),
            }
        )

    # ------------------------------------------------------------------ events
    def _hour_events(self, operator: str, idx: int) -> dict[str, np.ndarray]:
        """Columns of the hour's events: trip_start of the trips starting in it, trip_end of
        those ending in it, sorted by (timestamp, event_id). ``end`` is True for trip_end."""
        started = self._trips_cached(operator, idx)
        ended = self._ending_batch(operator, idx)
        cols = {
            "device": np.concatenate([started.device, ended.device]),
            "event_id": np.concatenate([started.start_event_id, ended.end_event_id]),
            "timestamp": np.concatenate([started.start_ms, ended.end_ms]),
            "lat": np.concatenate([started.start_lat, ended.end_lat]),
            "lng": np.concatenate([started.start_lon, ended.end_lon]),
            "trip_id": np.concatenate([started.trip_id, ended.trip_id]),
            "end": np.concatenate([np.zeros(len(started), bool), np.ones(len(ended), bool)]),
        }
        if not len(cols["timestamp"]):
            return cols
        order = np.lexsort((*uuid_order_keys(cols["event_id"]), cols["timestamp"]))
        return {k: v[order] for k, v in cols.items()}

    def events_in_hour(self, operator: str, hour: datetime | str | int) -> list[dict[str, Any]]:
        """MDS 2.0 events with a timestamp in the UTC hour: trip_start (-> on_trip) and
        trip_end (on_trip -> available), sorted by (timestamp, event_id).
        (The server streams the same records as text with ``event_records_json``.)"""
        ev = self._hour_events(operator, hour_index(hour))
        fleet, pid = self.fleet(operator), self.provider_id(operator)
        event_ids, trip_ids = uuids_from_bytes(ev["event_id"]), uuids_from_bytes(ev["trip_id"])
        return [
            {
                "device_id": fleet[ev["device"][i]], "provider_id": pid,
                "event_id": event_ids[i], "vehicle_state": "available" if ev["end"][i] else "on_trip",
                "event_types": ["trip_end" if ev["end"][i] else "trip_start"], "timestamp": int(ev["timestamp"][i]),
                "location": {"lat": float(ev["lat"][i]), "lng": float(ev["lng"][i])},
                "trip_ids": [trip_ids[i]],
            }
            for i in range(len(ev["timestamp"]))
        ]

    def event_records_json(self, operator: str, hour: datetime | str | int,
                           chunk_rows: int = JSON_CHUNK_ROWS) -> Iterator[str]:
        """The records of ``events_in_hour`` as JSON text, like ``trip_records_json``."""
        ev = self._hour_events(operator, hour_index(hour))
        fleet = self.fleet_raw(operator)
        pid = _json_str(self.provider_id(operator))
        state = np.array(['"on_trip","event_types":["trip_start"]', '"available","event_types":["trip_end"]'],
                         dtype=object)
        for lo in range(0, len(ev["timestamp"]), chunk_rows):
            sl = slice(lo, lo + chunk_rows)
            rows = zip(uuids_from_bytes(fleet[ev["device"][sl]]), uuids_from_bytes(ev["event_id"][sl]),
                       state[ev["end"][sl].astype(np.int64)].tolist(), ev["timestamp"][sl].tolist(),
                       ev["lat"][sl].tolist(), ev["lng"][sl].tolist(), uuids_from_bytes(ev["trip_id"][sl]))
            yield ",".join([
                f'{{"device_id":"{dev}","provider_id":{pid},"event_id":"{eid}","vehicle_state":{st},'
                f'"timestamp":{ts},"location":{{"lat":{lat!r},"lng":{lng!r}}},"trip_ids":["{tid}"]}}'
                for dev, eid, st, ts, lat, lng, tid in rows
            ])

    # ------------------------------------------------------------------ vehicles
    def _deployment(self, operator: str, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each idle device was dropped off on UTC day ``day`` (lon, lat, neighborhood)."""
        rng = self._rng(operator, _DEPLOY, day)
        n = self._b(operator).fleet_size
        nb = rng.choice(self.city.n, size=n, p=self.deployment_weights(operator))
        lon, lat = self.city.sample_points(nb, rng)
        return lon, lat, nb

    def vehicle_states(self, operator: str, at: datetime) -> dict[str, np.ndarray]:
        """State of every device at ``at``: on a trip (interpolated position), parked where its last
        trip of the past 3 hours ended, or at the day's drop-off point. Arrays in fleet order."""
        t_ms = to_ms(at)
        idx = t_ms // HOUR_MS
        n = self._b(operator).fleet_size
        lon, lat, nb = (a.copy() for a in self._deploy_cached(operator, t_ms // (24 * HOUR_MS)))
        state = np.full(n, "available", dtype=object)
        event = np.full(n, "provider_drop_off", dtype=object)
        event_ts = np.full(n, (t_ms // (24 * HOUR_MS)) * 24 * HOUR_MS, dtype=np.int64)
        trip = np.full(n, None, dtype=object)
        batch = TripBatch.concat([self._trips_cached(operator, i) for i in range(idx - 3, idx + 1)])
        batch = batch.take(np.flatnonzero(batch.start_ms <= t_ms))
        trip_ids = uuids_from_bytes(batch.trip_id)
        # latest trip per device: iterate in start order so later trips overwrite earlier ones
        for i in np.argsort(batch.start_ms, kind="stable"):
            d = batch.device[i]
            if batch.end_ms[i] <= t_ms:
                lon[d], lat[d], nb[d] = batch.end_lon[i], batch.end_lat[i], batch.end_nbhd[i]
                state[d], event[d], event_ts[d], trip[d] = "available", "trip_end", batch.end_ms[i], None
            else:
                f = (t_ms - batch.start_ms[i]) / (batch.end_ms[i] - batch.start_ms[i])
                lon[d] = round(batch.start_lon[i] + f * (batch.end_lon[i] - batch.start_lon[i]), 6)
                lat[d] = round(batch.start_lat[i] + f * (batch.end_lat[i] - batch.start_lat[i]), 6)
                nb[d] = -1  # en route: not attributed to a neighborhood
                state[d], event[d], event_ts[d] = "on_trip", "trip_start", batch.start_ms[i]
                trip[d] = trip_ids[i]
        battery = self._rng(operator, _TELEMETRY, t_ms // 60_000).integers(15, 101, n)
        return {"lon": lon, "lat": lat, "nbhd": nb, "state": state, "event": event,
                "event_ts": event_ts, "trip_id": trip, "battery": battery}

    def vehicle_id(self, operator: str, i: int) -> str:
        return f"{operator[:3].upper()}-{i:05d}"

    def mds_vehicles(self, operator: str) -> list[dict[str, Any]]:
        """The /vehicles records (slow-changing properties), in fleet order."""
        pid = self.provider_id(operator)
        return [
            {"device_id": d, "provider_id": pid, "vehicle_id": self.vehicle_id(operator, i),
             "vehicle_type": "scooter", "propulsion_types": ["electric"], "maximum_speed": 25}
            for i, d in enumerate(self.fleet(operator))
        ]

    def mds_vehicle_status(self, operator: str, at: datetime) -> list[dict[str, Any]]:
        """The /vehicles/status records at ``at``, in fleet order."""
        s = self.vehicle_states(operator, at)
        t_ms = to_ms(at)
        pid = self.provider_id(operator)
        telemetry_ids = uuids_from_bytes(self._rng(operator, _TELEMETRY, t_ms).bytes(16 * len(s["lon"])))
        out = []
        for i, d in enumerate(self.fleet(operator)):
            loc = {"lat": float(s["lat"][i]), "lng": float(s["lon"][i])}
            trip_ids = [s["trip_id"][i]] if s["trip_id"][i] else None
            out.append({
                "device_id": d, "provider_id": pid,
                "last_event": {
                    "device_id": d, "provider_id": pid,
                    # a stable id per (device, event time) so repeated snapshots agree
                    "event_id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{d}:{int(s['event_ts'][i])}")),
                    "vehicle_state": s["state"][i], "event_types": [s["event"][i]],
                    "timestamp": int(s["event_ts"][i]), "location": loc,
                    **({"trip_ids": trip_ids} if trip_ids else {}),
                },
                "last_telemetry": {
                    "device_id": d, "provider_id": pid, "telemetry_id": telemetry_ids[i],
                    "timestamp": t_ms, "trip_ids": trip_ids, "journey_id": None,
                    "location": loc, "battery_percent": int(s["battery"][i]),
                },
            })
        return out

    def gbfs_vehicle_id(self, operator: str, device_id: str, at: datetime) -> str:
        """Rotating public id: changes every 30 minutes so GBFS cannot be used to trace trips."""
        slot = to_ms(at) // (30 * 60_000)
        return hashlib.sha256(f"{self.seed}:{operator}:{device_id}:{slot}".encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ bike-share
    def stations(self, operator: str) -> dict[str, np.ndarray]:
        """Docking stations: count per neighborhood proportional to population, sparser in
        low-income areas (deployment weights), positions inside the neighborhood."""
        if operator in self._fleet_stations:
            return self._fleet_stations[operator]
        b = self._b(operator)
        rng = self._rng(operator, _STATIONS)
        w = self.deployment_weights(operator) * b.n_stations
        counts = np.floor(w).astype(np.int64)
        rest = b.n_stations - counts.sum()
        counts[np.argsort(-(w - counts), kind="stable")[:rest]] += 1  # largest remainder
        nb = np.repeat(np.arange(self.city.n), counts)
        lon, lat = self.city.sample_points(nb, rng)
        st = {
            "station_id": np.arange(3001, 3001 + len(nb)),
            "lon": lon, "lat": lat, "nbhd": nb,
            "capacity": rng.integers(15, 36, len(nb)),
            "name": np.array([f"{self.city.names[k]} #{j + 1}" for j, k in enumerate(nb)], dtype=object),
        }
        self._fleet_stations[operator] = st
        return st

    def station_status(self, operator: str, at: datetime) -> dict[str, np.ndarray]:
        """Bikes and docks per station at ``at`` (5-minute resolution)."""
        st = self.stations(operator)
        slot = to_ms(at) // 300_000
        rng = self._rng(operator, _STATION_STATUS, slot)
        h, wd = self.local_hour_weekday(to_ms(at) // HOUR_MS)
        # commute drains stations in the morning and refills them in the evening (in aggregate)
        fill = 0.55 - 0.15 * np.sin((h - 8) / 24 * 2 * np.pi) if wd < 5 else 0.5
        cap = st["capacity"]
        fills = np.clip(fill + rng.normal(0, 0.15, len(cap)), 0.02, 0.98)
        bikes = rng.binomial(cap, fills)
        disabled = np.minimum(rng.binomial(cap - bikes, 0.03), cap - bikes)
        docks = cap - bikes - disabled
        ebikes = rng.binomial(bikes, 0.4)
        return {"bikes": bikes, "docks": docks, "disabled": disabled, "ebikes": ebikes, "slot_ms": slot * 300_000}

    def free_bikes(self, operator: str, at: datetime) -> dict[str, Any]:
        """A few e-bikes parked away from docks (free_bike_status), deployment-weighted."""
        b = self._b(operator)
        slot = to_ms(at) // 300_000
        rng = self._rng(operator, _FREE_BIKES, slot)
        n = max(1, b.fleet_size // 50)
        nb = rng.choice(self.city.n, size=n, p=self.deployment_weights(operator))
        lon, lat = self.city.sample_points(nb, rng)
        bike = rng.choice(b.fleet_size, size=n, replace=False)
        ids = [self.gbfs_vehicle_id(operator, f"bike-{k}", at) for k in bike]
        return {"bike_id": ids, "lon": lon, "lat": lat, "range_m": rng.integers(5000, 60000, n)}

    # ------------------------------------------------------------------ daily files
    def _local_day(self, operator: str, day: date) -> dict[str, np.ndarray]:
        """Trip start times (ms UTC) of one LOCAL day, following the local rhythm."""
        b = self._b(operator)
        rng = self._rng(operator, _DAILY, day.toordinal())
        weekend = day.weekday() >= 5
        rhythm = WEEKEND_RHYTHM if weekend else WEEKDAY_RHYTHM
        if b.kind == "ridehail":  # ride-hail is busier late in the evening and at night
            rhythm = rhythm * np.where((np.arange(24) >= 20) | (np.arange(24) <= 2), 1.8, 1.0)
            rhythm = rhythm / rhythm.mean()
        n = int(rng.poisson(b.trips_per_day * (b.weekend_factor if weekend else 1.0)))
        hours = rng.choice(24, size=n, p=rhythm / rhythm.sum())
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.city.tz)
        # local hour h is wall-clock h (DST days: the skipped/doubled hour is handled by zoneinfo)
        hour_ms = np.array(
            [to_ms(midnight.replace(hour=h).astimezone(timezone.utc)) for h in range(24)], dtype=np.int64
        )
        start_ms = np.sort(hour_ms[hours] + rng.integers(0, HOUR_MS, n))
        return {"start_ms": start_ms, "rng_state": rng.bit_generator.state}

    def daily_rng(self, operator: str, day: date) -> tuple[np.ndarray, np.random.Generator]:
        """Start times of the day plus a generator positioned after them (for the other columns)."""
        d = self._daily_cached(operator, day)
        rng = np.random.default_rng()
        rng.bit_generator.state = d["rng_state"]
        return d["start_ms"], rng
