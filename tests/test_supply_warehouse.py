"""Supply, coverage, bike-share docks and compliance marts against the simulator's ground truth.

One lake of status snapshots (MDS vehicle status, GBFS 3.0 and 2.3) sampled from the partner
simulator with its clock frozen at known times, MDS trips and events, and a bike-share trip
file; one real dbt build; then every figure is checked against what the simulator knows.
"""

from __future__ import annotations

import os
from collections import Counter
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pytest

from mobility.registry import load_registry
from supply_lake import SNAPSHOT_TIMES, build_supply_lake, restore, set_tokens

TZ = ZoneInfo("America/Chicago")
SCOOTER_OPERATORS = ("scootco", "zoomride")


@pytest.fixture(scope="module")
def lake(tmp_path_factory, city_dir):
    from mobility.simulator.server import running_simulator
    from mobility.warehouse.build import consortium_vars, run_dbt

    old = set_tokens()
    try:
        with running_simulator(city_dir, seed=5, scale=0.2, timeout_s=3) as url:
            os.environ["MOBILITY_PARTNER_BASE_URL"] = url
            wd = build_supply_lake(tmp_path_factory.mktemp("supply"), city_dir, url)
            world = url.sim.world
        run_dbt(wd, args=("build",), vars={"city_timezone": "America/Chicago", **consortium_vars()})
    finally:
        os.environ.pop("MOBILITY_PARTNER_BASE_URL", None)
        restore(old)
    return wd, world


def query(wd, sql, params=None):
    con = duckdb.connect(str(wd.warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def local(at):
    t = at.astimezone(TZ)
    return t.date(), t.hour


def available_truth(world, at) -> Counter:
    """Available scooters per neighborhood id at `at`, straight from the simulated world."""
    counts: Counter = Counter()
    for op in SCOOTER_OPERATORS:
        s = world.vehicle_states(op, at)
        for nb in s["nbhd"][(s["state"] == "available") & (s["nbhd"] >= 0)]:
            counts[int(world.city.ids[nb])] += 1
    return counts


def test_scooter_availability_is_exactly_what_the_operators_showed(lake):
    wd, world = lake
    ids = [int(i) for i in world.city.ids]
    for at in SNAPSHOT_TIMES:  # one snapshot per hour: the hour's average is that snapshot
        day, hour = local(at)
        got = dict(query(wd, "select neighborhood_id, avg_available_vehicles from mart_vehicle_availability "
                             "where local_date = ? and local_hour = ? and mode = 'scooter'", [day, hour]))
        truth = available_truth(world, at)
        assert sorted(got) == sorted(ids)  # every neighborhood, zero-filled
        assert got == {i: float(truth.get(i, 0)) for i in ids}, at


def test_docked_bike_availability_is_exactly_what_the_stations_showed(lake):
    wd, world = lake
    st = world.stations("citybikes")
    for at in SNAPSHOT_TIMES:
        day, hour = local(at)
        bikes = world.station_status("citybikes", at)["bikes"]
        truth: Counter = Counter()
        for nb, n in zip(st["nbhd"], bikes):
            truth[int(world.city.ids[nb])] += int(n)
        got = dict(query(wd, "select neighborhood_id, avg_available_vehicles from mart_vehicle_availability "
                             "where local_date = ? and local_hour = ? and mode = 'bikeshare'", [day, hour]))
        assert got == {int(i): float(truth.get(int(i), 0)) for i in world.city.ids}


def haversine_m(lat1, lon1, lat2, lon2):
    r = 6_371_008.8
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * np.arcsin(np.sqrt(a))


def test_coverage_agrees_with_great_circle_distances_to_the_true_vehicles(lake):
    """The mart measures on a local plane; great-circle distances from each resident cell to every
    available scooter the simulator placed must give the same covered residents (up to the cells
    lying within 2 m of the 400 m circle, which the plane and the sphere may place either side)."""
    wd, world = lake
    at = SNAPSHOT_TIMES[1]
    day, hour = local(at)
    cells = np.array(query(wd, "select neighborhood_id, lat, lon, residents from int_resident_cells"))
    lat, lon = cells[:, 1], cells[:, 2]
    vlat, vlon = [], []
    for op in SCOOTER_OPERATORS:
        s = world.vehicle_states(op, at)
        ok = s["state"] == "available"
        vlat += list(s["lat"][ok].astype(float))
        vlon += list(s["lon"][ok].astype(float))
    vlat, vlon = np.array(vlat), np.array(vlon)
    nearest = np.full(len(cells), np.inf)
    for i in range(0, len(cells), 2000):
        d = haversine_m(lat[i:i + 2000, None], lon[i:i + 2000, None], vlat[None, :], vlon[None, :])
        nearest[i:i + 2000] = d.min(axis=1)
    got = dict(query(wd, "select neighborhood_id, residents_covered from mart_vehicle_coverage "
                         "where local_date = ? and local_hour = ? and mode = 'scooter'", [day, hour]))
    per_cell = cells[:, 3]
    for nid in np.unique(cells[:, 0]):
        mine = cells[:, 0] == nid
        sure = per_cell[mine & (nearest <= 398)].sum()
        maybe = per_cell[mine & (nearest <= 402)].sum()
        assert sure - 0.01 <= got[int(nid)] <= maybe + 0.01, int(nid)
    # and the model spreads every resident: the cells hold the whole population
    (total,), = query(wd, "select sum(residents) from int_resident_cells")
    assert total == pytest.approx(float(world.city.population.sum()))


def test_planted_equity_gap_shows_in_availability_and_coverage(lake):
    wd, _ = lake
    per_1000 = dict(query(wd, """
        select equity_zone, sum(avg_available_vehicles) * 1000 / sum(population)
        from mart_vehicle_availability where mode = 'scooter' group by equity_zone"""))
    covered = dict(query(wd, """
        select equity_zone, sum(residents_covered) / sum(population)
        from mart_vehicle_coverage where mode = 'any' group by equity_zone"""))
    # operators deploy about half as many vehicles per resident in equity zones (world.py)
    assert per_1000[True] < 0.75 * per_1000[False]
    assert covered[True] < covered[False]



def test_equity_scorecard_shows_the_planted_gap_against_pooled_values(lake):
    wd, _ = lake
    rows = query(wd, """select metric, local_date, grouping, group_name, value, ratio_to_reference
                        from mart_equity_scorecard""")
    card = {(m, d, g, n): (v, r) for m, d, g, n, v, r in rows}
    days = {d for _, d, _, _ in card}
    assert days and {n for _, _, g, n in card if g == "income_quintile"} == {"1", "2", "3", "4", "5"}
    # the scorecard's equity-zone coverage equals the pooled coverage recomputed from the mart
    for day in days:
        pooled = dict(query(wd, f"""
            select equity_zone, sum(covered) / sum(population) from (
                select neighborhood_id, equity_zone, any_value(population) as population,
                       avg(residents_covered) as covered
                from mart_vehicle_coverage where mode = 'any' and local_date = '{day}' group by all)
            group by all"""))
        value, ratio = card[("share_residents_near_available_vehicle", day, "equity_zone", "equity zones")]
        rest, _ = card[("share_residents_near_available_vehicle", day, "equity_zone", "rest of city")]
        assert value == pytest.approx(pooled[True]) and rest == pytest.approx(pooled[False])
        assert ratio == pytest.approx(value / rest) and ratio < 1  # the planted gap
        vehicles = card[("vehicles_available_per_1000_residents", day, "equity_zone", "equity zones")]
        assert vehicles[1] < 0.75  # about half as many vehicles per resident in equity zones


def deployment_truth(world, op, at) -> tuple[int, int, int]:
    """(deployed, deployed in a neighborhood, deployed in an equity zone) at `at`."""
    s = world.vehicle_states(op, at)
    parked = s["state"] == "available"  # the simulator's vehicles are either available or on a trip
    in_city = parked & (s["nbhd"] >= 0)
    equity = in_city & world.city.equity_zone[np.maximum(s["nbhd"], 0)]
    return int(parked.sum()), int(in_city.sum()), int(equity.sum())


def test_compliance_finds_operators_below_the_required_equity_share(lake):
    wd, world = lake
    rules = load_registry().consortium.compliance
    rows = query(wd, """select partner_id, local_date, check_hour, has_snapshot, deployed_vehicles, deployed_in_city,
        deployed_in_equity_zones, equity_zone_share, required_equity_zone_share, meets_equity_zone_share,
        fleet_cap, fleet_cap_exceeded, completeness_share from mart_partner_compliance order by all""")
    checked = {local(at)[1]: at for at in SNAPSHOT_TIMES if local(at)[1] in rules.local_hours}
    assert sorted(checked) == rules.local_hours  # the lake samples every check hour
    assert len(rows) == len(SCOOTER_OPERATORS) * len(rules.local_hours)
    for (partner, _, hour, has_snapshot, deployed, in_city, equity, share, required, meets, cap, exceeded,
         completeness) in rows:
        assert has_snapshot
        assert (deployed, in_city, equity) == deployment_truth(world, partner, checked[hour])
        assert share == pytest.approx(equity / in_city, abs=1e-4)
        assert required == rules.equity_zone_required_share == 0.5
        assert share < required and meets is False  # the planted gap: every operator falls short
        assert cap == rules.fleet_caps[partner] and exceeded is (deployed > cap)
        assert completeness == 1.0  # both hours of trips and events landed


def test_bikeshare_docks_follow_the_station_list(lake):
    wd, world = lake
    st = world.stations("citybikes")
    docks: Counter = Counter()
    for nb, cap in zip(st["nbhd"], st["capacity"]):
        docks[int(world.city.ids[nb])] += int(cap)
    got = dict(query(wd, "select neighborhood_id, docks from mart_bikeshare_docks"))
    assert got == {int(i): docks.get(int(i), 0) for i in world.city.ids}
    quintiles = dict(query(wd, "select income_quintile, docks_per_1000_residents from mart_bikeshare_docks_by_quintile"))
    assert quintiles[1] < quintiles[5]  # stations are sparser in the poorest fifth (planted)


def test_bikeshare_trips_per_dock_and_pass_mix(lake):
    wd, world = lake
    columns = {r[0] for r in query(wd, "select column_name from duckdb_columns() where table_name = 'fct_trips'")}
    if not {"start_station_id", "pass_type"} <= columns:
        pytest.skip("fct_trips does not carry bike-share trips (start_station_id, pass_type) in this build")
    from supply_lake import DAY
    from mobility.simulator.drops import bikeshare_rows

    rows = bikeshare_rows(world, "citybikes", DAY.date())
    st = world.stations("citybikes")
    where = {int(s): int(world.city.ids[nb]) for s, nb in zip(st["station_id"], st["nbhd"])}
    trips = Counter(where[r["start_station"]] for r in rows if r["start_time"].startswith(str(DAY.date())))
    got = dict(query(wd, "select neighborhood_id, trips_started from mart_bikeshare_docks where local_date = ?",
                     [DAY.date()]))
    assert {k: v for k, v in got.items() if v} == dict(trips)
    passes = Counter(r["passholder_type"] for r in rows)
    mix = Counter()
    for pass_type, n in query(wd, "select pass_type, trips_started from mart_bikeshare_pass_mix where local_date = ?",
                              [DAY.date()]):
        mix[pass_type] += n
    assert mix == passes


def test_out_of_order_flags_are_clear_on_the_simulators_consistent_events(lake):
    wd, _ = lake
    (n, judged, broken), = query(wd, """select count(*), count(follows_last_known_state),
        count(*) filter (where not follows_last_known_state) from int_mds_events_sequenced""")
    assert n > 0 and judged > 0 and broken == 0


# ---------------------------------------------------------------- publish gate
def test_publish_gate_passes_the_supply_marts_and_fails_planted_faults(lake):
    from mobility.gates.publish_gate import read_frames, run_publish_gate

    wd, _ = lake
    result = run_publish_gate(wd, enforce=False)
    failed = [o for o in result.outcomes if not o.success]
    assert result.success, failed

    frames, ids = read_frames(wd, 10)
    missing = frames["mart_vehicle_availability"].iloc[1:]  # one neighborhood-hour dropped
    over = frames["mart_vehicle_coverage"].copy()
    over.loc[over.index[0], "share_residents_covered"] = 1.5  # a share above 1
    negative = frames["mart_partner_compliance"].copy()
    negative.loc[negative.index[0], "deployed_vehicles"] = -1
    bad = {**frames, "mart_vehicle_availability": missing, "mart_vehicle_coverage": over,
           "mart_partner_compliance": negative}
    result = run_publish_gate(wd, enforce=False, frames=bad, neighborhood_ids=ids)
    failed = {(o.frame, o.expectation_type, o.column) for o in result.outcomes if not o.success}
    assert ("mart_vehicle_availability", "expect_table_row_count_to_equal", None) in failed
    assert ("mart_vehicle_coverage", "expect_column_values_to_be_between", "share_residents_covered") in failed
    assert ("mart_partner_compliance", "expect_column_values_to_be_between", "deployed_vehicles") in failed
    assert not result.success
