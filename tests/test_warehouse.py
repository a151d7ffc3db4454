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
    MART_NEIGHBORHOODS,
    PLANTED,
    built_lake,  # noqa: F401  (session fixture)
    expected_suppression,
    mart_connection,
    write_lake,
    write_neighborhoods,
)
from mobility.settings import Workdir
from mobility.warehouse import publish as publish_module
from mobility.warehouse.build import DbtBuildError, run_dbt
from mobility.warehouse.publish import publish
from mobility.warehouse.suppression import SUPPRESSION, suppressed_select

K = 10
POPULATION = {n[0]: n[2] for n in NEIGHBORHOODS}
EQUITY = {n[0]: n[5] for n in NEIGHBORHOODS}
PLANTED_CELLS = {(nid, day, "scooter"): n for (nid, day), n in PLANTED.items()}


def _hidden_in_lake(k: int) -> set[tuple[int, str]]:
    return {(nid, day) for nid, day, _ in expected_suppression(PLANTED_CELLS, EQUITY, k)[0]}


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


def test_publication_suppresses_small_counts_and_their_complements(lake_to_publish: Workdir) -> None:
    wd = lake_to_publish
    result = publish(wd, k=K)
    assert {t: result.tables[t] for t in ("mart_trips_per_neighborhood_day", "mart_equity_trips_daily")} == {
        "mart_trips_per_neighborhood_day": len(PLANTED), "mart_equity_trips_daily": 2
    }
    rows = _query(
        wd.published_db,
        "select neighborhood_id, strftime(trip_date, '%Y-%m-%d'), trips_started, trips_per_1000_residents "
        "from mart_trips_per_neighborhood_day",
    )
    assert len(rows) == len(PLANTED)
    hidden = _hidden_in_lake(K)
    # small counts, plus Lakeshore's 10 on day 1: the complement of Hilltop's 3 (the 0s are never used)
    assert hidden == {(n, d) for (n, d), c in PLANTED.items() if 1 <= c < K} | {(4, DAY1)}
    for nid, day, count, rate in rows:
        planted = PLANTED[(nid, day)]
        if (nid, day) in hidden:
            assert count is None and rate is None, (nid, day)
        else:  # zero stays zero, the rest is published as it is
            assert count == planted
            assert rate == pytest.approx(planted * 1000 / POPULATION[nid], abs=1e-4)
    # parquet copies carry the same, suppressed, rows
    parquet = wd.published / "parquet" / "mart_trips_per_neighborhood_day.parquet"
    assert duckdb.sql(f"select count(*), count(trips_started) from '{parquet}'").fetchone() == (
        len(PLANTED),
        len(PLANTED) - len(hidden),
    )
    record = json.loads((wd.published / "publication.json").read_text())
    assert record["tables"]["mart_trips_per_neighborhood_day"] == len(PLANTED) and record["k"] == K


def test_publication_keeps_totals_by_suppressing_complementary_cells(lake_to_publish: Workdir) -> None:
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
    # day 1, rest of the city: Hilltop 3 (suppressed) + Lakeshore 10; Lakeshore is hidden as well,
    # so the total of 13 gives back neither, and it stays published with the ratio
    assert rows[DAY1][:2] == (12, 13) and rows[DAY1][2] is not None
    # day 2, equity zones: Riverside 1 + Old Mill 9, both hidden, adding up to 10 >= k: publishable
    assert rows[DAY2][:2] == (10, 15) and rows[DAY2][2] is not None


# ---------------------------------------------------------------------------- complementary suppression

D1, D2, D3 = "2026-07-01", "2026-07-02", "2026-07-03"
MART_EQUITY = {nid: eq for nid, _, eq in MART_NEIGHBORHOODS}
# neighborhoods 1-4 are equity zones, 5-8 the rest of the city (see MART_NEIGHBORHOODS)
CELLS = {
    # one small cell (3): the smallest positive cell is hidden too; 0 is skipped, 11 vs 11 -> lowest id (3)
    (1, D1, "scooter"): 3, (2, D1, "scooter"): 0, (3, D1, "scooter"): 11, (4, D1, "scooter"): 11,
    (5, D1, "scooter"): 40, (6, D1, "scooter"): 12, (7, D1, "scooter"): 0, (8, D1, "scooter"): 30,
    # two small cells adding up to 6 < k: a complement (12) brings the hidden sum to 18
    (1, D2, "scooter"): 2, (2, D2, "scooter"): 4, (3, D2, "scooter"): 30, (4, D2, "scooter"): 12,
    # two small cells adding up to 10 >= k: nothing more to hide
    (5, D2, "scooter"): 1, (6, D2, "scooter"): 9, (7, D2, "scooter"): 50, (8, D2, "scooter"): 0,
    # one small cell and only zeros beside it: no complement available, the total is hidden
    (1, D3, "scooter"): 3, (2, D3, "scooter"): 0, (3, D3, "scooter"): 0, (4, D3, "scooter"): 0,
    (5, D3, "scooter"): 20, (6, D3, "scooter"): 25, (7, D3, "scooter"): 10, (8, D3, "scooter"): 0,
    # another mode is another group: its complement (20) is chosen within bike, not scooter
    (1, D1, "bike"): 5, (2, D1, "bike"): 20, (3, D1, "bike"): 0, (4, D1, "bike"): 0,
}
EXPECTED_HIDDEN_CELLS = {
    (1, D1, "scooter"), (3, D1, "scooter"),
    (1, D2, "scooter"), (2, D2, "scooter"), (4, D2, "scooter"),
    (5, D2, "scooter"), (6, D2, "scooter"),
    (1, D3, "scooter"),
    (1, D1, "bike"), (2, D1, "bike"),
}


def _published(con: duckdb.DuckDBPyConnection, table: str, k: int = K) -> list[dict]:
    columns = [r[0] for r in con.execute(f'describe "{table}"').fetchall()]
    cur = con.execute(suppressed_select(table, columns, k))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _cell_rows(con: duckdb.DuckDBPyConnection, k: int = K) -> dict[tuple[int, str, str], dict]:
    return {
        (r["neighborhood_id"], r["trip_date"].isoformat(), r["mode"]): r
        for r in _published(con, "mart_trips_per_neighborhood_day", k)
    }


def _total_rows(con: duckdb.DuckDBPyConnection, k: int = K) -> dict[tuple[str, str], dict]:
    return {(r["trip_date"].isoformat(), r["mode"]): r for r in _published(con, "mart_equity_trips_daily", k)}


def test_complements_hide_the_smallest_positive_cells_of_the_group() -> None:
    con = mart_connection(CELLS)
    cells = _cell_rows(con)
    hidden = {key for key, r in cells.items() if r["trips_started"] is None}
    assert hidden == EXPECTED_HIDDEN_CELLS
    assert expected_suppression({key: CELLS.get(key, 0) for key in cells}, MART_EQUITY, K)[0] == hidden
    for key, r in cells.items():
        if key in hidden:  # the rate would give the count back: nulled with it
            assert r["trips_per_1000_residents"] is None, key
        else:
            assert r["trips_started"] == CELLS.get(key, 0), key
            assert r["trips_per_1000_residents"] is not None, key
    # zeros are never complements: a published 0 is known anyway
    assert all(CELLS.get(key, 0) > 0 for key in hidden)


def test_totals_stay_published_unless_no_complement_is_left() -> None:
    con = mart_connection(CELLS)
    totals = _total_rows(con)
    assert totals[(D1, "scooter")]["equity_zone_trips_started"] == 25  # 3 + 0 + 11 + 11
    assert totals[(D2, "scooter")]["equity_zone_trips_started"] == 48
    assert totals[(D2, "scooter")]["other_trips_started"] == 60
    assert totals[(D1, "bike")]["equity_zone_trips_started"] == 25
    for key in [(D1, "scooter"), (D2, "scooter")]:
        assert totals[key]["equity_ratio"] is not None
    # day 3, equity zones: 3 and zeros; nothing can be hidden beside the 3, so the total goes,
    # with its rate and the ratio; the rest of the city is published
    d3 = totals[(D3, "scooter")]
    assert d3["equity_zone_trips_started"] is None
    assert d3["equity_zone_trips_per_1000_residents"] is None and d3["equity_ratio"] is None
    assert d3["other_trips_started"] == 55 and d3["other_trips_per_1000_residents"] is not None
    assert {(day, mode, True) for (day, mode), r in totals.items() if r["equity_zone_trips_started"] is None} == (
        expected_suppression(CELLS, MART_EQUITY, K)[1]
    )


def test_total_falls_back_to_suppression_even_when_not_small_itself() -> None:
    con = mart_connection(CELLS)
    # a total of 40 over cells 3, 0, 0, 0 (e.g. trips counted outside the published cells):
    # not small, but with no complement available the 3 could still be bounded by it
    con.execute(
        "update mart_equity_trips_daily set equity_zone_trips_started = 40 "
        f"where trip_date = date '{D3}' and mode = 'scooter'"
    )
    assert _total_rows(con)[(D3, "scooter")]["equity_zone_trips_started"] is None


def test_no_published_total_gives_back_less_than_k() -> None:
    con = mart_connection(CELLS)
    cells, totals = _cell_rows(con), _total_rows(con)
    for (day, mode), row in totals.items():
        for column, zone in (("equity_zone_trips_started", True), ("other_trips_started", False)):
            if row[column] is None:
                continue
            group = [r["trips_started"] for (nid, d, m), r in cells.items() if (d, m) == (day, mode)
                     and MART_EQUITY[nid] == zone]
            n_hidden = sum(1 for c in group if c is None)
            residual = row[column] - sum(c for c in group if c is not None)
            assert (n_hidden, residual) == (0, 0) or (n_hidden >= 2 and residual >= K), (day, mode, zone)


@pytest.mark.parametrize("k", [2, 5, 10, 13])
def test_suppression_matches_the_rule_for_any_k(built_lake: Workdir, k: int) -> None:
    con = duckdb.connect(str(built_lake.warehouse), read_only=True)
    try:
        columns = [r[0] for r in con.execute("describe mart_trips_per_neighborhood_day").fetchall()]
        rows = con.execute(
            f"select neighborhood_id, strftime(trip_date, '%Y-%m-%d'), trips_started "
            f"from ({suppressed_select('mart_trips_per_neighborhood_day', columns, k)})"
        ).fetchall()
    finally:
        con.close()
    assert {(nid, day) for nid, day, c in rows if c is None} == _hidden_in_lake(k)


def test_publication_holds_only_marts_and_is_read_only(lake_to_publish: Workdir) -> None:
    wd = lake_to_publish
    publish(wd, k=K)
    tables = {r[0] for r in _query(wd.published_db, "select table_name from duckdb_tables()")}
    assert tables == set(SUPPRESSION)  # every mart, each under its suppression rule, nothing else
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
    # k=2: Riverside's 1 on day 2 is hidden, and Old Mill's 9 as its complement
    assert _hidden_in_lake(2) == {(1, DAY2), (3, DAY2)}
    assert rows == [(len(PLANTED) - 2,)]
    assert len([p for p in wd.published.iterdir() if p.name.startswith(".parquet-")]) == 1  # old set removed


def test_failed_publish_gate_keeps_the_last_good_publication(lake_to_publish: Workdir) -> None:
    """A mart that fails the gate is never published; the previous publication stays byte-identical."""
    from mobility.pipeline import gate_and_publish

    wd = lake_to_publish
    first = gate_and_publish(wd)
    assert first["ok"] and first["publication"]
    before = _snapshot(wd.published)

    with duckdb.connect(str(wd.warehouse)) as con:  # a defect the build let through
        con.execute("update mart_trips_per_neighborhood_day set trips_started = -3 where neighborhood_id = 1")
    second = gate_and_publish(wd)
    assert second["ok"] is False and second["publication"] is None
    assert "expect_column_values_to_be_between" in second["gate"]["message"]
    assert "trips_started" in second["gate"]["message"]
    assert _snapshot(wd.published) == before
