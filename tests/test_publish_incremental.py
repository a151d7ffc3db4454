"""Republication builds each partner export on the live one: detail partitions (a batch's UTC day)
that did not change are kept as they are (hard links to the previous files, rows copied with the
previous DuckDB file), those that did (a new day, a corrected resubmission of a window) are written
again, and the result equals a publication written from scratch. The previous publication is
never modified on the way, and the privacy scan passes on the republication."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from fixtures_publication import END, MDS_OPERATORS, SCALE, SEED, START, TOKENS, publication, simulate_and_publish
from mobility.settings import Workdir
from mobility.warehouse.exports import EMPTY, EXPORT_DB, EXPORT_RECORD, OWN_DETAIL, PARTNERS_DIR
from mobility.warehouse.publish import publish

DAY1 = f"{START:%Y-%m-%d}"
DAY2_START = START + timedelta(days=1)
DAY2 = f"{DAY2_START:%Y-%m-%d}"
CORRECTED = "scootco"  # resubmits one window of the first day; zoomride's first day is unchanged


def _copy(src: Workdir, dest: Path) -> Workdir:
    shutil.copytree(src.root, dest, symlinks=True, ignore=shutil.ignore_patterns("airflow", "logs"))
    return Workdir.resolve(dest)


def _files(wd: Workdir) -> dict[str, os.stat_result]:
    """Every file of every partner export, by path relative to partners/, with its stat."""
    root = wd.published / PARTNERS_DIR
    return {str(p.relative_to(root)): p.stat() for p in sorted(root.rglob("*")) if p.is_file()}


def _resubmit_one_window(wd: Workdir, partner_id: str) -> str:
    """Land a corrected payload (one trip fewer) for the first window of the first day; return its label."""
    from ingest.contracts import load_contract
    from ingest.landing import Window, land_batch
    from mobility.registry import load_registry

    partner = load_registry().partner(partner_id)
    feed = partner.feed("mds_trips")
    window = Window.hour(START)
    [raw_file] = sorted((wd.raw / partner_id / "mds_trips" / window.label).glob("*.json"))
    payload = json.loads(raw_file.read_bytes())
    assert len(payload["trips"]) > 1
    payload["trips"] = payload["trips"][1:]
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**TOKENS, **wd.env()}.items():
            mp.setenv(name, value)
        manifest = land_batch(wd, partner=partner, feed=feed, contract=load_contract(feed.contract), window=window,
                              raw=json.dumps(payload).encode(), source="test-correction")
    assert manifest["outcome"] == "accepted", manifest
    return window.label


@pytest.fixture(scope="module")
def republished(tmp_path_factory) -> dict:
    """The shared publication copied, a window of its day corrected, a second day pulled, built, gated
    and published incrementally; plus the same warehouse published from scratch."""
    wd = _copy(publication(tmp_path_factory), tmp_path_factory.mktemp("republish") / "wd")
    before = _files(wd)
    live_before = (wd.published / PARTNERS_DIR).resolve()
    _resubmit_one_window(wd, CORRECTED)
    simulate_and_publish(wd, DAY2_START, DAY2_START + (END - START) / 2, seed=SEED, scale=SCALE)
    scratch = _copy(wd, tmp_path_factory.mktemp("scratch") / "wd")
    publish(scratch, k=10, reuse=False)
    return {"wd": wd, "scratch": scratch, "before": before, "live_before": live_before}


def test_unchanged_partitions_are_kept_and_changed_ones_written(republished: dict) -> None:
    wd, before = republished["wd"], republished["before"]
    after = _files(wd)
    unchanged = "zoomride/parquet/fct_trips/{day}.parquet"
    # zoomride's first day: the same file (a hard link), not a rewrite. (Staging views are rewritten
    # whole here: their SQL names the lake's path, and this workdir is a copy in another folder.)
    assert after[unchanged.format(day=DAY1)].st_ino == before[unchanged.format(day=DAY1)].st_ino
    # scootco resubmitted a window of that day: its partition is written again
    corrected = f"{CORRECTED}/parquet/fct_trips/{DAY1}.parquet"
    assert after[corrected].st_ino != before[corrected].st_ino
    # both have the new day, which they did not have before
    for partner in MDS_OPERATORS:
        new_day = f"{partner}/parquet/fct_trips/{DAY2}.parquet"
        assert new_day not in before and new_day in after
    # an export's DuckDB file is always a new file (copied, then updated): the live one is never written
    for partner in MDS_OPERATORS:
        assert after[f"{partner}/{EXPORT_DB}"].st_ino != before[f"{partner}/{EXPORT_DB}"].st_ino
    # a partner without detail keeps the same empty file for each relation
    assert after[f"citybikes/parquet/fct_trips/{EMPTY}.parquet"].st_ino == before[
        f"citybikes/parquet/fct_trips/{EMPTY}.parquet"].st_ino
    # the previous export tree was swapped out and removed once the new one was complete
    assert not republished["live_before"].exists()


def test_the_corrected_window_replaces_its_rows(republished: dict) -> None:
    wd = republished["wd"]
    export = wd.published / PARTNERS_DIR / CORRECTED / EXPORT_DB
    query = "select batch_id, count(*) from fct_trips group by all order by all"
    with duckdb.connect(str(wd.warehouse), read_only=True) as con:
        expected = con.execute(query.replace("fct_trips", f"fct_trips where partner_id = '{CORRECTED}'")).fetchall()
    with duckdb.connect(str(export), read_only=True) as con:
        assert con.execute(query).fetchall() == expected
        window = f"{START:%Y-%m-%dT%H}"
        batches = [b for b, _ in expected if f":{window}:" in b]
        assert len(batches) == 1  # the corrected batch only, the one it replaced is gone


def _content(folder: Path) -> dict:
    """Every table of an export (DuckDB file and Parquet) as sorted text rows, with its comments."""
    out: dict = {}
    with duckdb.connect(str(folder / EXPORT_DB), read_only=True) as con:
        for (table,) in con.execute("select table_name from duckdb_tables() order by 1").fetchall():
            rows = con.execute(f'select columns(*)::varchar from "{table}" order by all').fetchall()
            parquet = folder / "parquet" / table
            source = str(parquet / "*.parquet") if parquet.is_dir() else str(parquet) + ".parquet"
            files = con.execute(
                "select columns(*)::varchar from read_parquet(?) order by all", [source]).fetchall()
            if parquet.is_dir():  # own detail: its partitions add up to the table
                assert files == rows, table
            out[table], out[f"{table} (parquet)"] = rows, files
        out["comments"] = con.execute(
            "select table_name, column_name, comment, data_type from duckdb_columns() order by all").fetchall()
        out["table_comments"] = con.execute("select table_name, comment from duckdb_tables() order by all").fetchall()
    out["partitions"] = sorted(str(p.relative_to(folder)) for p in (folder / "parquet").rglob("*.parquet"))
    return out


def test_incremental_exports_equal_exports_written_from_scratch(republished: dict) -> None:
    wd, scratch = republished["wd"], republished["scratch"]
    partners = sorted(p.name for p in (wd.published / PARTNERS_DIR).iterdir())
    assert partners == sorted(p.name for p in (scratch.published / PARTNERS_DIR).iterdir())
    for partner in partners:
        incremental = wd.published / PARTNERS_DIR / partner
        fresh = scratch.published / PARTNERS_DIR / partner
        assert _content(incremental) == _content(fresh), partner
        held, expected = (json.loads((f / EXPORT_RECORD).read_text()) for f in (incremental, fresh))
        assert held[OWN_DETAIL] == expected[OWN_DETAIL]
        assert held["detail_partitions"] == expected["detail_partitions"]
    assert json.loads((wd.published / "publication.json").read_text())["partners"]["scootco"][OWN_DETAIL]["fct_trips"] > 0


def test_republication_passes_the_privacy_scan(republished: dict) -> None:
    from mobility.warehouse.privacy_scan import scan_publication

    report = scan_publication(republished["wd"].published)
    assert report.ok, [f.describe() for f in report.findings]
    assert f"{PARTNERS_DIR}/scootco/parquet/fct_trips [fct_trips]" in report.tables
