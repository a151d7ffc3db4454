"""fct_trips is incremental: a build after a new day loads that day only; a corrected batch
replaces its window, a late one is added, a window corrected to an empty file empties; and a
full refresh gives the same table as the incremental sequence.

Partner files come from the simulator's world and land through the real file-drop ingest (contract
check, landing gate, bronze, manifest); the warehouse is built with real dbt.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from mobility.settings import REGISTRY_PATH, Workdir
from mobility.warehouse.build import run_dbt

DAY1, DAY2 = date(2026, 11, 3), date(2026, 11, 4)
SEED, SCALE = 5, 0.05
FCT = ("build", "--select", "+fct_trips", "--indirect-selection", "cautious")


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


@pytest.fixture()
def lake(tmp_path, city_dir, monkeypatch):
    """A workdir with the city, and the world whose partner files we drop into it."""
    from mobility.simulator.consortium import load_demo_partners
    from mobility.simulator.server import build_world

    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "k")
    shutil.copytree(city_dir.city, tmp_path / "city")
    wd = Workdir.resolve(tmp_path)
    return wd, build_world(wd, SEED, load_demo_partners(REGISTRY_PATH), scale=SCALE)


def _land(wd: Workdir, world, day: date, partners: dict[str, str], rows: dict[str, list] | None = None) -> dict:
    """Drop each partner's file for `day` (or the given rows) and land it; partner -> manifest."""
    from mobility.pipeline import ingest_file_drop_day
    from mobility.simulator import drops

    out = {}
    for partner, feed in partners.items():
        if rows and partner in rows:
            columns = drops.RIDEHAIL_COLUMNS if feed == "ridehail_trips" else drops.BIKESHARE_COLUMNS
            drops.write_atomic(wd.drops / partner / f"{partner}-trips-{day}.csv", drops.to_csv(rows[partner], columns))
        else:
            generate = drops.ridehail_rows if feed == "ridehail_trips" else drops.bikeshare_rows
            data = drops.to_csv(generate(world, partner, day),
                                drops.RIDEHAIL_COLUMNS if feed == "ridehail_trips" else drops.BIKESHARE_COLUMNS)
            drops.write_atomic(wd.drops / partner / f"{partner}-trips-{day}.csv", data)
        out[partner] = ingest_file_drop_day(wd, partner, feed, _start(day))
        assert out[partner]["outcome"] in ("accepted", "empty"), out[partner]
    return out


def _fact(wd: Workdir) -> dict[str, tuple]:
    """trip_key -> (every column but loaded_at), and separately loaded_at per trip."""
    with duckdb.connect(str(wd.warehouse), read_only=True) as con:
        cur = con.execute("select * exclude (loaded_at), loaded_at from fct_trips order by trip_key")
        names = [d[0] for d in cur.description]
        return {r[0]: dict(zip(names, r)) for r in cur.fetchall()}


def _count(fact: dict, **where) -> int:
    return sum(all(row[k] == v for k, v in where.items()) for row in fact.values())


def _fct_result(result) -> dict:
    node = next(n for n in result.nodes if n.unique_id == "model.mobility_commons.fct_trips")
    assert node.status == "success", node
    return node


def _compiled_fct(wd: Workdir) -> str:
    return next((wd.dbt_target / "compiled").rglob("fct_trips.sql")).read_text()


def test_incremental_loads_new_batches_only_and_replaces_corrected_windows(lake):
    from mobility.simulator.drops import bikeshare_rows, ridehail_rows

    wd, world = lake
    rideco_day1 = ridehail_rows(world, "rideco", DAY1)
    citybikes_day2 = bikeshare_rows(world, "citybikes", DAY2)

    # day 1: rideco and citybikes deliver on time; hailnow's day-1 file will be late
    day1 = _land(wd, world, DAY1, {"rideco": "ridehail_trips", "citybikes": "bikeshare_trips"})
    run_dbt(wd, args=FCT)
    first = _fact(wd)
    build1_at = {row["loaded_at"] for row in first.values()}
    assert len(build1_at) == 1
    assert _count(first, partner_id="rideco") == len(rideco_day1) > 20
    assert _count(first, partner_id="citybikes") == day1["citybikes"]["rows_accepted"] > 5

    # day 2: only day 2's batches are read; day 1's rows keep the loaded_at of the first build
    day2 = _land(wd, world, DAY2, {"rideco": "ridehail_trips", "citybikes": "bikeshare_trips"})
    _fct_result(run_dbt(wd, args=FCT))
    compiled = _compiled_fct(wd)
    assert all(m["batch_id"] in compiled for m in day2.values())
    assert not any(m["batch_id"] in compiled for m in day1.values()), "day 1 batches were re-read"
    second = _fact(wd)
    assert {k: v["loaded_at"] for k, v in second.items() if k in first} == {
        k: v["loaded_at"] for k, v in first.items()
    }, "day 1 rows were reloaded"
    new_keys = second.keys() - first.keys()
    assert len(new_keys) == sum(m["rows_accepted"] for m in day2.values())
    assert {second[k]["loaded_at"] for k in new_keys}.isdisjoint(build1_at)

    # a corrected day-1 file (3 trips withdrawn), hailnow's late day-1 file, and citybikes
    # withdrawing day 2 whole (a header-only file)
    corrected = _land(wd, world, DAY1, {"rideco": "ridehail_trips"}, rows={"rideco": rideco_day1[:-3]})
    late = _land(wd, world, DAY1, {"hailnow": "ridehail_trips"})
    emptied = _land(wd, world, DAY2, {"citybikes": "bikeshare_trips"}, rows={"citybikes": []})
    assert emptied["citybikes"]["outcome"] == "empty"
    run_dbt(wd, args=FCT)
    third = _fact(wd)
    rideco1 = [r for r in third.values() if r["partner_id"] == "rideco" and r["source_window"].endswith("2026-11-03T00:00:00Z")]
    assert len(rideco1) == len(rideco_day1) - 3, "the corrected batch must replace, never add"
    assert {r["batch_id"] for r in rideco1} == {corrected["rideco"]["batch_id"]}
    assert _count(third, partner_id="hailnow") == late["hailnow"]["rows_accepted"] > 20
    assert _count(third, partner_id="citybikes", feed="bikeshare_trips") == day1["citybikes"]["rows_accepted"]
    assert not [r for r in third.values() if r["batch_id"] == day2["citybikes"]["batch_id"]]
    assert len(citybikes_day2) > 0
    # untouched windows were not reloaded
    for key in (k for k, v in first.items() if v["partner_id"] == "citybikes"):
        assert third[key]["loaded_at"] == first[key]["loaded_at"]
    rideco2 = [k for k, v in second.items() if v["batch_id"] == day2["rideco"]["batch_id"]]
    assert rideco2 and all(third[k]["loaded_at"] == second[k]["loaded_at"] for k in rideco2)

    # a full refresh rebuilds the same table from the lake
    run_dbt(wd, args=(*FCT, "--full-refresh"))
    rebuilt = _fact(wd)
    strip = lambda fact: {k: {c: v for c, v in row.items() if c != "loaded_at"} for k, row in fact.items()}  # noqa: E731
    assert strip(rebuilt) == strip(third)
    assert len({r["loaded_at"] for r in rebuilt.values()}) == 1


def test_a_build_with_nothing_new_reads_no_batch(lake):
    wd, world = lake
    _land(wd, world, DAY1, {"rideco": "ridehail_trips"})
    run_dbt(wd, args=FCT)
    before = _fact(wd)
    run_dbt(wd, args=FCT)
    assert "batch_id in (null)" in " ".join(_compiled_fct(wd).split())
    assert _fact(wd) == before


def test_rejected_resubmission_keeps_the_window_rows(lake):
    """A corrected file that breaks the contract is quarantined: the window keeps its last good batch."""
    from mobility.simulator.drops import ridehail_rows

    wd, world = lake
    good = _land(wd, world, DAY1, {"rideco": "ridehail_trips"})
    run_dbt(wd, args=FCT)
    rows = ridehail_rows(world, "rideco", DAY1)
    bad = [dict(r, trip_id="") for r in rows]  # blank ids break the contract on every row
    from mobility.pipeline import ingest_file_drop_day
    from mobility.simulator import drops

    drops.write_atomic(wd.drops / "rideco" / f"rideco-trips-{DAY1}.csv", drops.to_csv(bad, drops.RIDEHAIL_COLUMNS))
    assert ingest_file_drop_day(wd, "rideco", "ridehail_trips", _start(DAY1))["outcome"] == "rejected"
    run_dbt(wd, args=FCT)
    fact = _fact(wd)
    assert len(fact) == len(rows) and {r["batch_id"] for r in fact.values()} == {good["rideco"]["batch_id"]}


def test_trip_data_tests_check_each_new_batch_once(lake):
    """Tests on the views before the fact read only the batches it does not hold yet, and fail on them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mobility.warehouse.build import DbtBuildError

    wd, world = lake
    day1 = _land(wd, world, DAY1, {"rideco": "ridehail_trips"})
    run_dbt(wd, args=FCT)
    day2 = _land(wd, world, DAY2, {"rideco": "ridehail_trips"})
    # the new batch's file holds one trip twice (the lake is damaged after landing)
    (path,) = [p for p in (wd.bronze / "ridehail_trips" / "partner=rideco").glob("*.parquet")
               if day2["rideco"]["batch_id"] in pq.read_table(p, columns=["batch_id"]).column(0).to_pylist()]
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)
    with pytest.raises(DbtBuildError) as err:
        run_dbt(wd, args=FCT)
    assert "unique_stg_ridehail__trips_trip_key" in str(err.value)
    compiled = " ".join(next((wd.dbt_target / "compiled").rglob("unique_stg_ridehail__trips_trip_key.sql"))
                        .read_text().split())
    # the new batch only, and its file by name (so the scan opens no other file), not day 1's
    assert (f"where (batch_id in ('{day2['rideco']['batch_id']}') and bronze_file in ('partner=rideco/{DAY2}.parquet'))"
            in compiled)
    assert day1["rideco"]["batch_id"] not in compiled and f"{DAY1}.parquet" not in compiled

    pq.write_table(table, path)  # repaired: the build passes and the fact holds both days once
    run_dbt(wd, args=FCT)
    fact = _fact(wd)
    assert len(fact) == sum(len(pq.read_table(p)) for p in path.parent.glob("*.parquet"))


def test_after_a_failed_build_the_next_one_tests_every_row_again(lake):
    """A trip_key duplicated across batches fails the build after the fact has loaded it; the next
    build after that failure (pipeline.build_warehouse sets trip_marts_rebuild_all) tests every
    batch again, so the duplicate still fails it though the new day's batch is clean."""
    from mobility.simulator import drops
    from mobility.warehouse.build import DbtBuildError

    wd, world = lake
    day3, day4 = DAY2 + timedelta(days=1), DAY2 + timedelta(days=2)
    for day in (DAY1, DAY2):  # day 1 is then in an earlier load than the fact's latest
        _land(wd, world, day, {"rideco": "ridehail_trips"})
        run_dbt(wd, args=FCT)
    day1_ids = [r["trip_id"] for r in drops.ridehail_rows(world, "rideco", DAY1)]
    rows = drops.ridehail_rows(world, "rideco", day3)
    rows[0] = {**rows[0], "trip_id": day1_ids[0]}  # a day-3 trip reusing a day-1 trip's id
    _land(wd, world, day3, {"rideco": "ridehail_trips"}, rows={"rideco": rows})
    with pytest.raises(DbtBuildError) as err:
        run_dbt(wd, args=FCT)  # the new batches are unique among themselves: the fact's test fails
    assert "unique_with_latest_load_fct_trips_trip_key" in str(err.value)

    _land(wd, world, day4, {"rideco": "ridehail_trips"})
    with pytest.raises(DbtBuildError) as err:
        run_dbt(wd, args=FCT, vars={"trip_marts_rebuild_all": True})
    # every batch is tested again: the staging view's test now sees day 1 and day 3 together
    assert "unique_stg_ridehail__trips_trip_key" in str(err.value)
    compiled = next((wd.dbt_target / "compiled").rglob("unique_stg_ridehail__trips_trip_key.sql")).read_text()
    assert "batch_id in" not in compiled and "where true" in compiled


TRIP_MARTS = ("mart_trips_per_neighborhood_day", "mart_trips_per_neighborhood_mode_hour", "mart_od_flows",
              "mart_equity_trips_daily", "mart_first_last_mile")
MARTS = ("build", "--select", *(f"+{m}" for m in TRIP_MARTS), "--indirect-selection", "cautious")


def _tables(wd: Workdir, names=TRIP_MARTS) -> dict[str, list[tuple]]:
    with duckdb.connect(str(wd.warehouse), read_only=True) as con:
        return {n: sorted(con.execute(f"select * from {n}").fetchall(), key=repr) for n in names}


def _compiled(wd: Workdir, model: str) -> str:
    return " ".join(next((wd.dbt_target / "compiled").rglob(f"{model}.sql")).read_text().split())


def test_incremental_trip_marts_equal_a_full_refresh(lake):
    """The trip marts rebuild only the days new batches touch; after new days, a gap filled late,
    a corrected batch and a window emptied, they equal a full-refresh build of the same lake."""
    from mobility.simulator.drops import ridehail_rows

    wd, world = lake
    day0, day3 = DAY1 - timedelta(days=1), DAY2 + timedelta(days=1)
    rideco_day1 = ridehail_rows(world, "rideco", DAY1)

    _land(wd, world, DAY1, {"rideco": "ridehail_trips", "citybikes": "bikeshare_trips"})
    run_dbt(wd, args=MARTS)
    first = _tables(wd)
    # a day after a gap: the day mart zero-fills the gap, and day 1 is not rebuilt
    _land(wd, world, day3, {"rideco": "ridehail_trips", "citybikes": "bikeshare_trips"})
    run_dbt(wd, args=MARTS)
    compiled = _compiled(wd, "mart_trips_per_neighborhood_day")
    assert str(day3) in compiled and str(DAY1) not in compiled, "day 1 was rebuilt for a day-3 batch"
    second = _tables(wd)
    day1_rows = lambda t: [r for r in t["mart_trips_per_neighborhood_day"] if r[2] == DAY1]  # noqa: E731
    assert day1_rows(second) == day1_rows(first)
    assert {r[2] for r in second["mart_trips_per_neighborhood_day"]} >= {DAY1, DAY2, day3}

    # the gap filled late, a late day before the range, a corrected day 1 (3 trips withdrawn),
    # and citybikes withdrawing day 3 whole
    _land(wd, world, DAY2, {"rideco": "ridehail_trips"})
    _land(wd, world, day0, {"hailnow": "ridehail_trips"})
    _land(wd, world, DAY1, {"rideco": "ridehail_trips"}, rows={"rideco": rideco_day1[:-3]})
    _land(wd, world, day3, {"citybikes": "bikeshare_trips"}, rows={"citybikes": []})
    run_dbt(wd, args=MARTS)
    incremental = _tables(wd)
    assert incremental != second
    assert {r[2] for r in incremental["mart_trips_per_neighborhood_day"]} >= {day0, DAY1, DAY2, day3}

    run_dbt(wd, args=(*MARTS, "--full-refresh"))
    assert _tables(wd) == incremental


def test_a_build_after_an_unfinished_one_rebuilds_every_mart_day(tmp_path, city_dir, monkeypatch):
    """The trip marts rebuild the latest load's days only; after a build that did not finish
    (it may have loaded batches without rebuilding their days) the next one rebuilds them all."""
    import mobility.warehouse.build as build
    from mobility.pipeline import build_warehouse, last_build_marker

    shutil.copytree(city_dir.city, tmp_path / "city")
    wd = Workdir.resolve(tmp_path)
    calls, fail = [], []

    class Result:
        def summary(self):
            return {"success": True}

    def fake_run_dbt(workdir, args, vars):
        calls.append(vars.get("trip_marts_rebuild_all", False))
        wd.warehouse.parent.mkdir(parents=True, exist_ok=True)
        wd.warehouse.touch()
        if fail:
            raise build.DbtBuildError("failed", None)
        return Result()

    monkeypatch.setattr(build, "run_dbt", fake_run_dbt)
    build_warehouse(wd)  # the first build: nothing to rebuild
    build_warehouse(wd)
    fail.append(True)
    with pytest.raises(build.DbtBuildError):
        build_warehouse(wd)
    assert not last_build_marker(wd).exists()
    fail.clear()
    build_warehouse(wd)
    build_warehouse(wd)
    assert calls == [False, False, False, True, False]


MANIFESTS = ("build", "--select", "stg_lake__manifests")


def _manifest_records(wd: Workdir) -> dict[str, dict]:
    with duckdb.connect(str(wd.warehouse), read_only=True) as con:
        cur = con.execute("select * from stg_lake__manifests")
        names = [d[0] for d in cur.description]
        return {r[names.index("file_path")]: dict(zip(names, r)) for r in cur.fetchall()}


def test_manifests_are_read_once_each_then_again_when_rewritten_and_forgotten_when_removed(lake):
    """stg_lake__manifests reads only the manifest files that are new or rewritten since its last
    build, replaces the records of rewritten ones, and drops those of files taken out of the lake."""
    import os

    wd, world = lake
    day1 = _land(wd, world, DAY1, {"rideco": "ridehail_trips", "citybikes": "bikeshare_trips"})
    run_dbt(wd, args=MANIFESTS)
    first = _manifest_records(wd)
    assert {r["batch_id"] for r in first.values()} == {m["batch_id"] for m in day1.values()}

    day2 = _land(wd, world, DAY2, {"rideco": "ridehail_trips"})
    run_dbt(wd, args=MANIFESTS)
    compiled = _compiled(wd, "stg_lake__manifests")
    (new_path,) = {str(p.relative_to(wd.manifests)) for p in wd.manifests.rglob("*.json")} - first.keys()
    assert str(wd.manifests / new_path) in compiled, "the new manifest was not read"
    assert not any(str(wd.manifests / p) in compiled for p in first), "old manifests were read again"
    second = _manifest_records(wd)
    assert len(second) == 3 and second[new_path]["batch_id"] == day2["rideco"]["batch_id"]
    assert all(second[p] == first[p] for p in first), "records of unchanged files changed"

    # a manifest rewritten in place (the same bytes landed again) replaces its record, once
    path = wd.manifests / new_path
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "rows_accepted": 1, "outcome": "partial"}))
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))  # DuckDB reads mtimes to the second
    run_dbt(wd, args=MANIFESTS)
    third = _manifest_records(wd)
    assert len(third) == 3 and (third[new_path]["rows_accepted"], third[new_path]["outcome"]) == (1, "partial")

    path.unlink()  # taken out of the lake: its record goes too
    run_dbt(wd, args=MANIFESTS)
    assert _manifest_records(wd).keys() == first.keys()
