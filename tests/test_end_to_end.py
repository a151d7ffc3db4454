"""The walking skeleton end to end, checked against the simulator's own trip list.

The demo runs on a small city for two simulated days; the marts must equal ground truth computed
independently from the simulator's trips (which neighborhood each trip was generated in), and the
planted equity gap must show. The same day run through the real Airflow DAGs must publish the
same numbers.
"""

import json
import os
import stat
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import duckdb
import pytest

from mobility.settings import PROJECT_ROOT, REGISTRY_PATH, Workdir

pytestmark = pytest.mark.slow

SEED, NEIGHBORHOODS, SCALE = 3, 60, 0.3
START = datetime(2026, 11, 2, tzinfo=timezone.utc)
END = START + timedelta(days=2)
TZ = ZoneInfo("America/Chicago")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mobility.demo import run_demo

    wd = Workdir.resolve(tmp_path_factory.mktemp("demo"))
    os.environ.update(wd.env())
    result = run_demo(wd, start=START, end=END, seed=SEED, n_neighborhoods=NEIGHBORHOODS, scale=SCALE, progress=False)
    return wd, result


@pytest.fixture(scope="module")
def truth(demo):
    """Trips per (start neighborhood, local start date), straight from the simulator's world."""
    from mobility.simulator.consortium import load_demo_partners
    from mobility.simulator.server import build_world

    wd, _ = demo
    world = build_world(wd, SEED, load_demo_partners(REGISTRY_PATH), scale=SCALE)
    counts: Counter = Counter()
    for operator in ("scootco", "zoomride"):
        t = world.trip_truth(operator, START, END)
        for nbhd, start in zip(t.column("start_neighborhood_id").to_pylist(), t.column("start_time").to_pylist()):
            counts[(nbhd, start.astimezone(TZ).date())] += 1
    return counts


def test_demo_runs_clean(demo):
    wd, result = demo
    assert result["ok"], result
    assert not result["ingest"]["failed"]
    ingest = result["ingest"]["feeds"]["mds_trips"]
    assert ingest["partners"] == ["scootco", "zoomride"]
    assert ingest["batches"] == 2 * 48 and not ingest["failed"]
    assert ingest["rows_rejected"] == 0 and ingest["rows_accepted"] > 1000
    gtfs = result["ingest"]["feeds"]["gtfs_schedule"]  # daily: pulled once
    assert gtfs["partners"] == ["metro"] and gtfs["batches"] == 1 and gtfs["outcomes"] == {"accepted": 1}
    assert result["build"]["gate"]["success"] is True
    assert not os.stat(wd.published_db).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert result["example_answer"]["rows"], "the example query returned nothing"


def test_mart_equals_ground_truth_exactly(demo, truth):
    wd, _ = demo
    with duckdb.connect(str(wd.warehouse), read_only=True) as con:
        rows = con.sql(
            "select neighborhood_id, trip_date, trips_started from mart_trips_per_neighborhood_day where mode = 'scooter'"
        ).fetchall()
        n_neighborhoods = con.sql("select count(distinct neighborhood_id) from mart_trips_per_neighborhood_day").fetchone()[0]
    mart = {(n, d): c for n, d, c in rows}
    assert n_neighborhoods == NEIGHBORHOODS  # every neighborhood present, zero or not
    assert {k: v for k, v in mart.items() if v} == dict(truth)
    assert sum(truth.values()) > 1000


def test_published_counts_are_truth_or_suppressed(demo, truth):
    """Published cells are the truth or hidden; small ones always hidden; no total gives one back."""
    wd, _ = demo
    k = 10
    with duckdb.connect(str(wd.published_db), read_only=True) as con:
        cells = con.sql(
            "select neighborhood_id, trip_date, equity_zone, trips_started from mart_trips_per_neighborhood_day "
            "where mode = 'scooter'"
        ).fetchall()
        totals = con.sql(
            "select trip_date, equity_zone_trips_started, other_trips_started from mart_equity_trips_daily "
            "where mode = 'scooter'"
        ).fetchall()
    hidden_by_group: Counter = Counter()
    visible_by_group: Counter = Counter()
    for n, d, zone, c in cells:
        expected = truth.get((n, d), 0)
        if 0 < expected < k:
            assert c is None, f"count {expected} for neighborhood {n} on {d} was published"
        if c is None:
            hidden_by_group[(d, zone)] += expected
        else:
            assert c == expected
            visible_by_group[(d, zone)] += c
    assert sum(c is not None for *_, c in cells) > len(cells) / 2, "most cells should be publishable"
    for d, equity_total, other_total in totals:
        for zone, total in ((True, equity_total), (False, other_total)):
            if total is not None:
                remainder = total - visible_by_group[(d, zone)]
                assert remainder == hidden_by_group[(d, zone)]
                assert remainder == 0 or remainder >= k, f"{d} zone={zone}: a total reveals {remainder}"


def test_planted_equity_gap_is_visible(demo, truth):
    """Operators deploy fewer vehicles in equity zones: trips per resident there are far lower."""
    wd, _ = demo
    with duckdb.connect(str(wd.warehouse), read_only=True) as con:
        ratios = con.sql(
            "select trip_date, equity_ratio from mart_equity_trips_daily where mode = 'scooter' order by trip_date"
        ).fetchall()
    # full local days only (the window starts and ends mid-day in Chicago time)
    full = [r for d, r in ratios if START.astimezone(TZ).date() < d < END.astimezone(TZ).date()]
    assert full and all(r < 0.75 for r in full), ratios

    # the same gap, independently from the simulator's trips and the city's population
    import pyarrow.parquet as pq

    city = pq.read_table(wd.neighborhoods).to_pylist()
    pop = {c["neighborhood_id"]: (c["population"], c["equity_zone"]) for c in city}
    trips = {True: 0, False: 0}
    for (nbhd, _day), n in truth.items():
        trips[pop[nbhd][1]] += n
    residents = {z: sum(p for p, e in pop.values() if e == z) for z in (True, False)}
    assert (trips[True] / residents[True]) / (trips[False] / residents[False]) < 0.75


def test_airflow_dags_publish_the_same_numbers_for_one_day(tmp_path):
    """One simulated day through the real DAGs (dag.test, SQLite metadata) vs the demo's numbers."""
    from mobility.airflow_runtime import airflow_env
    from mobility.city.generate import generate_city
    from mobility.demo import ensure_demo_secrets, simulator_process

    wd = Workdir.resolve(tmp_path / "airflow-run")
    generate_city(wd, seed=SEED, n_neighborhoods=NEIGHBORHOODS)
    ensure_demo_secrets()
    day_start, day_end = START, START + timedelta(days=1)
    env = {**os.environ, **airflow_env(wd, "local")}
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    with simulator_process(wd, seed=SEED, scale=SCALE) as base_url:
        env["MOBILITY_PARTNER_BASE_URL"] = base_url
        proc = subprocess.run(
            [sys.executable, "-m", "mobility.airflow_dagtest", day_start.isoformat(), day_end.isoformat(), "mds_trips"],
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = json.loads(proc.stdout.strip().splitlines()[-1])
    assert states["ingest__scootco__mds_trips"] == {"success": 24}
    assert states["ingest__zoomride__mds_trips"] == {"success": 24}
    assert states["warehouse"] == {"success": 1}

    # `mobility demo` for the same day, in its own workdir, must publish identical tables.
    from mobility.demo import run_demo

    demo_day = Workdir.resolve(tmp_path / "demo-day")
    assert run_demo(demo_day, start=day_start, end=day_end, seed=SEED, n_neighborhoods=NEIGHBORHOODS,
                    scale=SCALE, progress=False)["ok"]
    # the DAG run lands MDS only; the demo also lands the daily files: compare the scooter rows
    for table in ("mart_trips_per_neighborhood_day", "mart_equity_trips_daily"):
        query = f"select * from {table} where mode = 'scooter' order by all"
        with duckdb.connect(str(wd.published_db), read_only=True) as con:
            via_airflow = con.sql(query).fetchall()
        with duckdb.connect(str(demo_day.published_db), read_only=True) as con:
            via_demo = con.sql(query).fetchall()
        assert via_airflow and via_airflow == via_demo, table


def test_status_and_query_commands_on_the_demo(demo):
    from typer.testing import CliRunner

    from mobility.cli import app

    wd, result = demo
    runner = CliRunner()
    status = runner.invoke(app, ["status", "--workdir", str(wd.root)], env={"COLUMNS": "200"})
    assert status.exit_code == 0, status.output
    assert "scootco/mds_trips" in status.output and "zoomride/mds_trips" in status.output
    assert "Publish gate: PASSED" in status.output
    query = runner.invoke(app, ["query", "--workdir", str(wd.root), "--format", "csv",
                                "select count(distinct neighborhood_id) as n from mart_trips_per_neighborhood_day"])
    assert query.exit_code == 0 and query.output.splitlines() == ["n", str(NEIGHBORHOODS)]
