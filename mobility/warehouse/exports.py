"""Per-partner exports: a partner's own detail plus the consortium aggregates exactly as published.

DuckDB has no row-level security, so isolation comes from what each export file contains. For
every partner of the registry, one folder ``<partner_id>/`` holds a DuckDB file and Parquet:

- own detail: its rows of every ``fct_``/``stg_`` relation of the warehouse that carries a
  ``partner_id`` column (found by column, so new detail models are exported without code
  changes), with the pseudonymised ids as landed: never a row of another partner;
- consortium aggregates: every table of the new publication, copied as published (suppressed).

Parquet: ``parquet/<aggregate>.parquet`` (hard links to the publication's own files: the same
bytes), and one folder per detail relation, ``parquet/<relation>/<partition>.parquet``.

Detail is published incrementally. A partition is the UTC day of the window each row's batch
covers (``batch_id`` is ``<partner>:<feed>:<window label>:...`` and every window label starts
with its day; ``undated`` if it does not). Its fingerprint is its batch ids, row count and load
times: batches are immutable (a corrected resubmission of a window is a new batch id, and
``fct_trips`` replaces the window's rows), so a partition whose fingerprint is unchanged holds
the same rows. The changed partitions of every partner are written as Parquet in one pass over
the warehouse per relation (one partitioned COPY, by partner and partition, no intermediate
table). Each export starts from a copy of the previous export's DuckDB file (never the file
itself: the live publication is not touched) in which only the partitions whose fingerprint
changed are deleted and loaded again from those Parquet files; its Parquet files of unchanged
partitions are hard links to the previous ones. (The DuckDB file holds its detail as tables, not
as views over the Parquet: DuckDB resolves a view's relative file paths against the reader's
working directory, not the database file's folder, so such a file would not work standalone
wherever the partner puts the export.) A relation is rewritten whole when its definition
changed (columns, types, view SQL), when it has no ``batch_id``, or when it is a table without
``loaded_at`` (its rows could be rebuilt under the same batches). ``reuse=False`` (``publish(..., reuse=False)``)
writes everything from scratch; both give the same export.

Exports are written by publication into its temporary tree and swapped in with it (see
``mobility.warehouse.publish``); nothing here touches the live publication.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mobility import spatial

log = logging.getLogger(__name__)

PARTNERS_DIR = "partners"
EXPORT_DB = "mobility.duckdb"
EXPORT_RECORD = "export.json"
PARTNER_COLUMN = "partner_id"
BATCH_COLUMN = "batch_id"
LOADED_COLUMN = "loaded_at"
DETAIL_PREFIXES = ("fct_", "stg_")
OWN_DETAIL, CONSORTIUM = "own_detail", "consortium_aggregates"
DETAIL_STATE = "detail_partitions"  # export.json: relation -> signature and partition fingerprints
STATE_VERSION = 1
WHOLE = "all"  # the one partition of a relation without batch ids
EMPTY = "empty"  # the file of a relation the partner has no row of (its columns, no rows)

# the window's UTC day, from the batch id; SQL over a column holding batch ids
_DAY_RE = r":(\d{4}-\d{2}-\d{2})"


def partition_sql(column: str) -> str:
    return f"coalesce(nullif(regexp_extract({column}, '{_DAY_RE}', 1), ''), 'undated')"


class ExportError(RuntimeError):
    """A partner export could not be built; publication stops and the previous one stays."""


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_list(values: Iterable[str]) -> str:
    items = [_sql_string(v) for v in values]
    return f"({', '.join(items)})" if items else "(null)"


def relations_with_column(con, catalog: str, column: str, prefixes: Sequence[str]) -> list[str]:
    """Tables and views in ``catalog.main`` named with one of ``prefixes`` that have ``column``."""
    rows = con.execute(
        "select distinct table_name from duckdb_columns() where database_name = "
        f"{_sql_string(catalog)} and schema_name = 'main' and column_name = {_sql_string(column)} order by table_name"
    ).fetchall()
    return [r[0] for r in rows if r[0].startswith(tuple(prefixes))]


def _tables(con, catalog: str) -> list[str]:
    rows = con.execute(
        f"select table_name from duckdb_tables() where database_name = {_sql_string(catalog)} "
        "and schema_name = 'main' order by 1"
    ).fetchall()
    return [r[0] for r in rows]


def _all_columns(con, catalog: str) -> dict[str, list[tuple[str, str]]]:
    """Table or view -> its (column, type) pairs, for every relation of ``catalog.main``, in one query."""
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, type_ in con.execute(
        f"select table_name, column_name, data_type from duckdb_columns() where database_name = {_sql_string(catalog)} "
        "and schema_name = 'main' order by table_name, column_index"
    ).fetchall():
        out.setdefault(table, []).append((column, type_))
    return out


def _describe(con, relation: str, columns: Iterable[str], doc: dict) -> None:
    """Table and column comments from dbt's docs; ``relation`` is the qualified, quoted table name."""
    if doc.get("description"):
        con.execute(f"comment on table {relation} is {_sql_string(doc['description'])}")
    for col in columns:
        text = doc.get("columns", {}).get(col)
        if text:
            con.execute(f"comment on column {relation}.{_ident(col)} is {_sql_string(text)}")


# --- what the warehouse holds: detail relations and their partitions, for every partner at once ---


@dataclass
class Partition:
    rows: int
    fingerprint: str | None  # None: not reusable, always rewritten
    batches: list[str] = field(default_factory=list)


@dataclass
class DetailRelation:
    name: str
    columns: list[str]
    signature: str  # changes when the relation's definition does
    reusable: bool  # partitioned by batch day, unchanged partitions kept
    partitions: dict[str, dict[str, Partition]] = field(default_factory=dict)  # partner -> partition -> state

    def of(self, partner_id: str) -> dict[str, Partition]:
        return self.partitions.get(partner_id, {})


def detail_relations(con, catalog: str = "wh") -> dict[str, DetailRelation]:
    """Every partner-detail relation of ``catalog`` with its partitions per partner (one scan of its
    batch ids, grouped by batch first, for all partners)."""
    views = dict(con.execute(
        f"select view_name, sql from duckdb_views() where database_name = {_sql_string(catalog)} "
        "and schema_name = 'main'"
    ).fetchall())
    out: dict[str, DetailRelation] = {}
    all_columns = _all_columns(con, catalog)
    for name in relations_with_column(con, catalog, PARTNER_COLUMN, DETAIL_PREFIXES):
        typed = all_columns[name]
        columns = [c for c, _ in typed]
        kind = "view" if name in views else "table"
        signature = hashlib.sha256(json.dumps([kind, typed, views.get(name)]).encode()).hexdigest()[:32]
        batched = BATCH_COLUMN in columns
        reusable = batched and (kind == "view" or LOADED_COLUMN in columns)
        relation = DetailRelation(name, columns, signature, reusable)
        source = f"{catalog}.main.{_ident(name)}"
        if batched:
            loaded = (f"min({_ident(LOADED_COLUMN)})::varchar || '/' || max({_ident(LOADED_COLUMN)})::varchar"
                      if LOADED_COLUMN in columns else "''")
            rows = con.execute(f"""
                with batches as (
                    select {_ident(PARTNER_COLUMN)} as partner_id, {_ident(BATCH_COLUMN)} as batch_id,
                        count(*) as n, {loaded} as loaded
                    from {source} group by all
                )
                select partner_id, {partition_sql('batch_id')} as part, sum(n)::bigint,
                    list(batch_id order by batch_id),
                    md5(string_agg(coalesce(batch_id, '<null>') || '=' || n || '@' || coalesce(loaded, ''), ','
                        order by batch_id))
                from batches group by all
            """).fetchall()
            for partner, part, n, batches, digest in rows:
                relation.partitions.setdefault(partner, {})[part] = Partition(
                    int(n), digest if reusable else None, [b for b in batches if b is not None])
        else:
            for partner, n in con.execute(
                f"select {_ident(PARTNER_COLUMN)}, count(*) from {source} group by all"
            ).fetchall():
                relation.partitions.setdefault(partner, {})[WHOLE] = Partition(int(n), None)
        out[name] = relation
    return out


# --- one partner's export ----------------------------------------------------------------------


def _previous_state(previous: Path | None) -> dict | None:
    """The previous export's record, if its DuckDB file and detail state can be built upon."""
    if previous is None or not (previous / EXPORT_DB).is_file():
        return None
    try:
        record = json.loads((previous / EXPORT_RECORD).read_text())
    except (OSError, ValueError):
        return None
    state = record.get(DETAIL_STATE)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return None
    return state


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: a copy is as good, only slower
        shutil.copyfile(src, dst)


def _write_partitions(con, select: str, folder: Path, parts: list[str]) -> None:
    """Write the rows of ``select`` (which has a ``__partition`` column) as ``folder/<part>.parquet``
    for each of ``parts``, in one COPY; the partition column is not written."""
    if not parts:
        return
    staging = folder / ".partitions"
    con.execute(
        f"copy (select * from ({select}) where __partition in {_sql_list(parts)}) to {_sql_string(str(staging))} "
        "(format parquet, partition_by (__partition), write_partition_columns false)"
    )
    for name in parts:
        written = sorted((staging / f"__partition={name}").glob("*.parquet"))
        if len(written) != 1:
            raise ExportError(f"{folder.name}: expected one Parquet file for partition {name}, found {len(written)}")
        os.replace(written[0], folder / f"{name}.parquet")
    shutil.rmtree(staging)


@dataclass
class _Plan:
    """What one partner's export does with one detail relation."""

    incremental: bool  # build on the previous export's table; else written whole from the warehouse
    kept: list[str]  # partitions kept as they are (rows in the copied DuckDB file, Parquet hard-linked)
    stale: list[str]  # partitions whose rows are deleted (changed or gone)
    fresh: list[str]  # partitions written (their rows from the warehouse)


def _plan(relation: DetailRelation, partner_id: str, prev: dict | None, previous: Path | None) -> _Plan:
    current = relation.of(partner_id)
    before = (prev or {}).get("relations", {}).get(relation.name)
    if not (relation.reusable and before is not None and before.get("signature") == relation.signature):
        return _Plan(False, [], [], sorted(current))
    prev_parts: dict[str, dict] = before.get("partitions", {})
    old_folder = previous / "parquet" / relation.name
    kept = sorted(
        p for p, now in current.items()
        if now.fingerprint is not None and prev_parts.get(p, {}).get("fingerprint") == now.fingerprint
        and (old_folder / f"{p}.parquet").is_file()
    )
    stale = sorted((set(prev_parts) | set(current)) - set(kept))
    return _Plan(True, kept, stale, sorted(set(current) - set(kept)))


def _batch_filter(batches: list[str]) -> str:
    """SQL selecting rows of ``batches``: the IN list, behind one range per batch-id prefix (partner and
    feed, before the window's day). Ranges reach a Parquet scan as filters on its row-group statistics
    (a bronze file holds one batch), so files of other days are skipped unread; an IN list does not."""
    groups: dict[str, list[str]] = {}
    for batch in batches:
        found = re.search(_DAY_RE, batch)
        groups.setdefault(batch[: found.start()] if found else batch, []).append(batch)
    column = _ident(BATCH_COLUMN)
    ranges = " or ".join(
        f"{column} between {_sql_string(min(ids))} and {_sql_string(max(ids))}" for ids in groups.values()
    )
    return f"({ranges}) and {column} in {_sql_list(batches)}"


def _changed_partitions(
    con, detail: dict[str, DetailRelation], plans: dict[str, dict[str, _Plan]], staging: Path
) -> dict[tuple[str, str, str], Path]:
    """Write the partitions some export rebuilds incrementally as Parquet, every partner's at once:
    one read of the changed batches per relation and one partitioned COPY (by partner and
    partition), no intermediate table. (relation, partner, partition) -> its Parquet file, which
    the partner's export then moves into place and loads into its DuckDB table."""
    out: dict[tuple[str, str, str], Path] = {}
    for table, relation in detail.items():
        wanted = sorted({
            (partner, p) for partner, tables in plans.items() if tables[table].incremental for p in tables[table].fresh
        })
        if not wanted:
            continue
        batches = sorted({b for partner, p in wanted for b in relation.of(partner)[p].batches})
        keys = ", ".join(f"({_sql_string(partner)}, {_sql_string(p)}, '{i}')" for i, (partner, p) in enumerate(wanted))
        folder = staging / table
        staging.mkdir(exist_ok=True)  # DuckDB's COPY makes the folder, not its parents
        # one folder per (partner, partition), named by its index (a partner id or partition label
        # never has to survive hive-style path escaping); only the key column is left out of the files
        con.execute(
            f"copy (select changed.* exclude (__partition), wanted.w_key as __key "
            f"from (select *, {partition_sql(_ident(BATCH_COLUMN))} as __partition from wh.main.{_ident(table)} "
            f"where {_batch_filter(batches)}) as changed "
            f"join (values {keys}) as wanted(w_partner, w_part, w_key) "
            f"on changed.{_ident(PARTNER_COLUMN)} = wanted.w_partner and changed.__partition = wanted.w_part) "
            f"to {_sql_string(str(folder))} (format parquet, partition_by (__key), write_partition_columns false)"
        )
        for i, (partner, p) in enumerate(wanted):
            written = sorted((folder / f"__key={i}").glob("*.parquet"))
            if len(written) != 1:
                raise ExportError(f"{partner}: expected one Parquet file for {table} partition {p}, found {len(written)}")
            out[(table, partner, p)] = written[0]
    return out


def _export_into(
    con,
    partner_id: str,
    folder: Path,
    *,
    docs: dict[str, dict],
    detail: dict[str, DetailRelation],
    plans: dict[str, _Plan],
    changed: dict[tuple[str, str, str], Path],
    aggregates: dict[str, list[str]],
    previous: Path | None,
    publication_parquet: Path | None,
) -> tuple[dict, dict, int, int]:
    """Fill ``folder`` for one partner through ``con``, which has the warehouse attached as ``wh`` and
    the new publication as ``pub``; return (rows held, detail state, partitions reused, written)."""
    parquet = folder / "parquet"
    parquet.mkdir(parents=True)
    held: dict[str, dict[str, int]] = {OWN_DETAIL: {}, CONSORTIUM: {}}
    state: dict = {"version": STATE_VERSION, "relations": {}}
    if any(plan.incremental for plan in plans.values()):
        shutil.copyfile(previous / EXPORT_DB, folder / EXPORT_DB)  # a new file: the old one is never written
    reused = rewritten = 0
    partner = _sql_string(partner_id)
    con.execute(f"attach {_sql_string(str(folder / EXPORT_DB))} as export")
    try:
        con.execute("begin transaction")  # one commit for the whole export, not one per statement
        existing = set(_tables(con, "export"))
        for table in sorted(existing - set(detail)):  # earlier aggregates, relations gone from the warehouse
            con.execute(f"drop table export.main.{_ident(table)}")
        for table, columns in aggregates.items():
            target = f"export.main.{_ident(table)}"
            con.execute(f"create table {target} as select * from pub.main.{_ident(table)}")
            _describe(con, target, columns, docs.get(table, {}))
            held[CONSORTIUM][table] = con.execute(f"select count(*) from {target}").fetchone()[0]
            out = parquet / f"{table}.parquet"
            if publication_parquet is not None and (publication_parquet / out.name).is_file():
                _link_or_copy(publication_parquet / out.name, out)
            else:
                con.execute(f"copy {target} to {_sql_string(str(out))} (format parquet)")
        for table, relation in detail.items():
            target, source = f"export.main.{_ident(table)}", f"wh.main.{_ident(table)}"
            current = relation.of(partner_id)
            plan = plans[table]
            if plan.incremental and table not in existing:
                raise ExportError(f"{previous}: {EXPORT_RECORD} lists {table}, its {EXPORT_DB} does not hold it")
            if plan.incremental:
                if plan.stale:
                    con.execute(f"delete from {target} where {partition_sql(_ident(BATCH_COLUMN))} in {_sql_list(plan.stale)}")
                files = [changed[(table, partner_id, p)] for p in plan.fresh]
                if files:  # the partitions' Parquet, written for every partner at once, is the one source
                    listed = ", ".join(_sql_string(str(f)) for f in files)
                    con.execute(f"insert into {target} by name select * from read_parquet([{listed}], hive_partitioning = false)")
            else:
                if table in existing:
                    con.execute(f"drop table {target}")
                # a partner without rows here gets the relation's columns without reading it
                where = f"{_ident(PARTNER_COLUMN)} = {partner}" if current else "false"
                con.execute(f"create table {target} as select * from {source} where {where}")
                _describe(con, target, relation.columns, docs.get(table, {}))
                batched = BATCH_COLUMN in relation.columns
                fresh = f"select *, {partition_sql(_ident(BATCH_COLUMN)) if batched else _sql_string(WHOLE)} " \
                        f"as __partition from {target}"
            rows = con.execute(f"select count(*) from {target}").fetchone()[0]
            expected = sum(p.rows for p in current.values())
            if rows != expected:
                raise ExportError(f"{partner_id}: {table} holds {rows} row(s), the warehouse {expected}")
            held[OWN_DETAIL][table] = rows
            out = parquet / table
            out.mkdir()
            for p in plan.kept:
                _link_or_copy(previous / "parquet" / table / f"{p}.parquet", out / f"{p}.parquet")
            if current and plan.incremental:
                for p in plan.fresh:
                    os.replace(changed[(table, partner_id, p)], out / f"{p}.parquet")
            elif current:
                _write_partitions(con, fresh, out, plan.fresh)
            elif plan.incremental and (previous / "parquet" / table / f"{EMPTY}.parquet").is_file():
                _link_or_copy(previous / "parquet" / table / f"{EMPTY}.parquet", out / f"{EMPTY}.parquet")
            else:  # no row of this partner: the relation's columns, so every table can be read
                con.execute(f"copy (select * from {target} limit 0) to "
                            f"{_sql_string(str(out / f'{EMPTY}.parquet'))} (format parquet)")
            reused += len(plan.kept)
            rewritten += len(plan.fresh)
            state["relations"][table] = {
                "signature": relation.signature,
                "partitions": {p: {"rows": now.rows, "fingerprint": now.fingerprint}
                               for p, now in sorted(current.items())},
            }
        con.execute("commit")
        con.execute("checkpoint export")
    except BaseException:
        try:
            con.execute("rollback")
        except Exception:  # noqa: BLE001 - no transaction left open: nothing to roll back
            pass
        raise
    finally:
        con.execute("detach export")
    return held, state, reused, rewritten


def _write_record(folder: Path, partner_id: str, published_at: str, k: int, held: dict, state: dict) -> dict:
    record = {"partner_id": partner_id, "published_at": published_at, "k": k, **held, DETAIL_STATE: state}
    (folder / EXPORT_RECORD).write_text(json.dumps(record, indent=2))
    return record


def _connect(warehouse: Path, publication: Path, config: dict[str, str]):
    # spatial: staging views of the warehouse call its functions (st_point) when read; config: the
    # pipeline's memory cap and spill folder, for every export is written through this connection
    con = spatial.connect(config=config)
    con.execute(f"attach {_sql_string(str(warehouse))} as wh (read_only)")
    con.execute(f"attach {_sql_string(str(publication))} as pub (read_only)")
    return con


def write_partner_exports(
    root: Path,
    partners: Sequence[str],
    *,
    warehouse: Path,
    publication: Path,
    docs: dict[str, dict],
    k: int,
    published_at: str,
    duckdb_config: dict[str, str],
    previous: Path | None = None,
    publication_parquet: Path | None = None,
) -> dict[str, dict]:
    """One export folder per partner under ``root``; returns partner -> rows per table.

    ``duckdb_config``: settings of the DuckDB connection that writes them (``Workdir.duckdb_config()``:
    the memory cap and spill folder);
    ``previous``: the live ``partners`` folder, whose exports are built upon (see the module);
    ``publication_parquet``: the new publication's Parquet folder, whose files the exports link to
    rather than writing the same aggregates again."""
    for partner_id in partners:
        if not partner_id or "/" in partner_id or partner_id.startswith("."):
            raise ExportError(f"partner id {partner_id!r} cannot name an export folder")
    root.mkdir(parents=True)
    out = {}
    con = _connect(warehouse, publication, duckdb_config)
    try:
        started = time.perf_counter()
        detail = detail_relations(con, "wh")  # one read of every detail relation's batch ids, all partners
        log.info("partitions of %d detail relation(s) read in %.2f s", len(detail), time.perf_counter() - started)
        pub_columns = _all_columns(con, "pub")
        aggregates = {t: [c for c, _ in pub_columns[t]] for t in _tables(con, "pub")}
        clash = sorted(set(detail) & set(aggregates))
        if clash:
            raise ExportError(f"{clash} are both partner detail and published aggregates; rename the detail model")
        folders = {p: root / p for p in partners}
        befores = {p: previous / folders[p].name if previous is not None else None for p in partners}
        plans = {}
        for partner_id in partners:
            prev = _previous_state(befores[partner_id])
            plans[partner_id] = {t: _plan(r, partner_id, prev, befores[partner_id]) for t, r in detail.items()}
        started = time.perf_counter()
        changed = _changed_partitions(con, detail, plans, root / ".changed")
        log.info("%d changed detail partition(s) written in %.2f s", len(changed), time.perf_counter() - started)
        for partner_id in partners:
            held, state, reused, rewritten = _export_into(
                con, partner_id, folders[partner_id], docs=docs, detail=detail, plans=plans[partner_id],
                changed=changed, aggregates=aggregates, previous=befores[partner_id],
                publication_parquet=publication_parquet,
            )
            out[partner_id] = _write_record(folders[partner_id], partner_id, published_at, k, held, state)
            log.info("partner export %s: %s own detail row(s); %d detail partition(s) reused, %d written",
                     partner_id, sum(held[OWN_DETAIL].values()), reused, rewritten)
    finally:
        con.close()
        shutil.rmtree(root / ".changed", ignore_errors=True)
    return {p: {OWN_DETAIL: r[OWN_DETAIL], CONSORTIUM: r[CONSORTIUM]} for p, r in out.items()}
