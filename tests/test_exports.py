"""Partner exports: each partner's own detail and the consortium aggregates exactly as published,
never another partner's rows; written and swapped in with the publication."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import duckdb
import pytest

from fixtures_publication import MDS_OPERATORS, publication
from mobility import spatial
from mobility.registry import load_registry
from mobility.settings import Workdir
from mobility.warehouse.exports import (
    CONSORTIUM,
    EXPORT_DB,
    EXPORT_RECORD,
    OWN_DETAIL,
    PARTNERS_DIR,
    ExportError,
    write_partner_exports,
)
from mobility.warehouse.publish import load_descriptions, publish


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Workdir:
    return publication(tmp_path_factory)


def _export(wd: Workdir, partner: str) -> Path:
    return wd.published / PARTNERS_DIR / partner


def _rows(path: Path, sql: str, params=()) -> list[tuple]:
    # spatial only for the warehouse, whose staging views call its functions
    connect = spatial.connect if path.name == "mobility.duckdb" and path.parent.name == "warehouse" else duckdb.connect
    with connect(path if connect is spatial.connect else str(path), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def _detail_relations(warehouse: Path) -> set[str]:
    """fct_/stg_ relations with a partner_id column, found independently of the export code."""
    rows = _rows(warehouse, "select table_name, column_name from information_schema.columns where table_schema = 'main'")
    return {t for t, c in rows if c == "partner_id" and t.startswith(("fct_", "stg_"))}


def test_every_registry_partner_gets_a_read_only_export(published: Workdir) -> None:
    record = json.loads((published.published / "publication.json").read_text())
    partners = [p.id for p in load_registry().partners]
    assert sorted(record["partners"]) == sorted(partners)
    for partner in partners:
        folder = _export(published, partner)
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {EXPORT_DB, EXPORT_RECORD}
        assert all(not os.stat(p).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) for p in files)
        held = json.loads((folder / EXPORT_RECORD).read_text())
        assert held["partner_id"] == partner and held["k"] == record["k"]
        assert held[CONSORTIUM] == record["tables"]
        # aggregates one file each; own detail one folder each, a file per partition (batch day)
        aggregates = {p.stem for p in (folder / "parquet").glob("*.parquet")}
        detail = {p.name for p in (folder / "parquet").iterdir() if p.is_dir()}
        assert aggregates == set(held[CONSORTIUM]) and detail == set(held[OWN_DETAIL])
        assert all(any((folder / "parquet" / table).glob("*.parquet")) for table in detail)
        tables = {r[0] for r in _rows(folder / EXPORT_DB, "select table_name from duckdb_tables()")}
        assert tables == aggregates | detail


def test_own_detail_is_every_partner_relation_and_only_the_partners_rows(published: Workdir) -> None:
    details = _detail_relations(published.warehouse)
    assert {"fct_trips", "stg_mds__trips"} <= details
    for partner in MDS_OPERATORS:
        export = _export(published, partner) / EXPORT_DB
        held = json.loads((_export(published, partner) / EXPORT_RECORD).read_text())
        assert set(held[OWN_DETAIL]) == details
        for table in details:
            # every value as text: geometry and timestamps compare exactly, whatever their Python type
            query = f'select columns(*)::varchar from "{table}" where partner_id is not distinct from ? order by all'
            mine = _rows(export, query, [partner])
            assert len(mine) == _rows(export, f'select count(*) from "{table}"')[0][0]  # nothing beside its rows
            expected = _rows(published.warehouse, query, [partner])
            assert mine == expected, table
            assert held[OWN_DETAIL][table] == len(mine)
            parquet = str(_export(published, partner) / "parquet" / table / "*.parquet")
            from_parquet = _rows(export, query.replace(f'"{table}"', "read_parquet(?)"), [parquet, partner])
            assert from_parquet == expected, table
        assert held[OWN_DETAIL]["fct_trips"] > 0


def test_partner_detail_carries_its_own_pseudonymised_ids(published: Workdir) -> None:
    for partner in MDS_OPERATORS:
        bronze = str(published.bronze / "mds_trips" / f"partner={partner}" / "*.parquet")
        landed = set(_rows(published.warehouse, "select trip_id, device_id from read_parquet(?, hive_partitioning = false)",
                           [bronze]))
        exported = set(_rows(_export(published, partner) / EXPORT_DB, "select trip_id, device_id from stg_mds__trips"))
        assert exported == landed and all(len(t) == 32 for t, _ in exported)


def test_consortium_aggregates_are_exactly_the_published_tables(published: Workdir) -> None:
    with duckdb.connect(str(published.published_db), read_only=True) as con:
        tables = [r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()]
        expected = {t: con.execute(f'select * from "{t}" order by all').fetchall() for t in tables}
    # the fixture lands MDS trips: their marts hold rows (the other feeds' marts may be empty)
    assert expected["mart_trips_per_neighborhood_day"] and expected["mart_od_flows"]
    for partner in (p.id for p in load_registry().partners):
        export = _export(published, partner)
        with duckdb.connect(str(export / EXPORT_DB), read_only=True) as con:
            for table in tables:
                assert con.execute(f'select * from "{table}" order by all').fetchall() == expected[table], partner
                parquet = str(export / "parquet" / f"{table}.parquet")
                assert con.execute("select * from read_parquet(?) order by all", [parquet]).fetchall() == expected[table]


def test_exports_carry_the_dbt_descriptions(published: Workdir) -> None:
    docs = load_descriptions(published.dbt_target / "manifest.json")
    export = _export(published, "scootco") / EXPORT_DB
    comments = dict(_rows(export, "select table_name, comment from duckdb_tables()"))
    for table, comment in comments.items():
        assert comment == docs[table]["description"] and comment, table
    columns = {(t, c): text for t, c, text in _rows(
        export, "select table_name, column_name, comment from duckdb_columns()")}
    assert columns[("fct_trips", "trip_id")] == docs["fct_trips"]["columns"]["trip_id"]
    assert columns[("mart_trips_per_neighborhood_day", "trips_started")]
    published_columns = {(t, c): text for t, c, text in _rows(
        published.published_db, "select table_name, column_name, comment from duckdb_columns()")}
    assert all(columns[key] == text for key, text in published_columns.items())


def test_detail_is_found_by_its_partner_column_not_its_name(published: Workdir, tmp_path: Path) -> None:
    """A new fct_/stg_ relation with a partner_id column is exported filtered; others are not."""
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table fct_vehicle_days (partner_id varchar, vehicle_days integer)")
        con.execute("insert into fct_vehicle_days values ('scootco', 4), ('zoomride', 7), (null, 1)")
        con.execute("create view stg_other__feed as select 'scootco' as partner_id, 1 as x "
                    "union all select 'zoomride', 2")
        con.execute("create table fct_no_partner (operator varchar)")
        con.execute("insert into fct_no_partner values ('zoomride')")
        con.execute("create table int_partner_rows as select 'zoomride' as partner_id")
        con.execute("create table mart_x as select 1 as n")
    aggregates = tmp_path / "pub.duckdb"
    with duckdb.connect(str(aggregates)) as con:
        con.execute("create table mart_x as select 10 as n")
    held = write_partner_exports(tmp_path / "exports", ["scootco"], warehouse=warehouse, publication=aggregates,
                                 docs={}, k=10, published_at="now",
                                 duckdb_config=Workdir.resolve(tmp_path).duckdb_config())["scootco"]
    assert held[OWN_DETAIL] == {"fct_vehicle_days": 1, "stg_other__feed": 1}
    assert held[CONSORTIUM] == {"mart_x": 1}
    export = tmp_path / "exports" / "scootco" / EXPORT_DB
    assert _rows(export, "select * from fct_vehicle_days") == [("scootco", 4)]
    assert _rows(export, "select * from mart_x") == [(10,)]  # the published aggregate, not the warehouse's


def test_failed_export_leaves_the_previous_publication_byte_identical(published: Workdir, tmp_path: Path) -> None:
    import shutil

    wd = Workdir.resolve(tmp_path / "copy")
    shutil.copytree(published.root, wd.root, symlinks=True, ignore=shutil.ignore_patterns("airflow", "logs"))

    def fingerprint() -> dict[str, str]:
        out = {}
        for path in sorted(wd.published.rglob("*")):
            if path.is_file():
                out[str(path.relative_to(wd.published))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return out

    before = fingerprint()
    assert any(k.startswith(".partners-") for k in before)
    with pytest.raises(ExportError, match="cannot name an export folder"):
        publish(wd, k=10, partners=["scootco", "../escape"])
    assert fingerprint() == before
    assert not (wd.root / "escape").exists()
    assert sorted(p.name for p in wd.published.iterdir() if p.name.startswith(".")) == sorted(
        {k.split("/")[0] for k in before if k.startswith(".")})

    # a good republication swaps the partners folder and drops the old one
    old_target = (wd.published / PARTNERS_DIR).resolve()
    result = publish(wd, k=10, partners=["zoomride"])
    assert sorted(result.partners) == ["zoomride"]
    assert sorted(p.name for p in (wd.published / PARTNERS_DIR).iterdir()) == ["zoomride"]
    assert not old_target.exists()


def test_publication_connections_are_capped_by_the_pipeline_memory_setting(
    published: Workdir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every DuckDB connection publication opens (the marts', the exports') holds
    MOBILITY_DUCKDB_MEMORY_LIMIT and spills into the workdir, as the dbt build does (DuckDB's own
    default is 80% of the machine, spilling under the process's working directory)."""
    import shutil

    wd = Workdir.resolve(tmp_path / "copy")
    shutil.copytree(published.root, wd.root, symlinks=True, ignore=shutil.ignore_patterns("airflow", "logs"))
    monkeypatch.setenv("MOBILITY_DUCKDB_MEMORY_LIMIT", "1234MB")
    with duckdb.connect(config={"memory_limit": "1234MB"}) as con:
        expected_limit = con.execute("select current_setting('memory_limit')").fetchone()[0]
    seen: list[tuple[str, str]] = []
    connect = duckdb.connect

    def recording(*args, **kwargs):
        con = connect(*args, **kwargs)
        seen.append(con.execute("select current_setting('memory_limit'), current_setting('temp_directory')").fetchone())
        return con

    monkeypatch.setattr(duckdb, "connect", recording)  # the module's own: spatial.connect calls it too
    publish(wd, k=10, partners=["scootco"])
    assert len(seen) >= 2  # the new publication's file, the exports' connection
    assert set(seen) == {(expected_limit, str(wd.duckdb_temp))}
    assert wd.duckdb_temp.is_dir() and wd.duckdb_temp.is_relative_to(wd.root)
    assert wd.env()["MOBILITY_DUCKDB_MEMORY_LIMIT"] == "1234MB"  # what the dbt build's profile reads
