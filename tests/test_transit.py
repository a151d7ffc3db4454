"""GTFS scheduled service, frequent stops, residents near frequent service and first/last mile.

Ground truth is computed here, independently of the SQL, from the GTFS zip itself (pandas over
its CSV members): departures per stop and local hour, frequent stops, and which planted scooter
trips start or end near a frequent stop (haversine in Python, neighborhoods with shapely). The
simulator's feed is pulled over HTTP and landed by the real ingest; the real Cairns feed is landed
from /work/shared/data.
"""

from __future__ import annotations

import io
import json
import math
import random
import shutil
import zipfile
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from shapely.geometry import Point

from ingest.contracts import load_contract
from ingest.landing import Window, land_batch
from mobility.gates.publish_gate import GateFailed, read_frames, run_publish_gate
from mobility.pipeline import ingest_gtfs_day
from mobility.registry import load_registry
from mobility.settings import Workdir
from mobility.warehouse.build import run_dbt
from mobility.warehouse.publish import publish

CITY_TZ = ZoneInfo("America/Chicago")
# a Friday and the Saturday after it: Friday's trips past midnight run into Saturday, and the
# weekday timetable (peak headways) meets the weekend one
FIRST_DAY, LAST_DAY = date(2026, 6, 5), date(2026, 6, 6)
FREQUENT = 4
NEAR_M, FLM_M = 400, 200
EARTH_RADIUS_M = 6371008.8  # the mean radius DuckDB's ST_Distance_Sphere uses
K = 10


# ---------------------------------------------------------------------------- independent truth

def _secs(text: str) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    h, m, s = (int(p) for p in text.split(":"))
    return h * 3600 + m * 60 + s


def scheduled_departures(raw: bytes, first_day: date, last_day: date, city_tz: ZoneInfo) -> Counter:
    """(stop_id, local date, local hour, route_id, direction) -> departures, read from the zip with pandas.

    A departure: every stop of a trip but its last, unless pickup_type is 1; untimed stops get
    the time interpolated by position between the timed stops around them (floored to the second);
    times count from noon minus 12 h of the service day in the agency's zone.
    """
    zf = zipfile.ZipFile(io.BytesIO(raw))

    def read(name: str) -> pd.DataFrame | None:
        if name not in zf.namelist():
            return None
        return pd.read_csv(zf.open(name), dtype=str, keep_default_na=False, encoding="utf-8-sig")

    agency_tz = ZoneInfo(read("agency.txt")["agency_timezone"].iloc[0])
    service_days = [first_day - timedelta(days=1) + timedelta(days=i) for i in range((last_day - first_day).days + 2)]
    weekdays = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    active: dict[str, set[date]] = {}
    calendar = read("calendar.txt")
    if calendar is not None:
        for row in calendar.to_dict("records"):
            start = datetime.strptime(row["start_date"], "%Y%m%d").date()
            end = datetime.strptime(row["end_date"], "%Y%m%d").date()
            for day in service_days:
                if start <= day <= end and row[weekdays[day.weekday()]] == "1":
                    active.setdefault(row["service_id"], set()).add(day)
    exceptions = read("calendar_dates.txt")
    if exceptions is not None:
        for row in exceptions.to_dict("records"):
            day = datetime.strptime(row["date"], "%Y%m%d").date()
            if day in service_days:
                if row["exception_type"] == "1":
                    active.setdefault(row["service_id"], set()).add(day)
                elif row["exception_type"] == "2":
                    active.get(row["service_id"], set()).discard(day)

    trips = read("trips.txt").set_index("trip_id")
    stop_times = read("stop_times.txt")
    stop_times["seq"] = stop_times["stop_sequence"].astype(int)
    if "pickup_type" not in stop_times:
        stop_times["pickup_type"] = ""
    counts: Counter = Counter()
    noon_utc = {
        day: datetime.combine(day, time(12), tzinfo=agency_tz).astimezone(timezone.utc) for day in service_days
    }
    for trip_id, group in stop_times.sort_values(["trip_id", "seq"]).groupby("trip_id", sort=False):
        trip = trips.loc[trip_id]
        days = active.get(trip["service_id"], set())
        if not days:
            continue
        times = [_secs(d) if _secs(d) is not None else _secs(a)
                 for d, a in zip(group["departure_time"], group["arrival_time"])]
        timed = [i for i, t in enumerate(times) if t is not None]
        direction = trip.get("direction_id", "")
        if direction == "":  # no direction_id in the feed: the headsign stands in
            direction = f"headsign:{trip.get('trip_headsign', '')}"
        stops, pickups = list(group["stop_id"]), list(group["pickup_type"])
        for i in range(len(stops) - 1):  # the last stop is an arrival only
            if pickups[i] == "1":
                continue
            t = times[i]
            if t is None:
                before = [j for j in timed if j < i]
                after = [j for j in timed if j > i]
                if not before or not after:
                    continue
                j0, j1 = before[-1], after[0]
                t = times[j0] + ((times[j1] - times[j0]) * (i - j0)) // (j1 - j0)
            for day in days:
                local = (noon_utc[day] - timedelta(hours=12) + timedelta(seconds=t)).astimezone(city_tz)
                if first_day <= local.date() <= last_day:
                    counts[(stops[i], local.date(), local.hour, trip["route_id"], direction)] += 1
    return counts


def per_stop_hour(by_route: Counter) -> tuple[Counter, dict]:
    """Total departures per (stop, date, hour) and the busiest route-direction's count."""
    total: Counter = Counter()
    busiest: dict = {}
    for (stop, day, hour, _, _), n in by_route.items():
        total[(stop, day, hour)] += n
        busiest[(stop, day, hour)] = max(busiest.get((stop, day, hour), 0), n)
    return total, busiest


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def neighborhoods_of(wd: Workdir) -> dict[int, shapely.Geometry]:
    table = pq.read_table(wd.neighborhoods, columns=["neighborhood_id", "geometry_wkt"]).to_pylist()
    return {r["neighborhood_id"]: shapely.from_wkt(r["geometry_wkt"]) for r in table}


def containing(polygons: dict[int, shapely.Geometry], lon: float, lat: float) -> int | None:
    ids = [nid for nid, poly in polygons.items() if poly.contains(Point(lon, lat))]
    return min(ids) if ids else None


def _query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("load spatial")
        return con.execute(sql).fetchall()


# ---------------------------------------------------------------------------- planted trips

MDS_COLUMNS = {
    "partner_id": pa.string(), "batch_id": pa.string(), "provider_id": pa.string(), "device_id": pa.string(),
    "trip_id": pa.string(), "vehicle_type": pa.string(), "start_time": pa.timestamp("ms", tz="UTC"),
    "end_time": pa.timestamp("ms", tz="UTC"), "duration": pa.int64(), "distance": pa.float64(),
    "start_lat": pa.float64(), "start_lon": pa.float64(), "end_lat": pa.float64(), "end_lon": pa.float64(),
}


def _offset(lon: float, lat: float, metres: float, bearing: float) -> tuple[float, float]:
    dlat = metres * math.cos(bearing) / 111195.0
    dlon = metres * math.sin(bearing) / (111195.0 * math.cos(math.radians(lat)))
    return lon + dlon, lat + dlat


def plant_trips(wd: Workdir, stops: dict[str, tuple[float, float]], seed: int = 11, n: int = 600) -> list[dict]:
    """Scooter trips starting and ending 0-350 m from random stops at random local times of the
    period (so some are near a frequent stop, some near an infrequent one, some too far), written
    as one bronze mds_trips batch. Returns the trips."""
    rng = random.Random(seed)
    stop_ids = sorted(stops)
    trips = []
    for i in range(n):
        day = FIRST_DAY + timedelta(days=rng.randint(0, (LAST_DAY - FIRST_DAY).days))
        local = datetime.combine(day, time(rng.randint(5, 23), rng.randint(0, 59)), tzinfo=CITY_TZ)
        start = local.astimezone(timezone.utc)
        end = start + timedelta(minutes=rng.randint(3, 40))  # the end hour may differ
        slon, slat = _offset(*stops[rng.choice(stop_ids)], rng.uniform(0, 350), rng.uniform(0, 2 * math.pi))
        elon, elat = _offset(*stops[rng.choice(stop_ids)], rng.uniform(0, 350), rng.uniform(0, 2 * math.pi))
        trips.append({
            "partner_id": "scootco", "batch_id": "scootco:planted", "provider_id": "p", "device_id": f"d{i % 50}",
            "trip_id": f"t{i:04d}", "vehicle_type": "scooter_standing", "start_time": start, "end_time": end,
            "duration": int((end - start).total_seconds()), "distance": 1000.0,
            "start_lat": slat, "start_lon": slon, "end_lat": elat, "end_lon": elon,
        })
    folder = wd.bronze / "mds_trips" / "partner=scootco"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: pa.array([t[c] for t in trips], type_) for c, type_ in MDS_COLUMNS.items()})
    pq.write_table(table, folder / "planted.parquet")
    # the manifest that makes the batch current for fct_trips (landing writes one per batch)
    first = min(t["start_time"] for t in trips).replace(minute=0, second=0, microsecond=0)
    last = max(t["end_time"] for t in trips)
    manifest_dir = wd.manifests / "mds_trips" / "scootco"
    manifest_dir.mkdir(parents=True, exist_ok=True)
    (manifest_dir / "planted.json").write_text(json.dumps({
        "batch_id": "scootco:planted", "partner_id": "scootco", "feed": "mds_trips",
        "window_start": first.isoformat(), "window_end": last.isoformat(),
        "contract": "mds_trips", "contract_version": "2.0.0",
        "raw_path": "raw/scootco/mds_trips/planted/x.json", "raw_sha256": "0" * 64,
        "rows_received": n, "rows_accepted": n, "rows_rejected": 0, "outcome": "accepted",
        "error": None, "started_at": last.isoformat(), "finished_at": last.isoformat(),
    }))
    return trips


# ---------------------------------------------------------------------------- the simulator's feed, built

@pytest.fixture(scope="module")
def transit(tmp_path_factory, city_dir):
    """The simulator's GTFS landed by the real ingest, scooter trips planted, dbt built for the period."""
    from mobility.simulator.server import running_simulator

    wd = Workdir.resolve(tmp_path_factory.mktemp("transit"))
    shutil.copytree(city_dir.city, wd.city)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOBILITY_PSEUDONYM_KEY", "k")
        with running_simulator(wd, seed=5, scale=0.2, timeout_s=3) as url:
            mp.setenv("MOBILITY_PARTNER_BASE_URL", url)
            manifest = ingest_gtfs_day(wd, "metro", "gtfs_schedule", datetime(2026, 6, 1, tzinfo=timezone.utc))
            raw = httpx.get(f"{url}/metro/gtfs/feed.zip", timeout=30).content
        assert manifest["outcome"] == "accepted", manifest
        stops_frame = pd.read_csv(zipfile.ZipFile(io.BytesIO(raw)).open("stops.txt"), dtype={"stop_id": str})
        stops = {r.stop_id: (r.stop_lon, r.stop_lat) for r in stops_frame.itertuples()}
        trips = plant_trips(wd, stops)
        run_dbt(wd, args=("build",), vars={
            "transit_start_date": FIRST_DAY.isoformat(), "transit_end_date": LAST_DAY.isoformat(),
        })
    by_route = scheduled_departures(raw, FIRST_DAY, LAST_DAY, CITY_TZ)
    return {"wd": wd, "raw": raw, "stops": stops, "trips": trips, "by_route": by_route}


def test_departures_per_stop_and_hour_equal_the_timetable(transit) -> None:
    total, busiest = per_stop_hour(transit["by_route"])
    rows = _query(
        transit["wd"].warehouse,
        "select stop_id, local_date, local_hour, departures, max_route_direction_departures "
        "from int_transit_departures",
    )
    assert {(s, d, h): n for s, d, h, n, _ in rows} == dict(total)
    assert {(s, d, h): m for s, d, h, _, m in rows} == busiest
    # trips after midnight: Friday's service leaves in Saturday's first hour
    assert any(d == LAST_DAY and h == 0 for _, d, h in total)
    assert sum(total.values()) > 10_000


def test_frequent_stops_are_those_with_a_15_minute_route_direction(transit) -> None:
    _, busiest = per_stop_hour(transit["by_route"])
    expected = {key for key, n in busiest.items() if n >= FREQUENT}
    rows = _query(transit["wd"].warehouse, "select stop_id, local_date, local_hour from int_transit_frequent_stops")
    assert set(rows) == expected
    # the network has both: stops frequent at the weekday peak, and stops served but never frequent
    assert any(h == 8 and d == FIRST_DAY for _, d, h in expected)
    served = {s for s, _, _ in busiest}
    assert served - {s for s, _, _ in expected}


def test_service_mart_sums_the_stops_of_each_neighborhood(transit) -> None:
    wd = transit["wd"]
    polygons = neighborhoods_of(wd)
    home = {stop: containing(polygons, lon, lat) for stop, (lon, lat) in transit["stops"].items()}
    total, busiest = per_stop_hour(transit["by_route"])
    departures: Counter = Counter()
    frequent: Counter = Counter()
    for (stop, day, hour), n in total.items():
        if home[stop] is not None:
            departures[(home[stop], day, hour)] += n
            frequent[(home[stop], day, hour)] += busiest[(stop, day, hour)] >= FREQUENT
    rows = _query(wd.warehouse, "select neighborhood_id, local_date, local_hour, departures, frequent_stops, stops "
                                "from mart_transit_service")
    assert len(rows) == len(polygons) * 2 * 24  # every neighborhood, day and hour
    assert {(n, d, h): dep for n, d, h, dep, _, _ in rows if dep} == dict(departures)
    assert {(n, d, h): f for n, d, h, _, f, _ in rows if f} == {k: v for k, v in frequent.items() if v}
    stops_per = Counter(n for n in home.values() if n is not None)
    assert {(n, s) for n, _, _, _, _, s in rows if s} == set(stops_per.items())


def test_population_cells_hold_every_resident(transit) -> None:
    rows = _query(
        transit["wd"].warehouse,
        "select n.neighborhood_id, n.population, sum(c.population), count(*) from stg_city__neighborhoods n "
        "join int_population_cells c using (neighborhood_id) group by all",
    )
    assert len(rows) == len(neighborhoods_of(transit["wd"]))
    for _, population, cells, n_cells in rows:
        assert cells == pytest.approx(population, abs=0.01)
        assert n_cells > 10


def test_share_near_frequent_service_matches_buffers_drawn_with_shapely(transit) -> None:
    """The grid's share against an exact geometric answer: the part of each neighborhood's area
    within 400 m of a stop frequent in that hour (residents are uniform over the area). 100 m
    cells make the grid answer approximate at the edges of the 400 m discs."""
    wd = transit["wd"]
    polygons = neighborhoods_of(wd)
    lon0 = sum(p.centroid.x for p in polygons.values()) / len(polygons)
    lat0 = sum(p.centroid.y for p in polygons.values()) / len(polygons)
    kx, ky = 111195.0 * math.cos(math.radians(lat0)), 111195.0

    def metric(geom):
        return shapely.transform(geom, lambda xy: (xy - [lon0, lat0]) * [kx, ky])

    _, busiest = per_stop_hour(transit["by_route"])
    errors = []
    for day, hour in ((FIRST_DAY, 8), (LAST_DAY, 8), (FIRST_DAY, 2)):
        frequent = [transit["stops"][s] for (s, d, h), n in busiest.items() if (d, h) == (day, hour) and n >= FREQUENT]
        discs = shapely.union_all([metric(Point(lon, lat)).buffer(NEAR_M, quad_segs=32) for lon, lat in frequent])
        mart = dict(_query(
            wd.warehouse,
            f"select neighborhood_id, share_near_frequent_service from mart_transit_service "
            f"where local_date = date '{day}' and local_hour = {hour}",
        ))
        for nid, poly in polygons.items():
            area = metric(poly)
            exact = area.intersection(discs).area / area.area if frequent else 0.0
            errors.append(abs(mart[nid] - exact))
    assert max(errors) < 0.02, max(errors)  # measured: 0.009 at most, 0.001 on average
    assert sum(errors) / len(errors) < 0.003
    # and the figure is not trivially 0 or 1 everywhere at the peak
    peak = [s for (s,) in _query(wd.warehouse, "select share_near_frequent_service from mart_transit_service "
                                               f"where local_date = date '{FIRST_DAY}' and local_hour = 8")]
    assert 0 < sum(peak) / len(peak) < 1


def test_first_last_mile_counts_equal_planted_truth(transit) -> None:
    wd = transit["wd"]
    polygons = neighborhoods_of(wd)
    _, busiest = per_stop_hour(transit["by_route"])
    frequent: dict[tuple[date, int], list[tuple[float, float]]] = {}
    for (stop, day, hour), n in busiest.items():
        if n >= FREQUENT:
            frequent.setdefault((day, hour), []).append(transit["stops"][stop])

    def near(lon: float, lat: float, at: datetime) -> bool:
        local = at.astimezone(CITY_TZ)
        stops = frequent.get((local.date(), local.hour), [])
        return any(haversine_m(lon, lat, slon, slat) <= FLM_M for slon, slat in stops)

    expected: dict[tuple[int, date], list[int]] = {}
    for t in transit["trips"]:
        nid = containing(polygons, t["start_lon"], t["start_lat"])
        if nid is None:
            continue
        starts = near(t["start_lon"], t["start_lat"], t["start_time"])
        ends = near(t["end_lon"], t["end_lat"], t["end_time"])
        c = expected.setdefault((nid, t["start_time"].astimezone(CITY_TZ).date()), [0, 0, 0, 0])
        c[0] += 1
        c[1] += starts
        c[2] += ends
        c[3] += starts or ends
    rows = _query(wd.warehouse, "select neighborhood_id, trip_date, micromobility_trips, "
                                "trips_starting_near_frequent_stop, trips_ending_near_frequent_stop, "
                                "first_last_mile_trips, first_last_mile_share from mart_first_last_mile")
    assert len(rows) == len(polygons) * 2
    got = {(n, d): [a, b, c, e] for n, d, a, b, c, e, _ in rows if a}
    assert got == expected
    both = sum(v[3] for v in expected.values())
    assert 0 < both < sum(v[0] for v in expected.values())  # some trips are first/last mile, not all
    for n, d, a, _, _, e, share in rows:
        assert share == (pytest.approx(round(e / a, 4)) if a else None)


def test_equity_mart_compares_equity_zones_with_the_rest(transit) -> None:
    wd = transit["wd"]
    rows = _query(wd.warehouse, "select local_date, equity_zone, sum(population), sum(residents_near_frequent_service) "
                                "from mart_transit_service where local_hour = 8 group by all")
    shares = {(d, z): near / pop for d, z, pop, near in rows}
    equity = _query(wd.warehouse, "select local_date, local_hour, equity_zone_share_near_frequent_service, "
                                  "other_share_near_frequent_service, equity_ratio from mart_equity_transit_daily")
    assert {d for d, *_ in equity} == {FIRST_DAY, LAST_DAY}
    for day, hour, eq, other, ratio in equity:
        assert hour == 8
        assert eq == pytest.approx(shares[(day, True)], abs=1e-4)
        assert other == pytest.approx(shares[(day, False)], abs=1e-4)
        assert ratio == pytest.approx(eq / other, abs=1e-3)


# ---------------------------------------------------------------------------- publish gate and suppression

def test_publish_gate_passes_on_the_transit_marts(transit) -> None:
    result = run_publish_gate(transit["wd"], k=K, enforce=True)
    assert result.success, result.message()
    checked = {o.frame for o in result.outcomes}
    assert {"mart_transit_service", "mart_equity_transit_daily", "mart_first_last_mile",
            "mart_first_last_mile__published"} <= checked


def _frames(transit):
    frames, ids = read_frames(transit["wd"], K)
    return {name: df.copy() for name, df in frames.items()}, ids


def _fails_on(transit, tmp_path, frames, ids) -> set[tuple[str, str, str | None]]:
    with pytest.raises(GateFailed) as err:
        run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    return {(o.frame, o.expectation_type, o.column) for o in err.value.result.failed}


def test_publish_gate_fails_on_negative_departures(transit, tmp_path) -> None:
    frames, ids = _frames(transit)
    frames["mart_transit_service"].loc[0, "departures"] = -1
    assert ("mart_transit_service", "expect_column_values_to_be_between", "departures") in _fails_on(
        transit, tmp_path, frames, ids)


def test_publish_gate_fails_when_a_neighborhood_is_missing(transit, tmp_path) -> None:
    frames, ids = _frames(transit)
    for table in ("mart_transit_service", "mart_first_last_mile"):
        df = frames[table]
        frames[table] = df[df.neighborhood_id != ids[0]]
    failed = _fails_on(transit, tmp_path, frames, ids)
    for table in ("mart_transit_service", "mart_first_last_mile"):
        assert (table, "expect_table_row_count_to_equal", None) in failed
        assert (table, "expect_column_distinct_values_to_equal_set", "neighborhood_id") in failed


def test_publish_gate_fails_on_shares_out_of_range_and_infinite_ratios(transit, tmp_path) -> None:
    frames, ids = _frames(transit)
    frames["mart_transit_service"].loc[0, "share_near_frequent_service"] = 1.5
    flm = frames["mart_first_last_mile"]
    flm.loc[flm.index[0], "first_last_mile_share"] = float("nan")
    flm.loc[flm.index[0], "micromobility_trips"] = 12
    frames["mart_equity_transit_daily"].loc[0, "equity_ratio"] = float("inf")
    failed = _fails_on(transit, tmp_path, frames, ids)
    assert ("mart_transit_service", "expect_column_values_to_be_between", "share_near_frequent_service") in failed
    assert ("mart_first_last_mile", "expect_column_values_to_not_be_null", "first_last_mile_share") in failed
    assert ("mart_equity_transit_daily", "expect_column_values_to_be_between", "equity_ratio") in failed


def test_publish_gate_fails_when_a_withheld_count_would_be_published(transit, tmp_path) -> None:
    frames, ids = _frames(transit)
    published = frames["mart_first_last_mile__published"]
    assert "first_last_mile_trips" not in published.columns  # withheld: the share is the published figure
    frames["mart_first_last_mile__published"] = published.assign(first_last_mile_trips=3)
    assert ("mart_first_last_mile__published", "expect_table_columns_to_match_set", None) in _fails_on(
        transit, tmp_path, frames, ids)


def test_published_first_last_mile_hides_small_counts_and_their_share(transit, tmp_path) -> None:
    wd = Workdir.resolve(tmp_path / "wd")
    wd.root.mkdir()
    for sub in ("warehouse", "dbt", "city"):
        shutil.copytree(transit["wd"].root / sub, wd.root / sub)
    publish(wd, k=K)
    built = {(r[0], r[1]): r[2:] for r in _query(
        transit["wd"].warehouse,
        "select neighborhood_id, trip_date, micromobility_trips, first_last_mile_trips, first_last_mile_share "
        "from mart_first_last_mile")}
    columns = [r[0] for r in _query(wd.published_db, "select column_name from duckdb_columns() "
                                                     "where table_name = 'mart_first_last_mile'")]
    # the counts decide what is hidden but are never published: their sum over modes would give
    # back a mode cell hidden in the trip marts
    assert "first_last_mile_share" in columns
    assert not {"micromobility_trips", "first_last_mile_trips", "other_micromobility_trips",
                "trips_starting_near_frequent_stop", "trips_ending_near_frequent_stop"} & set(columns)
    published = _query(wd.published_db, "select neighborhood_id, trip_date, first_last_mile_share "
                                         "from mart_first_last_mile")
    assert len(published) == len(built)
    hidden = 0
    for nid, day, share in published:
        b_trips, b_flm, b_share = built[(nid, day)]
        small = any(0 < n < K for n in (b_trips, b_flm, b_trips - b_flm))
        hidden += small
        assert share == (None if small else b_share)
    assert hidden  # the planted trips leave some small cells to hide
    # the transit service marts carry no person counts: published as built
    assert _query(wd.published_db, "select count(*), sum(departures) from mart_transit_service") == _query(
        transit["wd"].warehouse, "select count(*), sum(departures) from mart_transit_service")


# ---------------------------------------------------------------------------- feed versions

def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def _land_feed(wd: Workdir, raw: bytes, day: date) -> dict[str, str]:
    partner = load_registry().partner("metro")
    window = Window(datetime.combine(day, time(), tzinfo=timezone.utc),
                    datetime.combine(day + timedelta(days=1), time(), tzinfo=timezone.utc))
    return {
        table.table: land_batch(wd, partner=partner, feed=partner.feed("gtfs_schedule"), contract=table,
                                window=window, raw=raw, source="test", ext="zip")["outcome"]
        for table in load_contract("gtfs_schedule@1.0.0").tables()
    }


def _feed(route: str) -> dict[str, str]:
    return {
        "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\nM,Metro,https://m.example,America/Chicago\n",
        "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\nS1,One,41.80,-87.60\nS2,Two,41.81,-87.60\n",
        "routes.txt": f"route_id,agency_id,route_short_name,route_type\n{route},M,{route},3\n",
        "trips.txt": f"route_id,service_id,trip_id,direction_id\n{route},D,{route}-1,0\n",
        "stop_times.txt": f"trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
                          f"{route}-1,08:00:00,08:00:00,S1,1\n{route}-1,08:05:00,08:05:00,S2,2\n",
        "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
                        "D,1,1,1,1,1,1,1,20260101,20261231\n",
    }


def test_staging_reads_the_latest_complete_feed_version(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "k")
    from fixtures_lake import write_neighborhoods

    wd = Workdir.resolve(tmp_path)
    write_neighborhoods(wd)
    assert set(_land_feed(wd, _zip(_feed("OLD")), date(2026, 6, 1)).values()) == {"accepted", "empty"}
    assert set(_land_feed(wd, _zip(_feed("NEW")), date(2026, 6, 3)).values()) == {"accepted", "empty"}
    # a later zip without stop_times.txt: that table is refused, so the version is incomplete
    broken = _feed("BROKEN")
    del broken["stop_times.txt"]
    outcomes = _land_feed(wd, _zip(broken), date(2026, 6, 5))
    assert outcomes["stop_times"] == "rejected" and outcomes["routes"] == "accepted"

    run_dbt(wd, args=("run", "--select", "stg_gtfs__routes", "stg_gtfs__stop_times"))
    assert _query(wd.warehouse, "select route_id, feed_window from stg_gtfs__routes") == [("NEW", "2026-06-03")]
    assert _query(wd.warehouse, "select trip_id, departure_s from stg_gtfs__stop_times order by stop_sequence") == [
        ("NEW-1", 8 * 3600), ("NEW-1", 8 * 3600 + 300)]


# ---------------------------------------------------------------------------- a real feed: Cairns

CAIRNS_TZ = ZoneInfo("Australia/Brisbane")
# Friday 6 June to Monday 9 June 2014: weekday, weekend, and a public holiday (Queen's Birthday)
# that calendar_dates.txt removes from the weekday service
CAIRNS_FIRST, CAIRNS_LAST = date(2014, 6, 6), date(2014, 6, 9)


def test_cairns_departures_per_stop_and_hour_equal_an_independent_count(shared_data, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "k")
    raw = (shared_data / "gtfs" / "gtfs_kit-data" / "cairns_gtfs.zip").read_bytes()
    wd = Workdir.resolve(tmp_path)
    wd.city.mkdir(parents=True)
    # two neighborhoods splitting the Cairns region east/west of 145.74 E
    halves = [(1, "West", 145.50, 145.74), (2, "East", 145.74, 145.90)]
    pq.write_table(pa.table({
        "neighborhood_id": pa.array([h[0] for h in halves], pa.int32()),
        "name": [h[1] for h in halves],
        "population": pa.array([50_000, 70_000], pa.int64()),
        "income": [50_000.0, 60_000.0],
        "income_quintile": pa.array([1, 5], pa.int8()),
        "equity_zone": [True, False],
        "area_km2": [100.0, 100.0],
        "geometry_wkt": [f"POLYGON(({a} -17.2, {b} -17.2, {b} -16.6, {a} -16.6, {a} -17.2))" for _, _, a, b in halves],
    }), wd.neighborhoods)
    wd.city_meta.write_text(json.dumps({"name": "Cairns", "timezone": "Australia/Brisbane"}))
    outcomes = _land_feed(wd, raw, date(2026, 6, 1))
    assert set(outcomes.values()) == {"accepted"}, outcomes

    run_dbt(wd, args=("build", "--select", "+int_transit_frequent_stops", "--indirect-selection", "cautious"), vars={
        "city_timezone": "Australia/Brisbane",
        "transit_start_date": CAIRNS_FIRST.isoformat(), "transit_end_date": CAIRNS_LAST.isoformat(),
    })
    expected, _ = per_stop_hour(scheduled_departures(raw, CAIRNS_FIRST, CAIRNS_LAST, CAIRNS_TZ))
    rows = _query(wd.warehouse, "select stop_id, local_date, local_hour, departures from int_transit_departures")
    got = {(s, d, h): n for s, d, h, n in rows}
    assert got == dict(expected)
    # the busiest stop at its busiest hour, and the holiday: no weekday timetable on Monday 9 June
    (stop, day, hour), n = max(expected.items(), key=lambda kv: kv[1])
    assert got[(stop, day, hour)] == n > 10
    friday = sum(v for (_, d, _), v in expected.items() if d == CAIRNS_FIRST)
    monday = sum(v for (_, d, _), v in expected.items() if d == CAIRNS_LAST)
    assert 0 < monday < friday
