"""Trips of every mode against the simulator's ground truth.

MDS trips are pulled over HTTP from the local partner simulator, bike-share and ride-hail files
are dropped by the simulator and picked up by the file-drop ingest; the warehouse is built with
real dbt and published k-suppressed. Truth comes from the simulator's world: where each trip was
generated (its neighborhood, station or community area) and when, never from the warehouse.
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import duckdb
import pytest

from mobility.settings import REGISTRY_PATH, Workdir
from partner_secrets import SECRETS

SEED, SCALE, K = 5, 0.2, 10
DAY = date(2026, 11, 3)
MDS_START = datetime(2026, 11, 3, 14, tzinfo=timezone.utc)  # 08:00 local (CST)
MDS_END = MDS_START + timedelta(hours=6)
TZ = ZoneInfo("America/Chicago")
# ride-hail rows as real files have them: a centroid left blank (the area is still reported),
# and a trip from outside the city (no area, no centroid)
NO_CENTROID, FROM_OUTSIDE = range(0, 5), range(5, 8)


@pytest.fixture(scope="module")
def built(tmp_path_factory, city_dir):
    """Ingest six hours of MDS and one day of files, build, publish; yield (workdir, truth)."""
    from mobility.pipeline import ingest_file_drop_day, ingest_mds_hour, hours
    from mobility.simulator import drops
    from mobility.simulator.consortium import load_demo_partners
    from mobility.simulator.server import build_world, running_simulator
    from mobility.warehouse.build import run_dbt
    from mobility.warehouse.publish import publish

    wd = Workdir.resolve(tmp_path_factory.mktemp("trips"))
    shutil.copytree(city_dir.city, wd.city)
    world = build_world(wd, SEED, load_demo_partners(REGISTRY_PATH), scale=SCALE)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in SECRETS.items():
            mp.setenv(name, value)
        with running_simulator(wd, seed=SEED, scale=SCALE, world=world, timeout_s=3) as url:
            mp.setenv("MOBILITY_PARTNER_BASE_URL", url)
            for operator in ("scootco", "zoomride"):
                for hour in hours(MDS_START, MDS_END):
                    m = ingest_mds_hour(wd, operator, "mds_trips", hour)
                    assert m["outcome"] == "accepted", m
        rideco = drops.ridehail_rows(world, "rideco", DAY)
        for i in NO_CENTROID:
            rideco[i].update(pickup_centroid_latitude="", pickup_centroid_longitude="",
                             dropoff_centroid_latitude="", dropoff_centroid_longitude="")
        for i in FROM_OUTSIDE:
            rideco[i].update(pickup_community_area="", pickup_centroid_latitude="", pickup_centroid_longitude="")
        drops.drop_files(wd, DAY, world=world)
        drops.write_atomic(wd.drops / "rideco" / f"rideco-trips-{DAY}.csv", drops.to_csv(rideco, drops.RIDEHAIL_COLUMNS))
        files = {"citybikes": "bikeshare_trips", "rideco": "ridehail_trips", "hailnow": "ridehail_trips"}
        for partner, feed in files.items():
            m = ingest_file_drop_day(wd, partner, feed, datetime(2026, 11, 3, tzinfo=timezone.utc))
            assert m["outcome"] == "accepted" and not m["rows_rejected"], m
    run_dbt(wd, args=("build",))
    publish(wd, k=K)
    return wd, _truth(world, rideco)


def _local(text_or_dt) -> datetime:
    if isinstance(text_or_dt, str):
        return datetime.strptime(text_or_dt, "%Y-%m-%d %H:%M:%S")
    return text_or_dt.astimezone(TZ)


def _truth(world, rideco_rows) -> dict[str, Counter]:
    """started[(nbhd, date, hour, mode)], ended[...], od[(origin, destination, date, mode)]."""
    from mobility.simulator.drops import bikeshare_rows, ridehail_rows

    started, ended, od = Counter(), Counter(), Counter()

    def add(mode, s_nb, e_nb, s_at, e_at):
        if s_nb is not None:
            started[(s_nb, s_at.date(), s_at.hour, mode)] += 1
            od[(s_nb, e_nb, s_at.date(), mode)] += 1
        if e_nb is not None:
            ended[(e_nb, e_at.date(), e_at.hour, mode)] += 1

    for operator in ("scootco", "zoomride"):
        t = world.trip_truth(operator, MDS_START, MDS_END).to_pydict()
        for s_nb, e_nb, s_at, e_at in zip(t["start_neighborhood_id"], t["end_neighborhood_id"],
                                          t["start_time"], t["end_time"]):
            add("scooter", s_nb, e_nb, _local(s_at), _local(e_at))
    stations = world.stations("citybikes")
    station_nbhd = {int(s): int(world.city.ids[n]) for s, n in zip(stations["station_id"], stations["nbhd"])}
    for r in bikeshare_rows(world, "citybikes", DAY):
        add("bikeshare", station_nbhd[r["start_station"]], station_nbhd[r["end_station"]],
            _local(r["start_time"]), _local(r["end_time"]))
    for rows in (rideco_rows, ridehail_rows(world, "hailnow", DAY)):
        for r in rows:
            s_nb = r["pickup_community_area"] if r["pickup_community_area"] != "" else None
            add("ridehail", s_nb, r["dropoff_community_area"],
                _local(r["trip_start_timestamp"]), _local(r["trip_end_timestamp"]))
    return {"started": started, "ended": ended, "od": od}


def _rows(path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.sql(sql).fetchall()


def test_every_trip_of_every_mode_is_in_the_fact(built):
    wd, truth = built
    by_mode = dict(_rows(wd.warehouse, "select mode, count(*) from fct_trips group by mode"))
    modes = Counter()
    for (s, _, _, mode), n in truth["od"].items():
        modes[mode] += n
    # trips from outside the city are in the fact (not dropped), only not placed in a neighborhood
    modes["ridehail"] += len(FROM_OUTSIDE)
    assert by_mode == dict(modes)
    assert set(by_mode) == {"scooter", "bikeshare", "ridehail"} and min(by_mode.values()) > 50


def test_ride_hail_rows_without_coordinates_are_placed_by_area_or_kept_unplaced(built):
    wd, _ = built
    rows = _rows(wd.warehouse, """
        select start_location_source, start_lat is null, start_neighborhood_id is null, count(*)
        from fct_trips where partner_id = 'rideco' group by all order by all""")
    counts = {(src, no_lat, unplaced): n for src, no_lat, unplaced, n in rows}
    assert counts[("unknown", True, True)] == len(FROM_OUTSIDE)
    assert counts[("reported", True, False)] == len(NO_CENTROID)
    assert all(src in ("reported", "unknown") for src, *_ in counts)


def test_trips_per_neighborhood_mode_and_hour_equal_truth(built):
    wd, truth = built
    rows = _rows(wd.warehouse, """
        select neighborhood_id, trip_date, local_hour, mode, trips_started, trips_ended
        from mart_trips_per_neighborhood_mode_hour""")
    started = {(n, d, h, m): s for n, d, h, m, s, _ in rows if s}
    ended = {(n, d, h, m): e for n, d, h, m, _, e in rows if e}
    assert started == dict(truth["started"])
    assert ended == dict(truth["ended"])
    # zero-filled: every neighborhood, hour and mode for every day in range
    n_nbhd = duckdb.sql(f"select count(*) from read_parquet('{wd.neighborhoods}')").fetchone()[0]
    days = {d for _, d, *_ in rows}
    assert len(rows) == n_nbhd * len(days) * 24 * 3


def test_day_mart_is_mode_aware_and_equals_truth(built):
    wd, truth = built
    rows = _rows(wd.warehouse, "select neighborhood_id, trip_date, mode, trips_started from mart_trips_per_neighborhood_day")
    expected = Counter()
    for (n, d, _, m), c in truth["started"].items():
        expected[(n, d, m)] += c
    assert {(n, d, m): c for n, d, m, c in rows if c} == dict(expected)


def test_od_flows_equal_truth(built):
    wd, truth = built
    rows = _rows(wd.warehouse, """
        select origin_neighborhood_id, destination_neighborhood_id, trip_date, mode, trips from mart_od_flows""")
    assert {(o, d, day, m): n for o, d, day, m, n in rows} == dict(truth["od"])


def test_published_od_flows_are_truth_or_suppressed_with_complements(built):
    wd, truth = built
    od = _rows(wd.published_db, """
        select origin_neighborhood_id, destination_neighborhood_id, trip_date, mode, trips from mart_od_flows""")
    assert len(od) == len(truth["od"])
    hidden_by_origin: Counter = Counter()
    n_hidden_by_origin: Counter = Counter()
    visible_by_origin: Counter = Counter()
    for o, d, day, mode, published in od:
        actual = truth["od"][(o, d, day, mode)]
        if actual < K:
            assert published is None, f"flow {o}->{d} on {day} ({mode}) of {actual} trips was published"
        if published is None:
            hidden_by_origin[(o, day, mode)] += actual
            n_hidden_by_origin[(o, day, mode)] += 1
        else:
            assert published == actual
            visible_by_origin[(o, day, mode)] += published
    assert sum(p is not None for *_, p in od) > 0, "some flows should be large enough to publish"
    assert any(hidden_by_origin[key] >= K and n_hidden_by_origin[key] >= 2 and visible_by_origin[key]
               for key in hidden_by_origin), "expected complements beside published flows"
    # the origin totals (trips started per neighborhood and day) never give a hidden flow back
    totals = _rows(wd.published_db, "select neighborhood_id, trip_date, mode, trips_started from mart_trips_per_neighborhood_day")
    checked = 0
    for n, day, mode, total in totals:
        key = (n, day, mode)
        if total is None or not (hidden_by_origin[key] or visible_by_origin[key]):
            continue
        remainder = total - visible_by_origin[key]
        assert remainder == hidden_by_origin[key]
        assert remainder == 0 or (remainder >= K and n_hidden_by_origin[key] >= 2), key
        checked += 1
    assert checked > 10


def test_published_hours_never_give_back_a_hidden_day(built):
    wd, _ = built
    hidden_days = _rows(wd.published_db, """
        select d.neighborhood_id, d.trip_date, d.mode,
            count(*) filter (where h.trips_started is null) as hidden_hours,
            coalesce(sum(h.trips_started), 0) as visible
        from mart_trips_per_neighborhood_day d
        join mart_trips_per_neighborhood_mode_hour h using (neighborhood_id, trip_date, mode)
        where d.trips_started is null
        group by all""")
    assert hidden_days
    for n, day, mode, hidden_hours, visible in hidden_days:
        assert hidden_hours >= 1, f"day {day} in {n} ({mode}) is hidden but its hours add up to {visible}"


def test_publish_gate_passes_and_feed_health_counts_the_batches(built):
    from mobility.gates.publish_gate import run_publish_gate

    wd, _ = built
    result = run_publish_gate(wd, k=K, enforce=False)
    assert result.success, result.message()
    health = {
        (p, f): (b, acc, rows) for p, f, b, acc, rows in _rows(wd.published_db, """
            select partner_id, feed, sum(batches), sum(batches_accepted), sum(rows_accepted)
            from mart_feed_health group by all""")
    }
    assert health[("scootco", "mds_trips")][:2] == (6, 6)
    assert health[("rideco", "ridehail_trips")][:2] == (1, 1)
    fact = dict(_rows(wd.warehouse, "select partner_id, count(*) from fct_trips group by all"))
    assert health[("hailnow", "ridehail_trips")][2] == fact["hailnow"]
