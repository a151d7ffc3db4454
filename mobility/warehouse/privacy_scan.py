"""The privacy scan: every table and column of a publication, checked for what must not be there.

It reads what was published, not how it was made, so it holds for any mart added later and can be
run by an operator on any publication folder (``mobility privacy-scan DIR``). It opens every
DuckDB file and every Parquet file under DIR (hidden folders, the not-yet-swapped or replaced
versions, are skipped; a folder inside a ``parquet`` folder, a partner's detail relation in
partitions, is read as one table) and checks each table:

Aggregates (every table of the analyst warehouse; the consortium tables of a partner export):
- ``id_column``: a column named like a device, vehicle, trip or rider id;
- ``uuid_value`` / ``pseudonym_value``: text values shaped like a UUID or like a pseudonym (a hex
  digest of ``PSEUDONYM_HEX_LENGTH`` characters, as landing writes them);
- ``bronze_id``: text values equal to any pseudonymised id in the bronze lake (the contracts say
  which bronze columns are pseudonymised);
- ``coordinate_precision``: latitude/longitude with more than 3 decimals (about 100 m), found by
  column name or, when the city's bounding box is known, by every value lying inside it; also
  WKT points in text or geometry columns;
- ``timestamp_grain``: timestamps finer than the table's published grain (``day`` or ``hour``,
  from ``publication.json``): truncating to the grain must give the value back;
- ``small_count``: integer counts (declared count columns of ``suppression.SUPPRESSION``, or named
  for trips, rides, riders, devices, events) between 1 and k-1.

A partner's own detail in its export (``partners/<partner_id>/``, tables that are not published
aggregates) is the partner's own data, ids and times included, so it is checked for isolation:
- ``missing_partner_column``: detail without a ``partner_id`` column cannot be shown to be its own;
- ``other_partner_row``: a row whose partner_id is not the export's partner;
- ``other_partner_id``: a text value that is an id only another partner's bronze holds.
A table that cannot be read is a finding (``unreadable``), never a silent pass.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from mobility.warehouse.exports import EXPORT_RECORD, PARTNER_COLUMN, PARTNERS_DIR
from mobility.warehouse.suppression import DEFAULT_K, SUPPRESSION

log = logging.getLogger(__name__)

PSEUDONYM_HEX_LENGTH = 32  # ingest.landing.pseudonymise: keyed SHA-256, first 32 hex characters
COORDINATE_DECIMALS = 3
GRAINS = ("day", "hour")
DEFAULT_GRAIN = "hour"

ID_COLUMN = re.compile(r"(^|_)(device|vehicle|trip|ride|rider|user|journey|booking|bike|scooter)_?(id|key|uuid|ids)$|(^|_)vin$")
LAT_LON_COLUMN = re.compile(r"(^|_)(lat|lon|lng|long|latitude|longitude)(_|$)")
COUNT_TOKENS = {"n", "num", "count", "trip", "trips", "ride", "rides", "rider", "riders", "user", "users",
                "device", "devices", "event", "events", "started", "ended", "journeys", "bookings"}
UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
PSEUDONYM_RE = rf"[0-9a-fA-F]{{{PSEUDONYM_HEX_LENGTH}}}"
FINE_POINT_RE = rf"POINT\s*Z?\s*\(\s*-?\d+\.\d{{{COORDINATE_DECIMALS + 1},}}|POINT\s*Z?\s*\(\s*-?[\d.]+\s+-?\d+\.\d{{{COORDINATE_DECIMALS + 1},}}"
ISO_TIME_RE = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}.*"
BBOX_PAD_DEG = 0.5

INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT", "UHUGEINT")
FLOAT_TYPES = ("FLOAT", "DOUBLE", "REAL")


@dataclass(frozen=True)
class Finding:
    """One thing that must not be published, where it is, and an example value."""

    source: str  # file, relative to the scanned folder
    table: str
    column: str | None
    rule: str
    detail: str
    rows: int = 0
    example: str | None = None

    def describe(self) -> str:
        where = f"{self.source} [{self.table}]" + (f" column {self.column}" if self.column else "")
        example = f" (e.g. {self.example})" if self.example is not None else ""
        count = f" in {self.rows} row(s)" if self.rows else ""
        return f"{where}: {self.rule}: {self.detail}{count}{example}"


@dataclass
class ScanReport:
    root: Path
    findings: list[Finding] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # "<source> [<table>]" for every table scanned
    columns: int = 0
    notes: list[str] = field(default_factory=list)  # checks that could not run, and why

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> dict:
        return {
            "root": str(self.root), "ok": self.ok, "tables": len(self.tables), "columns": self.columns,
            "findings": [f.__dict__ for f in self.findings], "notes": list(self.notes),
        }


class ScanError(RuntimeError):
    """The folder is not a publication the scan can read."""


# --- context: what the publication declares, what bronze holds ----------------------------------


@dataclass
class _Context:
    k: int
    grains: dict[str, str]
    aggregates: set[str]  # names of the published aggregate tables
    bbox: tuple[float, float, float, float] | None
    timezone: str


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _city_meta(workdir: Path, city: Path | None) -> dict:
    for candidate in ([city] if city else []) + [workdir / "city" / "city.json"]:
        if candidate and candidate.is_file():
            return _read_json(candidate)
    return {}


def _bronze_id_columns(files: list[Path]) -> dict[Path, list[str]]:
    """Bronze file -> its pseudonymised columns (from the contract in the file's metadata), or, for a
    file without a known contract, the columns named like ids."""
    from ingest.contracts import load_contract

    out: dict[Path, list[str]] = {}
    contracts: dict[str, set[str]] = {}
    for path in files:
        schema = pq.read_schema(path)
        ref = (schema.metadata or {}).get(b"contract", b"").decode()
        if ref and ref not in contracts:
            try:
                contracts[ref] = {f.column for f in load_contract(ref).fields if f.pseudonymise}
            except Exception:  # noqa: BLE001 - an unknown contract falls back to the column names
                contracts[ref] = set()
        named = {n for n in schema.names if ID_COLUMN.search(n)}
        cols = [n for n in schema.names if n in contracts.get(ref, set()) or n in named]
        if cols and PARTNER_COLUMN in schema.names:
            out[path] = cols
    return out


def _load_bronze_ids(con: duckdb.DuckDBPyConnection, bronze: Path) -> int:
    """Fill ``bronze_ids(value, partner_id)`` with every pseudonymised id landed; return its size."""
    con.execute("create or replace temp table bronze_ids (value varchar, partner_id varchar)")
    files = sorted(p for p in bronze.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts))
    by_columns: dict[tuple[str, ...], list[str]] = {}
    for path, cols in _bronze_id_columns(files).items():
        by_columns.setdefault(tuple(cols), []).append(str(path))
    for cols, paths in by_columns.items():
        for col in cols:
            con.execute(
                f"insert into bronze_ids select distinct cast({_ident(col)} as varchar), {PARTNER_COLUMN} "
                f"from read_parquet(?, union_by_name = true, hive_partitioning = false) where {_ident(col)} is not null",
                [paths],
            )
    return con.execute("select count(*) from bronze_ids").fetchone()[0]


# --- SQL helpers --------------------------------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _hits(con: duckdb.DuckDBPyConnection, relation: str, column: str, condition: str) -> tuple[int, str | None]:
    """Rows of ``relation`` where ``condition`` holds, and one example value of ``column``."""
    n, example = con.execute(
        f"select count(*), cast(any_value({_ident(column)}) as varchar) from {relation} where {condition}"
    ).fetchone()
    return int(n), example


# --- the checks ---------------------------------------------------------------------------------


def _nested(type_: str) -> bool:
    return type_ == "JSON" or type_.endswith("[]") or type_.startswith(("STRUCT", "MAP", "UNION"))


def _count_column(table: str, column: str, type_: str) -> bool:
    if not type_.startswith(INTEGER_TYPES):
        return False
    if column in SUPPRESSION.get(table, {}):
        return True
    tokens = column.lower().split("_")
    return tokens[-1] not in ("id", "key") and bool(COUNT_TOKENS & set(tokens))


def _check_aggregate(con, relation: str, source: str, table: str, columns: list[tuple[str, str]], ctx: _Context,
                     has_bronze: bool) -> list[Finding]:
    out: list[Finding] = []
    grain = ctx.grains.get(table, DEFAULT_GRAIN)

    def add(column: str, rule: str, detail: str, condition: str) -> None:
        n, example = _hits(con, relation, column, condition)
        if n:
            out.append(Finding(source, table, column, rule, detail, n, example))

    for column, type_ in columns:
        c = _ident(column)
        if ID_COLUMN.search(column.lower()):
            out.append(Finding(source, table, column, "id_column", "column named like a device/trip id"))
        if type_ == "VARCHAR" or _nested(type_):
            text = f"cast({c} as varchar)"
            # text is one value; JSON and nested values are searched for ids inside them
            if type_ == "VARCHAR":
                uuid, pseudonym = (f"regexp_full_match({text}, {_lit(r)})" for r in (UUID_RE, PSEUDONYM_RE))
            else:
                uuid, pseudonym = (f"regexp_matches({text}, {_lit(rf'(^|[^0-9a-fA-F]){r}($|[^0-9a-fA-F])')})"
                                   for r in (UUID_RE, PSEUDONYM_RE))
            add(column, "uuid_value", "values shaped like a UUID", uuid)
            add(column, "pseudonym_value", f"values shaped like a pseudonym ({PSEUDONYM_HEX_LENGTH} hex characters)",
                pseudonym)
            if has_bronze:
                add(column, "bronze_id", "values equal to a pseudonymised id in the bronze lake",
                    f"{text} in (select value from bronze_ids)")
            add(column, "coordinate_precision", f"WKT points with more than {COORDINATE_DECIMALS} decimals",
                f"regexp_matches({text}, {_lit(FINE_POINT_RE)}, 'i')")
            ts = f"try_cast({text} as timestamp)"
            add(column, "timestamp_grain", f"text timestamps finer than the table's grain ({grain})",
                f"regexp_full_match({text}, {_lit(ISO_TIME_RE)}) and {ts} is not null "
                f"and date_trunc('{grain}', {ts}) <> {ts}")
        elif type_ == "GEOMETRY":
            add(column, "coordinate_precision", f"points with more than {COORDINATE_DECIMALS} decimals",
                f"regexp_matches(cast({c} as varchar), {_lit(FINE_POINT_RE)}, 'i')")
        elif type_.startswith(FLOAT_TYPES) or type_.startswith("DECIMAL"):
            is_coordinate = bool(LAT_LON_COLUMN.search(column.lower()))
            if not is_coordinate and ctx.bbox is not None:
                minlon, minlat, maxlon, maxlat = ctx.bbox
                p = BBOX_PAD_DEG
                inside = con.execute(
                    f"select count({c}) > 0 and (bool_and({c} between {minlat - p} and {maxlat + p}) "
                    f"or bool_and({c} between {minlon - p} and {maxlon + p})) from {relation}"
                ).fetchone()[0]
                is_coordinate = bool(inside)
            if is_coordinate:
                add(column, "coordinate_precision", f"coordinates with more than {COORDINATE_DECIMALS} decimals",
                    f"abs(cast({c} as double) - round(cast({c} as double), {COORDINATE_DECIMALS})) > 1e-9")
        elif type_.startswith("TIMESTAMP"):
            add(column, "timestamp_grain", f"timestamps finer than the table's grain ({grain})",
                f"date_trunc('{grain}', {c}) <> {c}")
        elif type_.startswith("TIME"):
            finer = f"{c} <> time '00:00:00'" if grain == "day" else f"date_trunc('hour', timestamp '2000-01-01' + {c}) <> timestamp '2000-01-01' + {c}"
            add(column, "timestamp_grain", f"times of day finer than the table's grain ({grain})", finer)
        if _count_column(table, column, type_):
            add(column, "small_count", f"counts between 1 and k-1 (k={ctx.k})", f"{c} between 1 and {ctx.k - 1}")
    return out


def _check_own_detail(con, relation: str, source: str, table: str, columns: list[tuple[str, str]], partner: str,
                      has_bronze: bool) -> list[Finding]:
    names = [c for c, _ in columns]
    if PARTNER_COLUMN not in names:
        return [Finding(source, table, None, "missing_partner_column",
                        f"detail in {partner}'s export without a {PARTNER_COLUMN} column")]
    out: list[Finding] = []
    n, example = _hits(con, relation, PARTNER_COLUMN, f"{_ident(PARTNER_COLUMN)} is distinct from {_lit(partner)}")
    if n:
        out.append(Finding(source, table, PARTNER_COLUMN, "other_partner_row",
                           f"rows of another partner in {partner}'s export", n, example))
    if has_bronze:
        for column, type_ in columns:
            if type_ not in ("VARCHAR", "JSON"):
                continue
            text = f"cast({_ident(column)} as varchar)"
            n, example = _hits(
                con, relation, column,
                f"{text} in (select value from bronze_ids where partner_id <> {_lit(partner)}) "
                f"and {text} not in (select value from bronze_ids where partner_id = {_lit(partner)})",
            )
            if n:
                out.append(Finding(source, table, column, "other_partner_id",
                                   f"ids that only another partner's bronze holds, in {partner}'s export", n, example))
    return out


# --- walking the publication --------------------------------------------------------------------


def _files(root: Path) -> list[Path]:
    """Every DuckDB and Parquet file under root, through the swapped-in symlinks, skipping hidden
    entries; a folder inside a ``parquet`` folder is one table in partitions (a partner's detail)."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if Path(folder).name == "parquet":
            found += [Path(folder) / d for d in dirs]
            dirs[:] = []
        for name in sorted(files):
            if not name.startswith(".") and name.endswith((".duckdb", ".parquet")):
                found.append(Path(folder) / name)
    return found


def _partner_of(root: Path, path: Path) -> str | None:
    """The partner whose export holds ``path``: from its location (partners/<id>/...), never its content."""
    rel = path.relative_to(root).parts
    if len(rel) >= 3 and rel[0] == PARTNERS_DIR:
        return rel[1]
    if (root / EXPORT_RECORD).is_file():  # DIR is one partner's export folder
        return root.name
    return None


def _relations(con: duckdb.DuckDBPyConnection, path: Path, alias: str) -> list[tuple[str, str]]:
    """(table name, SQL relation) for every table or view in a DuckDB file, or the one Parquet table."""
    if path.is_dir():  # one table in partitions
        return [(path.name, f"read_parquet({_lit(str(path / '*.parquet'))})")]
    if path.suffix == ".parquet":
        return [(path.stem, f"read_parquet({_lit(str(path))})")]
    con.execute(f"attach {_lit(str(path))} as {alias} (read_only)")
    rows = con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = ? "
        "union all select schema_name, view_name from duckdb_views() where database_name = ? and not internal "
        "order by 1, 2",
        [alias, alias],
    ).fetchall()
    return [(t if s == "main" else f"{s}.{t}", f"{alias}.{_ident(s)}.{_ident(t)}") for s, t in rows]


def scan_publication(
    root: str | Path,
    *,
    k: int | None = None,
    bronze: str | Path | None = None,
    city: str | Path | None = None,
) -> ScanReport:
    """Scan every table of the publication (or partner export) folder ``root``.

    ``k`` defaults to the one recorded in ``publication.json`` (or ``export.json``); ``bronze`` to
    the workdir's lake beside the publication; ``city`` (a city.json, for the bounding box and
    time zone) to the workdir's city.
    """
    root = Path(root).absolute()  # not resolved: partners/<id> is reached through the swapped-in symlink
    if not root.is_dir():
        raise ScanError(f"{root} is not a folder")
    record = _read_json(root / "publication.json") or _read_json(root / EXPORT_RECORD)
    workdir = root.parents[2] if root.parent.name == PARTNERS_DIR else root.parent
    meta = _city_meta(workdir, Path(city) if city else None)
    aggregates = set(record.get("tables", {})) | set(record.get("consortium_aggregates", {}))
    ctx = _Context(
        k=int(k or record.get("k") or DEFAULT_K),
        grains=dict(record.get("grains", {})),
        aggregates=aggregates,
        bbox=tuple(meta["bbox"]) if meta.get("bbox") else None,
        timezone=meta.get("timezone", "UTC"),
    )
    bad_grains = {t: g for t, g in ctx.grains.items() if g not in GRAINS}
    if bad_grains:
        raise ScanError(f"{root}: publication declares unknown grain(s) {bad_grains}; expected one of {GRAINS}")
    report = ScanReport(root=root)
    files = _files(root)
    if not files:
        raise ScanError(f"{root}: no DuckDB or Parquet file to scan")
    if not record:
        report.notes.append(f"no publication.json or {EXPORT_RECORD} in {root}: k={ctx.k}, every grain '{DEFAULT_GRAIN}'")
    if ctx.bbox is None:
        report.notes.append("no city.json found: coordinates are recognised by column name only")

    con = duckdb.connect()
    try:
        # a day is the city's calendar day: published local midnights are whole days
        con.execute(f"set TimeZone = {_lit(ctx.timezone)}")
        bronze_dir = Path(bronze) if bronze else workdir / "lake" / "bronze"
        has_bronze = bronze_dir.is_dir()
        if has_bronze:
            n = _load_bronze_ids(con, bronze_dir)
            log.info("%d pseudonymised id(s) from %s", n, bronze_dir)
        else:
            report.notes.append(f"no bronze lake at {bronze_dir}: ids were not compared with the landed ones")
        for i, path in enumerate(files):
            source = str(path.relative_to(root))
            partner = _partner_of(root, path)
            try:
                relations = _relations(con, path, f"src{i}")
            except duckdb.Error as exc:
                report.findings.append(Finding(source, "*", None, "unreadable", str(exc).splitlines()[0]))
                continue
            for table, relation in relations:
                report.tables.append(f"{source} [{table}]")
                try:
                    columns = [(r[0], r[1]) for r in con.execute(f"describe select * from {relation}").fetchall()]
                    report.columns += len(columns)
                    # in a partner export, whatever is not a published aggregate is held to be its own detail
                    own_detail = partner is not None and table not in ctx.aggregates
                    if own_detail:
                        report.findings += _check_own_detail(con, relation, source, table, columns, partner, has_bronze)
                    else:
                        report.findings += _check_aggregate(con, relation, source, table, columns, ctx, has_bronze)
                except duckdb.Error as exc:
                    report.findings.append(Finding(source, table, None, "unreadable", str(exc).splitlines()[0]))
            if path.is_file() and path.suffix == ".duckdb":
                con.execute(f"detach src{i}")
    finally:
        con.close()
    return report
