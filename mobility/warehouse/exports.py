"""Per-partner exports: a partner's own detail plus the consortium aggregates exactly as published.

DuckDB has no row-level security, so isolation comes from what each export file contains. For
every partner of the registry, one folder ``<partner_id>/`` holds a DuckDB file and Parquet:

- own detail: its rows of every ``fct_``/``stg_`` relation of the warehouse that carries a
  ``partner_id`` column (found by column, so new detail models are exported without code
  changes), with the pseudonymised ids as landed: never a row of another partner;
- consortium aggregates: every table of the new publication, copied as published (suppressed).

Exports are written by publication into its temporary tree and swapped in with it (see
``mobility.warehouse.publish``); nothing here touches the live publication.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from mobility import spatial

log = logging.getLogger(__name__)

PARTNERS_DIR = "partners"
EXPORT_DB = "mobility.duckdb"
EXPORT_RECORD = "export.json"
PARTNER_COLUMN = "partner_id"
DETAIL_PREFIXES = ("fct_", "stg_")
OWN_DETAIL, CONSORTIUM = "own_detail", "consortium_aggregates"


class ExportError(RuntimeError):
    """A partner export could not be built; publication stops and the previous one stays."""


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def relations_with_column(con, catalog: str, column: str, prefixes: Sequence[str]) -> list[str]:
    """Tables and views in ``catalog.main`` named with one of ``prefixes`` that have ``column``."""
    rows = con.execute(
        "select distinct table_name from duckdb_columns() where database_name = ? and schema_name = 'main' "
        "and column_name = ? order by table_name",
        [catalog, column],
    ).fetchall()
    return [r[0] for r in rows if r[0].startswith(tuple(prefixes))]


def _tables(con, catalog: str) -> list[str]:
    rows = con.execute(
        "select table_name from duckdb_tables() where database_name = ? and schema_name = 'main' order by 1",
        [catalog],
    ).fetchall()
    return [r[0] for r in rows]


def _columns(con, catalog: str, table: str) -> list[str]:
    rows = con.execute(
        "select column_name from duckdb_columns() where database_name = ? and schema_name = 'main' "
        "and table_name = ? order by column_index",
        [catalog, table],
    ).fetchall()
    return [r[0] for r in rows]


def _describe(con, table: str, columns: Iterable[str], doc: dict) -> None:
    if doc.get("description"):
        con.execute(f"comment on table main.{_ident(table)} is {_sql_string(doc['description'])}")
    for col in columns:
        text = doc.get("columns", {}).get(col)
        if text:
            con.execute(f"comment on column main.{_ident(table)}.{_ident(col)} is {_sql_string(text)}")


def write_partner_export(
    partner_id: str,
    folder: Path,
    *,
    warehouse: Path,
    publication: Path,
    docs: dict[str, dict],
    k: int,
    published_at: str,
) -> dict:
    """Write one partner's folder (DuckDB file, Parquet, export.json); return what it holds."""
    parquet = folder / "parquet"
    parquet.mkdir(parents=True)
    held: dict[str, dict[str, int]] = {OWN_DETAIL: {}, CONSORTIUM: {}}
    # spatial: staging views of the warehouse call its functions (st_point) when read
    con = spatial.connect(folder / EXPORT_DB)
    try:
        con.execute(f"attach {_sql_string(str(warehouse))} as wh (read_only)")
        con.execute(f"attach {_sql_string(str(publication))} as pub (read_only)")
        details = relations_with_column(con, "wh", PARTNER_COLUMN, DETAIL_PREFIXES)
        aggregates = _tables(con, "pub")
        clash = sorted(set(details) & set(aggregates))
        if clash:
            raise ExportError(f"{clash} are both partner detail and published aggregates; rename the detail model")
        for table in details:
            columns = _columns(con, "wh", table)
            con.execute(
                f"create table main.{_ident(table)} as select * from wh.main.{_ident(table)} "
                f"where {_ident(PARTNER_COLUMN)} = ?",
                [partner_id],
            )
            _describe(con, table, columns, docs.get(table, {}))
            held[OWN_DETAIL][table] = con.execute(f"select count(*) from main.{_ident(table)}").fetchone()[0]
        for table in aggregates:
            columns = _columns(con, "pub", table)
            con.execute(f"create table main.{_ident(table)} as select * from pub.main.{_ident(table)}")
            _describe(con, table, columns, docs.get(table, {}))
            held[CONSORTIUM][table] = con.execute(f"select count(*) from main.{_ident(table)}").fetchone()[0]
        for table in (*details, *aggregates):
            target = parquet / f"{table}.parquet"
            con.execute(f"copy main.{_ident(table)} to {_sql_string(str(target))} (format parquet)")
        con.execute("detach wh")
        con.execute("detach pub")
        con.execute("checkpoint")
    finally:
        con.close()
    record = {"partner_id": partner_id, "published_at": published_at, "k": k, **held}
    (folder / EXPORT_RECORD).write_text(json.dumps(record, indent=2))
    log.info("partner export %s: %s own detail row(s)", partner_id, sum(held[OWN_DETAIL].values()))
    return record


def write_partner_exports(
    root: Path,
    partners: Sequence[str],
    *,
    warehouse: Path,
    publication: Path,
    docs: dict[str, dict],
    k: int,
    published_at: str,
) -> dict[str, dict]:
    """One export folder per partner under ``root``; returns partner -> rows per table."""
    root.mkdir(parents=True)
    out = {}
    for partner_id in partners:
        if not partner_id or "/" in partner_id or partner_id.startswith("."):
            raise ExportError(f"partner id {partner_id!r} cannot name an export folder")
        record = write_partner_export(
            partner_id, root / partner_id, warehouse=warehouse, publication=publication, docs=docs, k=k,
            published_at=published_at,
        )
        out[partner_id] = {OWN_DETAIL: record[OWN_DETAIL], CONSORTIUM: record[CONSORTIUM]}
    return out
