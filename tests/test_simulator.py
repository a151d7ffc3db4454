"""The partner simulator: determinism, planted facts, and real HTTP semantics (MDS/GBFS/GTFS)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import shapely.wkt

from mobility.settings import REGISTRY_PATH, Workdir
from mobility.simulator.consortium import load_demo_partners
from mobility.simulator.drops import BIKESHARE_COLUMNS, RIDEHAIL_COLUMNS, drop_files
from mobility.simulator.server import SimClock, running_simulator
from mobility.simulator.world import World

GBFS_SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "gbfs" / "schemas"
if not GBFS_SCHEMAS.exists():
    GBFS_SCHEMAS = Path("/work/shared/data/gbfs/schemas")

SEED = 7
NOW = datetime(2026, 11, 18, 12, 3, tzinfo=timezone.utc)  # a Wednesday, 06:03 in Chicago
DAY_START = datetime(2026, 11, 17, 6, tzinfo=timezone.utc)  # local midnight, Tuesday 17th
from partner_secrets import SECRETS as TOKENS  # noqa: E402
MDS_ACCEPT = "application/vnd.mds+json;version=2.0"


def write_test_city(root: Path, n: int = 60, seed: int = 3) -> Path:
    """A small Voronoi city in the workdir layout of ARCHITECTURE.md (fallback if the city
    generator is unavailable)."""
    from shapely.geometry import MultiPoint, box

    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = -87.80, 41.75, -87.60, 41.95
    frame = box(minx, miny, maxx, maxy)
    pts = np.column_stack([rng.uniform(minx, maxx, n), rng.uniform(miny, maxy, n)])
    cells = [c.intersection(frame) for c in shapely.get_parts(shapely.voronoi_polygons(MultiPoint(pts), extend_to=frame))]
    income = np.round(rng.lognormal(np.log(60000), 0.5, n))
    quintile = (np.argsort(np.argsort(income)) * 5 // n + 1).astype(np.int8)
    area = np.array([c.area * 111.32 * np.cos(np.radians(41.85)) * 110.574 for c in cells])
    city = root / "city"
    city.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "neighborhood_id": pa.array(np.arange(1, n + 1), pa.int32()),
        "name": [f"Area {i}" for i in range(1, n + 1)],
        "population": pa.array(np.round(area * rng.uniform(2000, 9000, n)).astype(np.int64)),
        "income": pa.array(income), "income_quintile": pa.array(quintile, pa.int8()),
        "equity_zone": pa.array(quintile == 1), "area_km2": pa.array(area),
        "geometry_wkt": [c.wkt for c in cells],
    }), city / "neighborhoods.parquet")
    (city / "city.json").write_text(json.dumps({
        "name": "Testville", "source": "test", "seed": seed, "timezone": "America/Chicago",
        "income_measure": "median_household_income", "bbox": [minx, miny, maxx, maxy]}))
    stops = [{"stop_id": f"S{i}", "stop_name": f"Stop {i}", "stop_lat": 41.76 + i * 0.01,
              "stop_lon": -87.7 + (i % 3) * 0.01} for i in range(18)]
    routes = [{"route_id": "R1", "route_short_name": "1", "route_type": 3, "stop_ids": [s["stop_id"] for s in stops[::2]],
               "headway_peak_min": 8, "headway_offpeak_min": 15, "service_start": "05:00",
               "service_end": "23:50", "speed_kmh": 18}]
    (city / "transit.json").write_text(json.dumps({"agency": {"agency_id": "metro", "agency_name": "Metro",
        "agency_url": "https://metro.example", "agency_timezone": "America/Chicago"}, "stops": stops, "routes": routes}))
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    wd = Workdir.resolve(tmp_path_factory.mktemp("simcity"))
    try:
        from mobility.city.generate import generate_city
    except ImportError:
        write_test_city(wd.root)
    else:
        generate_city(wd, seed=SEED)
    return wd


@pytest.fixture(scope="module")
def world(workdir: Workdir) -> World:
    return World(workdir, SEED)


@pytest.fixture(scope="module")
def sim(workdir: Workdir, world: World):
    saved = {k: os.environ.get(k) for k in TOKENS}
    os.environ.update(TOKENS)
    clock = SimClock(NOW)
    try:
        with running_simulator(workdir, SEED, clock=clock, world=world, timeout_s=1.5) as url:
            yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture()
def client(sim) -> httpx.Client:
    sim.sim.faults.clear()
    headers = {"Authorization": f"Bearer {TOKENS['SCOOTCO_MDS_TOKEN']}", "Accept": MDS_ACCEPT}
    with httpx.Client(base_url=sim, headers=headers, timeout=10) as c:
        yield c
    sim.sim.faults.clear()


def hour_str(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H")


# ---------------------------------------------------------------------------- world
def test_same_seed_same_trips_in_a_fresh_world(workdir: Workdir, world: World) -> None:
    h = DAY_START + timedelta(hours=11)
    again = World(workdir, SEED)
    assert world.trips_ending_in_hour("scootco", h) == again.trips_ending_in_hour("scootco", h)
    assert world.events_in_hour("zoomride", h) == again.events_in_hour("zoomride", h)
    other = World(workdir, SEED + 1)
    assert world.trips_ending_in_hour("scootco", h) != other.trips_ending_in_hour("scootco", h)


def test_hourly_trips_add_up_to_the_truth_of_the_day(world: World) -> None:
    served = [t for i in range(24) for t in world.trips_ending_in_hour("scootco", DAY_START + timedelta(hours=i))]
    truth = world.trip_truth("scootco", DAY_START, DAY_START + timedelta(days=1))
    assert 3000 < truth.num_rows < 7000
    assert [t["trip_id"] for t in served] == truth["trip_id"].to_pylist()
    assert len(set(truth["trip_id"].to_pylist())) == truth.num_rows
    for t in served:
        assert 0 < t["duration"] < 3600 and t["end_time"] - t["start_time"] == t["duration"] * 1000
        assert t["distance"] > 0 and t["vehicle_type"] == "scooter" and t["propulsion_types"] == ["electric"]


def test_no_device_has_overlapping_trips(world: World) -> None:
    truth = world.trip_truth("scootco", DAY_START, DAY_START + timedelta(hours=8)).sort_by(
        [("device_id", "ascending"), ("start_time", "ascending")])
    dev, start, end = (truth[c].to_pylist() for c in ("device_id", "start_time", "end_time"))
    assert all(not (dev[i] == dev[i + 1] and start[i + 1] < end[i]) for i in range(len(dev) - 1))


def test_trip_points_lie_in_their_recorded_neighborhoods(world: World) -> None:
    city = world.city
    polygons = dict(zip(city.ids.tolist(), city.geoms))
    truth = world.trip_truth("zoomride", DAY_START + timedelta(hours=7), DAY_START + timedelta(hours=10))
    assert truth.num_rows > 200
    for side in ("start", "end"):
        geoms = [polygons[i] for i in truth[f"{side}_neighborhood_id"].to_pylist()]
        inside = shapely.contains_xy(np.array(geoms), truth[f"{side}_lon"].to_numpy(), truth[f"{side}_lat"].to_numpy())
        assert inside.all(), f"{(~inside).sum()} {side} points outside their neighborhood"


def test_the_planted_equity_gap_shows_in_trips_per_resident(world: World) -> None:
    c = world.city
    for op in ("scootco", "zoomride"):
        truth = world.trip_truth(op, DAY_START, DAY_START + timedelta(days=1))
        idx = np.searchsorted(c.ids, truth["start_neighborhood_id"].to_numpy())
        starts = np.bincount(idx, minlength=c.n)
        eq = c.equity_zone
        ratio = (starts[eq].sum() / c.population[eq].sum()) / (starts[~eq].sum() / c.population[~eq].sum())
        assert ratio < 0.75, (op, ratio)


def test_daily_and_weekly_rhythm(world: World) -> None:
    def ending(local_hour: int, day: datetime = DAY_START) -> int:
        return len(world.trips_ending_in_hour("scootco", day + timedelta(hours=local_hour)))

    peak = max(ending(h) for h in (8, 17, 18))
    assert peak > 3 * max(1, ending(3))
    # weekends: no morning commute peak (Saturday 2026-11-21 vs Tuesday 2026-11-17, 08:00 local)
    saturday = DAY_START + timedelta(days=4)
    assert ending(8, saturday) < 0.7 * ending(8)


def test_availability_shows_the_gap_too(world: World) -> None:
    c = world.city
    s = world.vehicle_states("scootco", NOW)
    parked = s["nbhd"][(s["state"] == "available") & (s["nbhd"] >= 0)].astype(int)
    per_nb = np.bincount(parked, minlength=c.n)
    eq = c.equity_zone
    ratio = (per_nb[eq].sum() / c.population[eq].sum()) / (per_nb[~eq].sum() / c.population[~eq].sum())
    assert ratio < 0.75


# ---------------------------------------------------------------------------- MDS over HTTP
def test_mds_hour_semantics(client: httpx.Client) -> None:
    old = NOW - timedelta(hours=3)
    r = client.get("/scootco/mds/trips", params={"end_time": hour_str(old)})
    assert r.status_code == 200
    assert r.headers["content-type"] == MDS_ACCEPT
    body = r.json()
    assert body["version"] == "2.0.0" and len(body["trips"]) > 0
    assert all(hour_str(datetime.fromtimestamp(t["end_time"] / 1000, timezone.utc)) == hour_str(old) for t in body["trips"])
    # the hour that ended 3 minutes ago is still processing; the current hour is not in the past
    assert client.get("/scootco/mds/trips", params={"end_time": hour_str(NOW - timedelta(hours=1))}).status_code == 202
    assert client.get("/scootco/mds/trips", params={"end_time": hour_str(NOW)}).status_code == 404
    assert client.get("/scootco/mds/trips", params={"end_time": hour_str(NOW + timedelta(days=1))}).status_code == 404
    assert client.get("/scootco/mds/trips", params={"end_time": "2020-01-01T00"}).status_code == 404  # before operations
    for bad in ({"end_time": "2026-11-18"}, {"end_time": "2026-13-01T00"}, {}):
        r = client.get("/scootco/mds/trips", params=bad)
        assert r.status_code == 400
        assert {"error", "error_description", "error_details"} <= r.json().keys()
    events = client.get("/scootco/mds/events/historical", params={"event_time": hour_str(old)}).json()["events"]
    assert {e["event_types"][0] for e in events} == {"trip_start", "trip_end"}
    assert all(e["vehicle_state"] == ("on_trip" if e["event_types"] == ["trip_start"] else "available") for e in events)


def test_empty_hour_is_200_with_an_empty_list(workdir: Workdir, monkeypatch: pytest.MonkeyPatch) -> None:
    from mobility.simulator.consortium import demo_behaviour

    tiny = World(workdir, SEED, demo_behaviour(scale=0.0005))
    for k, v in TOKENS.items():
        monkeypatch.setenv(k, v)
    with running_simulator(workdir, SEED, clock=SimClock(NOW), world=tiny) as url:
        hours = [hour_str(DAY_START + timedelta(hours=i)) for i in range(2, 6)]  # 02-05 local: quiet
        bodies = [httpx.get(f"{url}/scootco/mds/trips", params={"end_time": h},
                            headers={"Authorization": f"Bearer {TOKENS['SCOOTCO_MDS_TOKEN']}"}) for h in hours]
    assert all(b.status_code == 200 for b in bodies)
    assert any(b.json()["trips"] == [] for b in bodies)


def test_auth_and_version_negotiation(client: httpx.Client, sim) -> None:
    params = {"end_time": hour_str(NOW - timedelta(hours=3))}
    assert httpx.get(f"{sim}/scootco/mds/trips", params=params).status_code == 401
    assert client.get("/scootco/mds/trips", params=params, headers={"Authorization": "Bearer wrong"}).status_code == 401
    # another operator's token does not open this operator's feed
    scoot = {"Authorization": f"Bearer {TOKENS['SCOOTCO_MDS_TOKEN']}"}
    assert client.get("/zoomride/mds/trips", params=params, headers=scoot).status_code == 401
    # zoomride uses OAuth client credentials: its secret is not a bearer token, an issued token is
    secret = TOKENS["ZOOMRIDE_MDS_CLIENT_SECRET"]
    assert client.get("/zoomride/mds/trips", params=params,
                      headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    grant = {"grant_type": "client_credentials"}
    assert httpx.post(f"{sim}/zoomride/oauth/token", data=grant, auth=("demo-city", "wrong")).status_code == 401
    issued = httpx.post(f"{sim}/zoomride/oauth/token", data=grant, auth=("demo-city", secret))
    assert issued.status_code == 200 and issued.json()["token_type"] == "Bearer"
    zoom = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert client.get("/scootco/mds/trips", params=params, headers=zoom).status_code == 401
    assert client.get("/zoomride/mds/trips", params=params, headers=zoom).status_code == 200
    assert client.get("/scootco/mds/trips", params=params,
                      headers={"Accept": "application/vnd.mds+json;version=1.2"}).status_code == 406
    assert client.get("/scootco/mds/trips", params=params, headers={"Accept": "application/vnd.mds+json"}).status_code == 200
    assert client.get("/scootco/mds/trips", params=params, headers={"Accept": "*/*"}).status_code == 200
    assert client.get("/citybikes/mds/trips", params=params).status_code == 404  # no MDS feed


def test_same_hour_twice_gives_identical_bytes(client: httpx.Client) -> None:
    params = {"end_time": hour_str(NOW - timedelta(hours=6))}
    a, b = client.get("/scootco/mds/trips", params=params), client.get("/scootco/mds/trips", params=params)
    assert a.status_code == 200 and a.content == b.content


@pytest.mark.parametrize("path,key", [("vehicles", "vehicles"), ("vehicles/status", "vehicles_status")])
def test_vehicle_paging_covers_every_vehicle_once(client: httpx.Client, world: World, path: str, key: str) -> None:
    seen: list[str] = []
    url: str | None = f"/scootco/mds/{path}?page[size]=300"
    pages = 0
    while url:
        body = client.get(url).json()
        assert body["version"] == "2.0.0" and 0 <= body["ttl"] <= 300_000 and body["last_updated"] <= NOW.timestamp() * 1000
        seen += [v["device_id"] for v in body[key]]
        url = body["links"]["next"]
        pages += 1
    assert pages == -(-len(world.fleet("scootco")) // 300)
    assert sorted(seen) == sorted(world.fleet("scootco")) and len(seen) == len(set(seen))
    assert client.get(f"/scootco/mds/{path}", params={"page[size]": "0"}).status_code == 400


# ---------------------------------------------------------------------------- GBFS
GBFS_FILES = {
    "scootco": ("v3.0", ["gbfs", "system_information", "vehicle_types", "vehicle_status"]),
    "citybikes": ("v2.3", ["gbfs", "system_information", "station_information", "station_status", "free_bike_status"]),
}


@pytest.mark.parametrize("partner", sorted(GBFS_FILES))
def test_gbfs_validates_against_official_schemas(client: httpx.Client, partner: str) -> None:
    if not GBFS_SCHEMAS.exists():
        pytest.skip(f"official GBFS schemas not found at {GBFS_SCHEMAS} (shared/data is absent)")
    import jsonschema

    version, files = GBFS_FILES[partner]
    for name in files:
        r = client.get(f"/{partner}/gbfs/{name}.json")
        assert r.status_code == 200, name
        schema = json.loads((GBFS_SCHEMAS / version / f"{name}.json").read_text())
        jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(r.json())


def test_gbfs_hides_rented_vehicles_and_rotates_ids(client: httpx.Client, sim, world: World) -> None:
    vehicles = client.get("/scootco/gbfs/vehicle_status.json").json()["data"]["vehicles"]
    states = world.vehicle_states("scootco", NOW)
    assert len(vehicles) == int((states["state"] == "available").sum()) < len(world.fleet("scootco"))
    assert not set(v["vehicle_id"] for v in vehicles) & set(world.fleet("scootco"))
    sim.sim.clock.set(NOW + timedelta(minutes=31))
    try:
        later = client.get("/scootco/gbfs/vehicle_status.json").json()["data"]["vehicles"]
    finally:
        sim.sim.clock.set(NOW)
    assert not {v["vehicle_id"] for v in vehicles} & {v["vehicle_id"] for v in later}


# ---------------------------------------------------------------------------- GTFS
def _gtfs_secs(t: str) -> int:
    h, m, s = (int(x) for x in t.split(":"))
    return h * 3600 + m * 60 + s


def test_gtfs_feed(client: httpx.Client) -> None:
    r = client.get("/metro/gtfs/feed.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert client.get("/metro/gtfs/feed.zip").content == r.content
    assert client.get("/metro/gtfs/feed.zip", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert "last-modified" in r.headers
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(zf.namelist())
    assert {"agency.txt", "stops.txt", "routes.txt", "trips.txt", "stop_times.txt", "calendar.txt", "feed_info.txt"} <= names

    def rows(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.TextIOWrapper(zf.open(name), "utf-8")))

    stops = {s["stop_id"] for s in rows("stops.txt")}
    trips = {t["trip_id"] for t in rows("trips.txt")}
    by_trip: dict[str, list[dict[str, str]]] = {}
    for st in rows("stop_times.txt"):
        assert st["stop_id"] in stops and st["trip_id"] in trips
        by_trip.setdefault(st["trip_id"], []).append(st)
    assert set(by_trip) == trips
    for sts in by_trip.values():
        sts.sort(key=lambda s: int(s["stop_sequence"]))
        times = [x for s in sts for x in (_gtfs_secs(s["arrival_time"]), _gtfs_secs(s["departure_time"]))]
        assert all(a <= b for a, b in zip(times, times[1:]))
        assert all(_gtfs_secs(b["arrival_time"]) > _gtfs_secs(a["departure_time"]) for a, b in zip(sts, sts[1:]))


# ---------------------------------------------------------------------------- faults
def test_faults_behave_as_requested_then_clear(client: httpx.Client, sim) -> None:
    params = {"end_time": hour_str(NOW - timedelta(hours=4))}
    good = client.get("/scootco/mds/trips", params=params)

    def fault(**spec) -> None:
        assert client.post("/_sim/faults", json={"partner": "scootco", "path": "trips", **spec}).status_code == 201

    fault(mode="500", times=2)
    assert [client.get("/scootco/mds/trips", params=params).status_code for _ in range(3)] == [500, 500, 200]
    fault(mode="429", retry_after=7)
    r = client.get("/scootco/mds/trips", params=params)
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    fault(mode="202")
    assert client.get("/scootco/mds/trips", params=params).status_code == 202
    fault(mode="truncated")
    with pytest.raises(json.JSONDecodeError):
        json.loads(client.get("/scootco/mds/trips", params=params).content)
    trips = good.json()["trips"]
    fault(mode="extra_field")
    assert all("x_sim_unexpected" in t for t in client.get("/scootco/mds/trips", params=params).json()["trips"])
    fault(mode="missing_field")
    assert "duration" not in client.get("/scootco/mds/trips", params=params).json()["trips"][0]
    fault(mode="wrong_type", field="duration")
    assert isinstance(client.get("/scootco/mds/trips", params=params).json()["trips"][0]["duration"], str)
    fault(mode="duplicate")
    dup = client.get("/scootco/mds/trips", params=params).json()["trips"]
    assert len(dup) == len(trips) + 1 and dup[-1] == dup[0]
    fault(mode="foreign_provider")
    assert client.get("/scootco/mds/trips", params=params).json()["trips"][0]["provider_id"] != trips[0]["provider_id"]
    # faults on one partner/path leave the others alone
    fault(mode="500", times=None)
    assert client.get("/scootco/mds/events/historical", params={"event_time": params["end_time"]}).status_code == 200
    assert client.get("/scootco/mds/trips", params=params).status_code == 500
    assert client.delete("/_sim/faults").status_code == 200
    assert client.get("/scootco/mds/trips", params=params).content == good.content
    # a fault for one window leaves the other windows alone, and waits for its own
    other = {"end_time": hour_str(NOW - timedelta(hours=5))}
    fault(mode="500", query=params)
    assert client.get("/scootco/mds/trips", params=other).status_code == 200
    assert client.get("/scootco/mds/trips", params=params).status_code == 500
    assert client.get("/scootco/mds/trips", params=params).status_code == 200
    # Python API and the timeout mode (server sleeps 1.5 s here; the client gives up first)
    sim.sim.faults.add("timeout", partner="scootco", path="status")
    with pytest.raises(httpx.ReadTimeout):
        client.get("/scootco/mds/vehicles/status", timeout=0.5)
    assert client.post("/_sim/faults", json={"mode": "nonsense"}).status_code == 400
    assert client.get("/_sim/health").json()["status"] == "ok"


# ---------------------------------------------------------------------------- file drops
def test_drop_files(workdir: Workdir, world: World) -> None:
    day = date(2026, 11, 17)
    paths = drop_files(workdir, day, world=world)
    partners = load_demo_partners(REGISTRY_PATH)
    expected = {
        workdir.drops / f.drop_folder / f.filename_pattern.format(date=day.isoformat())
        for p in partners.values() for f in p.feeds if f.protocol == "file_drop"
    }
    assert set(paths) == expected and all(p.exists() for p in paths)
    assert not list(workdir.drops.rglob("*.tmp"))
    ids = set(world.city.ids.tolist())
    for path in paths:
        rows = list(csv.DictReader(path.open(encoding="utf-8")))
        assert len(rows) > 1000
        if path.parent.name == "citybikes":
            assert list(rows[0]) == BIKESHARE_COLUMNS
            assert {r["passholder_type"] for r in rows} <= {"Indego30", "Indego365", "Day Pass", "Walk-up"}
            assert all(r["start_time"].startswith("2026-11-17") for r in rows)
        else:
            assert list(rows[0]) == RIDEHAIL_COLUMNS
            assert len({r["trip_id"] for r in rows}) == len(rows)
            assert all(int(r["pickup_community_area"]) in ids and int(r["dropoff_community_area"]) in ids for r in rows)
            assert all(abs(float(r["trip_total"]) - float(r["fare"]) - float(r["tip"]) - float(r["additional_charges"])) < 0.011
                       for r in rows)
    # the same day again gives the same bytes
    first = {p: p.read_bytes() for p in paths}
    drop_files(workdir, day, world=World(workdir, SEED))
    assert all(p.read_bytes() == data for p, data in first.items())


# ---------------------------------------------------------------------------- serving at scale
def test_uuids_are_formatted_as_the_uuid_module_formats_version_4() -> None:
    import uuid

    from mobility.simulator.world import uuid4_bytes, uuids_from_bytes

    raw = np.random.default_rng(1).bytes(16 * 500)
    expected = [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, len(raw), 16)]
    assert uuids_from_bytes(raw) == expected
    assert uuids_from_bytes(uuid4_bytes(raw)) == expected  # the raw form the trip batches keep
    assert uuids_from_bytes(b"") == []


def test_streamed_hour_is_byte_for_byte_the_json_of_the_records(workdir: Workdir, world: World) -> None:
    from mobility.simulator.consortium import demo_behaviour
    from mobility.simulator.server import MDS_VERSION, _dumps, mds_hour_body

    tiny = World(workdir, SEED, demo_behaviour(scale=0.0005))
    for w in (world, tiny):  # busy hours and (in the tiny world) empty ones
        for op in ("scootco", "zoomride"):
            for i in range(0, 24, 5):
                h = DAY_START + timedelta(hours=i)
                trips, events = w.trips_ending_in_hour(op, h), w.events_in_hour(op, h)
                assert b"".join(mds_hour_body(w, op, h, "trips")) == _dumps({"version": MDS_VERSION, "trips": trips})
                assert b"".join(mds_hour_body(w, op, h, "events")) == _dumps({"version": MDS_VERSION, "events": events})
                # chunk boundaries fall between records, whatever the chunk size
                assert ",".join(w.trip_records_json(op, h, chunk_rows=7)) == _dumps(trips)[1:-1].decode()
                assert ",".join(w.event_records_json(op, h, chunk_rows=3)) == _dumps(events)[1:-1].decode()
    assert any(not tiny.trips_ending_in_hour("scootco", DAY_START + timedelta(hours=i)) for i in range(0, 24, 5))


def test_http_trips_and_events_are_the_records_as_json(client: httpx.Client, world: World) -> None:
    from mobility.simulator.server import MDS_VERSION, _dumps

    hour = NOW - timedelta(hours=7)
    r = client.get("/scootco/mds/trips", params={"end_time": hour_str(hour)})
    assert r.status_code == 200 and r.headers["content-type"] == MDS_ACCEPT
    assert r.content == _dumps({"version": MDS_VERSION, "trips": world.trips_ending_in_hour("scootco", hour)})
    r = client.get("/scootco/mds/events/historical", params={"event_time": hour_str(hour)})
    assert r.content == _dumps({"version": MDS_VERSION, "events": world.events_in_hour("scootco", hour)})


def test_generated_hours_kept_are_bounded(workdir: Workdir) -> None:
    from mobility.simulator.world import TRIP_HOURS_CACHED

    w = World(workdir, SEED)
    for i in range(3 * TRIP_HOURS_CACHED):
        list(w.trip_records_json("scootco", DAY_START + timedelta(hours=i)))
    assert 0 < w._trips_cached.cache_info().currsize <= TRIP_HOURS_CACHED


# Run in a child interpreter: without the guard the failure is a heap corruption that aborts the
# process, which would take the whole test session down with it.
_THREADED_SAMPLING = """
import sys, threading
import numpy as np
from mobility.simulator.city import load_city

shares = []  # per draw: the share of points located in the neighborhood they were drawn in
for it in range(int(sys.argv[2])):
    city = load_city(sys.argv[1])  # fresh prepared polygons: their indexes are built on first use
    start = threading.Barrier(8)
    def draw(seed):
        rng = np.random.default_rng(seed)
        start.wait()
        for _ in range(3):
            nbhd = rng.integers(0, city.n, 2000)
            lon, lat = city.sample_points(nbhd, rng)
            shares.append(float((city.locate(lon, lat) == nbhd).mean()))
    threads = [threading.Thread(target=draw, args=(it * 8 + i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
print(len(shares), min(shares))
"""


def test_city_sampling_is_safe_from_many_threads(tmp_path: Path, shared_data: Path) -> None:
    """The server builds pages on a thread pool, so several threads sample the same prepared
    polygons at once. Chicago's real boundaries made that abort the Chicago build now and then;
    unguarded, this loop aborted within its first 10 rounds in each of 8 runs."""
    from mobility.city.load import load_chicago

    wd = Workdir.resolve(tmp_path)
    load_chicago(wd, shared_data)
    run = subprocess.run([sys.executable, "-c", _THREADED_SAMPLING, str(wd.city), "12"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-3000:]}"
    draws, worst = run.stdout.split()
    assert int(draws) == 12 * 8 * 3 and float(worst) == 1.0  # every point in the area it was drawn in
