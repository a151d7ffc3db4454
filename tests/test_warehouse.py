"""dbt build on a synthetic lake (mart counts = planted counts) and the atomic, suppressed publication."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import duckdb
import pytest

from fixtures_lake import (
    DAY1,
    DAY2,
    NEIGHBORHOODS,
    PLANTED,
    built_lake,  # noqa: F401  (session fixture)
    write_lake,
    write_neighborhoods,
)
from mobility.settings import Workdir
from mobility.warehouse import publish as publish_module
from mobility.warehouse.build import DbtBuildError, run_dbt
from mobility.warehouse.publish import publish

K = 10
POPULATION = {n[0]: n[2] for n in NEIGHBORHOODS}
EQUITY = {n[0]: n[5] for n in NEIGHBORHOODS}


def _query(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("load spatial")  # staging views compute geometries
        return con.execute(sql).fetchall()
    finally:
        con.close()


# ---------------------------------------------------------------------------- dbt build

def test_mart_counts_equal_planted_counts(built_lake: Workdir) -> None:
    rows = _query(
        built_lake.warehouse,
        "select neighborhood_id, strftime(trip_date, '%Y-%m-%d'), mode, trips_started, trips_per_1000_residents "
        "from mart_trips_per_neighborhood_day",
    )
    got = {(nid, day): n for nid, day, _, n, _ in rows}
    assert got == PLANTED  # every neighborhood x day, zeros included, nothing else
    assert {r[2] for r in rows} == {"scooter"}
    for nid, day, _, n, rate in rows:
        assert rate == pytest.approx(round(n * 1000 / POPULATION[nid], 4))


def test_trips_are_assigned_by_local_day_and_outside_points_stay_unassigned(built_lake: Workdir) -> None:
    total, outside, utc_day_differs = _query(
        built_lake.warehouse,
        "select count(*), count(*) filter (where start_neighborhood_id is null), "
        "count(*) filter (where cast(timezone('UTC', start_at) as date) <> start_local_date) from fct_trips",
    )[0]
    assert total == sum(PLANTED.values()) + 1
    assert outside == 1
    # trips were planted at 22:30 Chicago time, already the next day in UTC
    assert utc_day_differs == sum(PLANTED.values())


def test_equity_mart_compares_equity_zones_with_the_rest(built_lake: Workdir) -> None:
    rows = _query(
        built_lake.warehouse,
        "select strftime(trip_date, '%Y-%m-%d'), equity_zone_trips_started, other_trips_started, "
        "equity_zone_trips_per_1000_residents, other_trips_per_1000_residents, equity_ratio from mart_equity_trips_daily",
    )
    eq_pop = sum(p for nid, p in POPULATION.items() if EQUITY[nid])
    other_pop = sum(p for nid, p in POPULATION.items() if not EQUITY[nid])
    assert {r[0] for r in rows} == {DAY1, DAY2}
    for day, eq, other, eq_rate, other_rate, ratio in rows:
        assert eq == sum(n for (nid, d), n in PLANTED.items() if d == day and EQUITY[nid])
        assert other == sum(n for (nid, d), n in PLANTED.items() if d == day and not EQUITY[nid])
        assert eq_rate == pytest.approx(eq * 1000 / eq_pop, abs=1e-4)
        assert other_rate == pytest.approx(other * 1000 / other_pop, abs=1e-4)
        assert ratio == pytest.approx(eq_rate / other_rate, abs=1e-3)


def test_dbt_failure_names_the_failed_node(tmp_path: Path) -> None:
    wd = write_lake(tmp_path)
    # the same batch landed twice under another name: duplicate trip keys
    src = next((wd.bronze / "mds_trips" / "partner=acme").glob("*.parquet"))
    shutil.copy(src, src.with_name("duplicate.parquet"))
    with pytest.raises(DbtBuildError) as err:
        run_dbt(wd, args=("build", "--select", "stg_mds__trips"))
    assert "unique_stg_mds__trips_trip_key" in str(err.value)
    assert not err.value.result.success


def test_build_succeeds_before_any_partner_delivered(tmp_path: Path) -> None:
    wd = Workdir.resolve(tmp_path)
    write_neighborhoods(wd)  # a city, but no bronze files and no manifests yet
    run_dbt(wd, args=("build",))
    assert _query(wd.warehouse, "select count(*) from stg_mds__trips") == [(0,)]
    assert _query(wd.warehouse, "select count(*) from stg_lake__manifests") == [(0,)]
    assert _query(wd.warehouse, "select count(*) from mart_trips_per_neighborhood_day") == [(0,)]


# ---------------------------------------------------------------------------- publication

@pytest.fixture()
def lake_to_publish(built_lake: Workdir, tmp_path: Path) -> Workdir:
    """A private copy of the built workdir, so publication tests do not share published/."""
    wd = Workdir.resolve(tmp_path / "wd")
    wd.root.mkdir()
    for sub in ("warehouse", "dbt", "city"):
        shutil.copytree(built_lake.root / sub, wd.root / sub)
    return wd


def test_publication_suppresses_small_counts_only(lake_to_publish: Workdir) -> None:
    wd = lake_to_publish
    result = publish(wd, k=K)
    assert result.tables == {"mart_trips_per_neighborhood_day": len(PLANTED), "mart_equity_trips_daily": 2}
    rows = _query(
        wd.published_db,
        "select neighborhood_id, strftime(trip_date, '%Y-%m-%d'), trips_started, trips_per_1000_residents "
        "from mart_trips_per_neighborhood_day",
    )
    assert len(rows) == len(PLANTED)
    for nid, day, count, rate in rows:
        planted = PLANTED[(nid, day)]
        if 1 <= planted < K:
            assert count is None and rate is None, (nid, day)
        else:  # zero stays zero, k and above are published as they are
            assert count == planted
            assert rate == pytest.approx(planted * 1000 / POPULATION[nid], abs=1e-4)
    # parquet copies carry the same, suppressed, rows
    parquet = wd.published / "parquet" / "mart_trips_per_neighborhood_day.parquet"
    assert duckdb.sql(f"select count(*), count(trips_started) from '{parquet}'").fetchone() == (
        len(PLANTED),
        sum(1 for n in PLANTED.values() if n == 0 or n >= K),
    )
    record = json.loads((wd.published / "publication.json").read_text())
    assert record["tables"]["mart_trips_per_neighborhood_day"] == len(PLANTED) and record["k"] == K


def test_publication_suppresses_totals_that_would_reveal_a_suppressed_cell(lake_to_publish: Workdir) -> None:
    wd = lake_to_publish
    publish(wd, k=K)
    rows = {
        r[0]: r[1:]
        for r in _query(
            wd.published_db,
            "select strftime(trip_date, '%Y-%m-%d'), equity_zone_trips_started, other_trips_started, equity_ratio "
            "from mart_equity_trips_daily",
        )
    }
    # day 1, rest of the city: Hilltop 3 (suppressed) + Lakeshore 10 (published); a total of 13
    # would give Hilltop back by subtraction, so it is suppressed, and the ratio with it
    assert rows[DAY1] == (12, None, None)
    # day 2, equity zones: Riverside 1 + Old Mill 9, both hidden, adding up to 10 >= k: publishable
    assert rows[DAY2][:2] == (10, 15) and rows[DAY2][2] is not None


def test_publication_holds_only_marts_and_is_read_only(lake_to_publish: Workdir) -> None:
    wd = lake_to_publish
    publish(wd, k=K)
    tables = {r[0] for r in _query(wd.published_db, "select table_name from duckdb_tables()")}
    assert tables == {"mart_trips_per_neighborhood_day", "mart_equity_trips_daily"}
    assert stat.S_IMODE(os.stat(wd.published_db).st_mode) == 0o444
    if os.geteuid() != 0:  # root ignores file modes
        with pytest.raises(duckdb.Error):
            duckdb.connect(str(wd.published_db))


def test_publication_carries_dbt_descriptions(lake_to_publish: Workdir) -> None:
    wd = lake_to_publish
    publish(wd, k=K)
    table_comment = _query(
        wd.published_db, "select comment from duckdb_tables() where table_name = 'mart_equity_trips_daily'"
    )[0][0]
    assert "equity zones" in table_comment
    comments = dict(
        _query(
            wd.published_db,
            "select column_name, comment from duckdb_columns() where table_name = 'mart_trips_per_neighborhood_day'",
        )
    )
    assert all(comments.values()), comments  # every column documented
    assert "suppressed" in comments["trips_started"]


def _snapshot(published: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(published)): p.read_bytes()
        for p in sorted(published.rglob("*"))
        if p.is_file()
    }


def test_failed_publication_leaves_the_previous_one_byte_identical(
    lake_to_publish: Workdir, monkeypatch: pytest.MonkeyPatch
) -> None:
    wd = lake_to_publish
    publish(wd, k=K)
    before = _snapshot(wd.published)
    listing_before = sorted(p.name for p in wd.published.iterdir())

    real = publish_module.suppressed_select
    calls = []

    def fail_on_second_table(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise RuntimeError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(publish_module, "suppressed_select", fail_on_second_table)
    with pytest.raises(RuntimeError, match="simulated"):
        publish(wd, k=5)

    assert len(calls) == 2  # it failed midway, after one table was written
    assert _snapshot(wd.published) == before
    assert sorted(p.name for p in wd.published.iterdir()) == listing_before  # no temp files left


def test_republishing_replaces_atomically(lake_to_publish: Workdir) -> None:
    wd = lake_to_publish
    publish(wd, k=K)
    publish(wd, k=2)  # a second publication over a read-only first one
    rows = _query(wd.published_db, "select count(trips_started) from mart_trips_per_neighborhood_day")
    assert rows == [(sum(1 for n in PLANTED.values() if n == 0 or n >= 2),)]
    assert len([p for p in wd.published.iterdir() if p.name.startswith(".parquet-")]) == 1  # old set removed
