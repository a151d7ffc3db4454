"""The privacy scan: a real publication passes it, and every kind of leak planted in a copy of a
published file is reported (rule, file, table, column)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from fixtures_publication import MDS_OPERATORS, publication
from mobility.settings import Workdir
from mobility.warehouse.exports import EXPORT_DB, PARTNERS_DIR
from mobility.warehouse.privacy_scan import PSEUDONYM_HEX_LENGTH, ScanError, scan_publication
from mobility.warehouse.suppression import SUPPRESSION, WITHHELD


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Workdir:
    return publication(tmp_path_factory)


@pytest.fixture(scope="module")
def clean_report(published: Workdir):
    return scan_publication(published.published)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _copy_main(wd: Workdir, dest: Path) -> Path:
    """The analyst warehouse alone (DuckDB file, Parquet, publication.json), as plain writable files."""
    dest.mkdir()
    shutil.copyfile(wd.published_db, dest / "mobility.duckdb")
    shutil.copytree(wd.published / "parquet", dest / "parquet")  # follows the symlink: the live files
    shutil.copyfile(wd.published / "publication.json", dest / "publication.json")
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def _copy_export(wd: Workdir, partner: str, dest: Path) -> Path:
    shutil.copytree(wd.published / PARTNERS_DIR / partner, dest)
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def _rewrite_parquet(path: Path, select: str) -> None:
    """Replace a Parquet file by ``select`` over its rows (``t``)."""
    tmp = path.with_name(path.name + ".new")
    with duckdb.connect() as con:
        con.execute(f"copy ({select.format(t=f'read_parquet({_lit(str(path))})')}) to {_lit(str(tmp))} (format parquet)")
    os.replace(tmp, path)


def _scan(folder: Path, wd: Workdir, **kwargs):
    return scan_publication(folder, bronze=wd.bronze, city=wd.city_meta, **kwargs)


def _first_parquet(folder: Path) -> Path:
    """The first published table that holds rows (a leak planted in an empty one plants nothing)."""
    return next(p for p in sorted((folder / "parquet").glob("*.parquet"))
                if duckdb.sql("select count(*) from read_parquet(?)", params=[str(p)]).fetchone()[0])


def _bronze_ids(wd: Workdir, partner: str, column: str) -> list[str]:
    with duckdb.connect() as con:
        rows = con.execute(
            f"select distinct {column} from read_parquet(?, hive_partitioning = false) order by 1 limit 3",
            [str(wd.bronze / "mds_trips" / f"partner={partner}" / "*.parquet")],
        ).fetchall()
    return [r[0] for r in rows]


def _findings(report, rule: str) -> list:
    return [f for f in report.findings if f.rule == rule]


# --- the real publication passes ----------------------------------------------------------------


def test_real_publication_has_no_findings(clean_report) -> None:
    assert clean_report.ok, "\n".join(f.describe() for f in clean_report.findings)
    assert clean_report.notes == []  # bronze, city and publication.json were all found


def test_scan_covers_every_table_of_the_warehouse_and_every_partner_export(published: Workdir, clean_report) -> None:
    record = json.loads((published.published / "publication.json").read_text())
    scanned = set(clean_report.tables)
    for table in record["tables"]:
        assert f"mobility.duckdb [{table}]" in scanned
        assert f"parquet/{table}.parquet [{table}]" in scanned
    for partner, held in record["partners"].items():
        for table in (*held["own_detail"], *held["consortium_aggregates"]):
            assert f"{PARTNERS_DIR}/{partner}/{EXPORT_DB} [{table}]" in scanned
        for table in held["consortium_aggregates"]:
            assert f"{PARTNERS_DIR}/{partner}/parquet/{table}.parquet [{table}]" in scanned
        for table in held["own_detail"]:  # a folder of partitions, scanned as one table
            assert f"{PARTNERS_DIR}/{partner}/parquet/{table} [{table}]" in scanned
    # the partners' own detail is there to be scanned: trip-level rows of both operators
    for partner in MDS_OPERATORS:
        assert record["partners"][partner]["own_detail"]["fct_trips"] > 0


def test_pseudonym_length_matches_landing() -> None:
    from ingest.landing import pseudonymise

    out = pseudonymise(pa.array(["a-trip"]), b"key").to_pylist()[0]
    assert len(out) == PSEUDONYM_HEX_LENGTH and int(out, 16) >= 0


# --- each kind of leak, planted in a copy, is reported ------------------------------------------


def test_id_column_name_is_reported(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_main(published, tmp_path / "pub")
    target = _first_parquet(folder)
    _rewrite_parquet(target, "select *, 'x' as device_id from {t}")
    report = _scan(folder, published)
    [finding] = _findings(report, "id_column")
    assert (finding.source, finding.table, finding.column) == (f"parquet/{target.name}", target.stem, "device_id")


def test_uuid_values_are_reported(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_main(published, tmp_path / "pub")
    target = _first_parquet(folder)
    planted = "6ddcc0ad-1d66-4046-bba4-cf1d4e6d9a3e"
    _rewrite_parquet(target, f"select *, {_lit(planted)} as note from {{t}}")
    [finding] = _findings(_scan(folder, published), "uuid_value")
    assert (finding.column, finding.example) == ("note", planted)


def test_pseudonym_shaped_values_are_reported(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_main(published, tmp_path / "pub")
    planted = secrets.token_hex(PSEUDONYM_HEX_LENGTH // 2)  # shaped like one, landed nowhere
    with duckdb.connect(str(folder / "mobility.duckdb")) as con:
        table = _first_parquet(folder).stem  # a table with rows
        con.execute(f'alter table "{table}" add column label varchar default {_lit(planted)}')
    report = _scan(folder, published)
    [finding] = _findings(report, "pseudonym_value")
    assert (finding.source, finding.table, finding.column, finding.example) == ("mobility.duckdb", table, "label", planted)
    assert not _findings(report, "bronze_id")


def test_landed_ids_are_reported(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_main(published, tmp_path / "pub")
    target = _first_parquet(folder)
    planted = _bronze_ids(published, "zoomride", "trip_id")[0]
    _rewrite_parquet(target, f"select *, {_lit(planted)} as ref from {{t}}")
    [finding] = _findings(_scan(folder, published), "bronze_id")
    assert (finding.column, finding.example) == ("ref", planted)


def test_fine_coordinates_are_reported_by_name_by_range_and_in_wkt(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_main(published, tmp_path / "pub")
    target = _first_parquet(folder)
    _rewrite_parquet(
        target,
        "select *, 41.88123 as start_lat, 41.881 as rounded_lat, -87.62781 as x, "
        "'POINT (-87.62781 41.88123)' as place from {t}",
    )
    found = {f.column for f in _findings(_scan(folder, published), "coordinate_precision")}
    assert found == {"start_lat", "x", "place"}  # 3 decimals (about 100 m) may be published


def test_timestamps_finer_than_the_grain_are_reported(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_main(published, tmp_path / "pub")
    target = _first_parquet(folder)
    _rewrite_parquet(
        target,
        "select *, timestamptz '2026-11-02 14:37:12+00' as start_at, timestamptz '2026-11-02 14:00:00+00' as hour_at, "
        "'2026-11-02T14:37:12Z' as seen from {t}",
    )
    report = _scan(folder, published)
    assert {f.column for f in _findings(report, "timestamp_grain")} == {"start_at", "seen"}

    # a table declared at day grain may not publish hours either
    record_path = folder / "publication.json"
    record = json.loads(record_path.read_text())
    record["grains"][target.stem] = "day"
    record_path.write_text(json.dumps(record))
    report = _scan(folder, published)
    assert {f.column for f in _findings(report, "timestamp_grain") if f.source.startswith("parquet")} == {
        "start_at", "hour_at", "seen"}


def test_small_counts_are_reported(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_main(published, tmp_path / "pub")
    record = json.loads((folder / "publication.json").read_text())
    with duckdb.connect(str(folder / "mobility.duckdb")) as con:
        # the first published count column of a table that holds rows
        table, count = next((t, c) for t in sorted(record["tables"]) for c in SUPPRESSION.get(t, {})
                            if c not in WITHHELD.get(t, ())
                            and con.execute(f'select count(*) from "{t}"').fetchone()[0])
        con.execute(f'update "{table}" set "{count}" = 3 where rowid = (select min(rowid) from "{table}")')
        con.execute(f'alter table "{table}" add column n_riders integer default 9')
        con.execute(f'alter table "{table}" add column neighborhood_key_id integer default 4')
    report = _scan(folder, published)
    found = {(f.source, f.table, f.column): f for f in _findings(report, "small_count")}
    assert set(found) == {("mobility.duckdb", table, count), ("mobility.duckdb", table, "n_riders")}
    assert found[("mobility.duckdb", table, count)].rows == 1
    assert found[("mobility.duckdb", table, count)].example == "3"
    # neither is small at k = 3; an integer named as an id is never taken for a count
    assert not _findings(_scan(folder, published, k=3), "small_count")


def _partition(folder: Path, table: str) -> Path:
    """The first Parquet file of a partner's detail relation (one file per partition)."""
    return sorted((folder / "parquet" / table).glob("*.parquet"))[0]


def test_another_partners_rows_in_an_export_are_reported(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_export(published, "scootco", tmp_path / "scootco")
    other = published.published / PARTNERS_DIR / "zoomride" / "parquet" / "fct_trips" / "*.parquet"
    target = _partition(folder, "fct_trips")
    _rewrite_parquet(target, f"select * from {{t}} union all select * from read_parquet({_lit(str(other))})")
    report = _scan(folder, published)
    [finding] = _findings(report, "other_partner_row")
    assert (finding.source, finding.table, finding.example) == ("parquet/fct_trips", "fct_trips", "zoomride")
    assert finding.rows > 0
    assert {f.column for f in _findings(report, "other_partner_id")} == {"trip_id"}  # zoomride's landed trip ids


def test_another_partners_rows_in_any_partition_of_an_export_are_reported(published: Workdir, tmp_path: Path) -> None:
    """Every file of a detail folder is scanned, not only the partitions the last publication wrote."""
    folder = _copy_export(published, "scootco", tmp_path / "scootco")
    other = published.published / PARTNERS_DIR / "zoomride" / "parquet" / "fct_trips" / "*.parquet"
    planted = folder / "parquet" / "fct_trips" / "2099-01-01.parquet"
    with duckdb.connect() as con:
        con.execute(f"copy (select * from read_parquet({_lit(str(other))})) to {_lit(str(planted))} (format parquet)")
    [finding] = _findings(_scan(folder, published), "other_partner_row")
    assert (finding.source, finding.table, finding.example) == ("parquet/fct_trips", "fct_trips", "zoomride")


def test_another_partners_ids_under_own_partner_id_are_reported(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_export(published, "scootco", tmp_path / "scootco")
    stolen = _bronze_ids(published, "zoomride", "device_id")[0]
    with duckdb.connect(str(folder / EXPORT_DB)) as con:
        con.execute(f"update stg_mds__trips set device_id = {_lit(stolen)} where rowid = 0")
    report = _scan(folder, published)
    assert not _findings(report, "other_partner_row")
    [finding] = _findings(report, "other_partner_id")
    assert (finding.source, finding.table, finding.column, finding.example) == (
        EXPORT_DB, "stg_mds__trips", "device_id", stolen)


def test_detail_without_partner_column_in_an_export_is_reported(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_export(published, "scootco", tmp_path / "scootco")
    for target in (folder / "parquet" / "fct_trips").glob("*.parquet"):
        _rewrite_parquet(target, "select * exclude (partner_id) from {t}")
    assert [(f.source, f.rule) for f in _scan(folder, published).findings] == [
        ("parquet/fct_trips", "missing_partner_column")]


def test_own_detail_is_allowed_in_its_own_export(published: Workdir) -> None:
    """Its own ids and trip times are the partner's data: scanned for isolation, not as aggregates."""
    folder = published.published / PARTNERS_DIR / "scootco"
    report = _scan(folder, published)
    assert report.ok, [f.describe() for f in report.findings]
    assert f"{EXPORT_DB} [fct_trips]" in report.tables


def test_unreadable_file_is_a_finding(published: Workdir, tmp_path: Path) -> None:
    folder = _copy_main(published, tmp_path / "pub")
    (folder / "parquet" / "broken.parquet").write_bytes(b"not parquet")
    [finding] = _scan(folder, published).findings
    assert (finding.source, finding.rule) == ("parquet/broken.parquet", "unreadable")


# --- the command --------------------------------------------------------------------------------


def test_command_exit_codes(published: Workdir, tmp_path: Path) -> None:
    from mobility.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["privacy-scan", "--workdir", str(published.root)], env={"COLUMNS": "200"})
    assert ok.exit_code == 0, ok.output
    assert "no findings" in ok.output

    folder = _copy_main(published, tmp_path / "pub")
    _rewrite_parquet(_first_parquet(folder), "select *, 41.88123 as lat from {t}")
    bad = runner.invoke(app, ["privacy-scan", str(folder), "--bronze", str(published.bronze),
                              "--city", str(published.city_meta)], env={"COLUMNS": "200"})
    assert bad.exit_code == 1, bad.output
    assert "coordinate_precision" in bad.output and "column lat" in bad.output and "1 finding(s)" in bad.output

    missing = runner.invoke(app, ["privacy-scan", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "not a folder" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScanError, match="no DuckDB or Parquet file"):
        scan_publication(empty)
