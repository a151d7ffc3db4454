"""Publish the analyst warehouse: the marts only, k-suppressed, documented, read-only, atomic.

Everything is written beside the live publication under temporary names first; the live files
are swapped in with ``os.replace`` (atomic on one filesystem) only once all of it is complete, so
an error at any point leaves the previous publication exactly as it was. The database is swapped
first (it is the publication of record), then the ``parquet`` symlink (one rename swaps the whole
set of files), then the ``partners`` symlink (every partner export, see ``exports``), then
``publication.json``, which records what was published.

Partner exports are built on the live ones (``reuse=True``, the default): each starts from a copy
of the previous export's DuckDB file and hard links to its Parquet partitions, and only the detail
partitions whose batches changed are written again; the live files are only read. Every DuckDB
connection here holds the pipeline's memory cap and spills into the workdir
(``Workdir.duckdb_config``), as the dbt build does. ``reuse=False``
writes every export from scratch (e.g. after re-landing batches under a rotated pseudonymisation
key, which changes rows without changing batch ids). Both give the same publication.

Each table's published time grain (``day`` or ``hour``: no timestamp finer than it) is declared in
its dbt model's ``meta: {published_grain: ...}`` and recorded in ``publication.json`` for the
privacy scan; undeclared tables get the consortium's finest published grain, the hour.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from mobility.settings import Workdir
from mobility.warehouse.exports import PARTNERS_DIR, write_partner_exports
from mobility.warehouse.suppression import DEFAULT_K, WITHHELD, suppressed_select

log = logging.getLogger(__name__)

PUBLISHED_PREFIX = "mart_"
READ_ONLY = 0o444
GRAINS = ("day", "hour")
DEFAULT_GRAIN = "hour"


class PublishError(RuntimeError):
    """Publication could not be built; the previous publication is untouched."""


@dataclass
class PublishResult:
    published_at: str
    path: Path
    parquet_dir: Path
    k: int
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows
    grains: dict[str, str] = field(default_factory=dict)  # table -> published time grain
    partners: dict[str, dict] = field(default_factory=dict)  # partner -> rows per exported table

    def summary(self) -> dict:
        return {
            "published_at": self.published_at,
            "path": str(self.path),
            "parquet_dir": str(self.parquet_dir),
            "k": self.k,
            "tables": dict(self.tables),
            "grains": dict(self.grains),
            "partners": dict(self.partners),
        }


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_descriptions(manifest_path: Path) -> dict[str, dict]:
    """Model name -> {"description", "columns": {name: description}, "grain"} from dbt's manifest.json."""
    if not manifest_path.exists():
        raise PublishError(f"no dbt manifest at {manifest_path}: run the dbt build first")
    manifest = json.loads(manifest_path.read_text())
    out: dict[str, dict] = {}
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") == "model":
            meta = {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}
            grain = meta.get("published_grain", DEFAULT_GRAIN)
            if grain not in GRAINS:
                raise PublishError(f"model {node['name']}: meta published_grain {grain!r} is not one of {GRAINS}")
            out[node["name"]] = {
                "grain": grain,
                "description": (node.get("description") or "").strip(),
                "columns": {c: (v.get("description") or "").strip() for c, v in node.get("columns", {}).items()},
            }
    return out


def _published_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "select table_name from duckdb_tables() where database_name = 'wh' and schema_name = 'main' "
        f"and starts_with(table_name, {_sql_string(PUBLISHED_PREFIX)}) order by table_name"
    ).fetchall()
    return [r[0] for r in rows]


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "select column_name from duckdb_columns() where database_name = 'wh' and schema_name = 'main' "
        f"and table_name = {_sql_string(table)} order by column_index"
    ).fetchall()
    return [r[0] for r in rows]


def _build(wd: Workdir, db_tmp: Path, parquet_tmp: Path, k: int, docs: dict[str, dict]) -> dict[str, int]:
    """Write the complete new publication under temporary names; return rows per table."""
    parquet_tmp.mkdir(parents=True)
    tables: dict[str, int] = {}
    con = duckdb.connect(str(db_tmp), config=wd.duckdb_config())
    try:
        con.execute(f"attach {_sql_string(str(wd.warehouse))} as wh (read_only)")
        names = _published_tables(con)
        if not names:
            raise PublishError(f"no {PUBLISHED_PREFIX}* tables in {wd.warehouse}")
        con.execute("begin transaction")  # one commit for the whole file, not one per table and comment
        for table in names:
            columns = _columns(con, table)
            select = suppressed_select(table, columns, k, schema="wh.main")
            con.execute(f'create table main."{table}" as {select}')
            doc = docs.get(table, {})
            if doc.get("description"):
                con.execute(f'comment on table main."{table}" is {_sql_string(doc["description"])}')
            for col in (c for c in columns if c not in WITHHELD.get(table, ())):
                text = doc.get("columns", {}).get(col)
                if text:
                    con.execute(f'comment on column main."{table}"."{col}" is {_sql_string(text)}')
            tables[table] = con.execute(f'select count(*) from main."{table}"').fetchone()[0]
            target = parquet_tmp / f"{table}.parquet"
            con.execute(f'copy main."{table}" to {_sql_string(str(target))} (format parquet)')
            log.info("prepared %s: %d rows", table, tables[table])
        con.execute("commit")
        con.execute("detach wh")
        con.execute("checkpoint")  # everything in the main file, no WAL left beside it
    finally:
        con.close()
    return tables


def _swap_link(published: Path, name: str, folder_tmp: Path) -> Path:
    """Point published/<name> at the new folder by replacing a symlink (atomic), then drop the old one."""
    link = published / name
    old_target = link.resolve() if link.is_symlink() else None
    if link.exists() and not link.is_symlink():
        # a plain folder from an older layout: move it aside so the link can take its name
        aside = published / f".{name}-legacy-{uuid.uuid4().hex[:8]}"
        os.replace(link, aside)
        old_target = aside
    tmp_link = published / f".{name}-link-{uuid.uuid4().hex[:8]}"
    tmp_link.symlink_to(folder_tmp.name)
    os.replace(tmp_link, link)
    if old_target is not None and old_target != folder_tmp.resolve():
        shutil.rmtree(old_target, ignore_errors=True)
    return link


def _read_only_tree(folder: Path) -> None:
    """Every file read-only; folders stay writable so the next publication can remove them."""
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(READ_ONLY)


def _registry_partners() -> list[str]:
    from mobility.registry import load_registry

    return [p.id for p in load_registry().partners]


def publish(
    workdir: Workdir | str | Path, k: int = DEFAULT_K, partners: Sequence[str] | None = None, *, reuse: bool = True
) -> PublishResult:
    """Replace DIR/published with the k-suppressed marts of the dbt warehouse and one export per
    partner (default: every partner of the registry), atomically.

    ``reuse``: build each partner export on the live one (unchanged detail partitions are kept,
    see ``exports``); False writes every export from scratch. Both publish the same data."""
    wd = workdir if isinstance(workdir, Workdir) else Workdir.resolve(workdir)
    if not wd.warehouse.exists():
        raise PublishError(f"no warehouse at {wd.warehouse}: run the dbt build first")
    docs = load_descriptions(wd.dbt_target / "manifest.json")
    wd.published.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc)
    token = f"{stamp:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    db_tmp = wd.published / f".mobility.duckdb.tmp-{token}"
    parquet_tmp = wd.published / f".parquet-{token}"
    partners_tmp = wd.published / f".{PARTNERS_DIR}-{token}"
    record_tmp = wd.published / f".publication.json.tmp-{token}"
    partner_ids = list(_registry_partners() if partners is None else partners)
    try:
        tables = _build(wd, db_tmp, parquet_tmp, k, docs)
        live_partners = wd.published / PARTNERS_DIR
        exports = write_partner_exports(
            partners_tmp, partner_ids, warehouse=wd.warehouse, publication=db_tmp, docs=docs, k=k,
            published_at=stamp.isoformat(), previous=live_partners if reuse and live_partners.is_dir() else None,
            publication_parquet=parquet_tmp, duckdb_config=wd.duckdb_config(),
        )
        for f in parquet_tmp.iterdir():
            f.chmod(READ_ONLY)
        _read_only_tree(partners_tmp)
        db_tmp.chmod(READ_ONLY)
        result = PublishResult(
            published_at=stamp.isoformat(), path=wd.published_db, parquet_dir=wd.published / "parquet", k=k,
            tables=tables, grains={t: docs.get(t, {}).get("grain", DEFAULT_GRAIN) for t in tables},
            partners=exports,
        )
        record_tmp.write_text(json.dumps(result.summary(), indent=2))
    except BaseException:
        for path in (db_tmp, db_tmp.with_name(db_tmp.name + ".wal"), record_tmp):
            path.unlink(missing_ok=True)
        shutil.rmtree(parquet_tmp, ignore_errors=True)
        shutil.rmtree(partners_tmp, ignore_errors=True)
        log.exception("publication failed; the previous publication is unchanged")
        raise
    # the swap: four renames, nothing left to fail in between but the renames themselves
    os.replace(db_tmp, wd.published_db)
    _swap_link(wd.published, "parquet", parquet_tmp)
    _swap_link(wd.published, PARTNERS_DIR, partners_tmp)
    os.replace(record_tmp, wd.published / "publication.json")
    log.info("published %d table(s) and %d partner export(s) to %s (k=%d)", len(tables), len(exports),
             wd.published, k)
    return result
