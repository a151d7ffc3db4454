"""The contract check on Arrow columns, chunk by chunk: same verdicts and messages as `Contract.check`.

Big batches (a day of ride-hail trips, an hour of a large MDS fleet) are read straight into Arrow
(pyarrow.csv with every cell as text; pyarrow.json with the contract's types, on a JSON page's
records one per line, which msgspec finds without building them, when Arrow has threads to parse
them on) in bounded chunks,
and each field is checked with pyarrow.compute. The vectorised checks only *clear* rows: a row
they cannot prove good (a bad or odd value, a missing required field, a semantic rule that may
fail) is handed to the row check's own code (`Contract.row_field_violations`,
`row_rule_violations`) with the record as `parse_records` would give it, so each violation is
built by the same code, for the bad rows only. Uniqueness runs across chunks on the keys seen,
kept compactly (`SeenKeys`: 64-bit hashes, and the values to confirm a match). Text columns are
checked on their distinct values; a JSON record the row check needs is parsed alone from its bytes.

`check_payload` is the entry point: it takes the columnar path when the contract and the bytes
allow it and falls back to `parse_records` + `Contract.check` otherwise (a type the vectorised
checks do not cover, a payload pyarrow refuses: wrong row lengths, a value of the wrong JSON
type...), so a verdict never depends on which path ran.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from ingest.contracts import (
    _MS_MAX,
    _MS_MIN,
    _S_MAX,
    _S_MIN,
    _TRUE,
    _FALSE,
    _UUID,
    CheckResult,
    Contract,
    Field,
    Violation,
    _short,
    _to_arrow,
    window_ms,
)
from ingest.payloads import PayloadError, Raw, ZipLimits, parse_records, raw_bytes, read_zip_member

CHUNK_ROWS = 131_072
DISTINCT_MIN_ROWS = 1024  # below this, encoding a column costs more than it saves
JUDGED_MIN = 4096  # fewer distinct values than this in a chunk are judged afresh
JUDGED_MAX = 1 << 18  # distinct values per field whose verdicts a batch's check keeps for its next chunks
SPILL_MIN_BYTES = 1 << 20  # a chunk's kept keys this big or bigger are kept in a memory-mapped file
CSV_BLOCK_BYTES = 16 << 20
# pyarrow reads a file up to 32 blocks ahead of the consumer (ARROW-12090: not an option yet),
# which in 16 MB blocks is most of a day file; in 256 KB blocks, gathered again, 8 MB at most (1 MB
# blocks checked 1M rows as fast, 20 to 35 MB heavier)
CSV_FILE_BLOCK_BYTES = 256 << 10
JSON_BLOCK_BYTES = 4 << 20  # a page's records, one per line, are parsed in blocks of this size
# text that Python's int()/float() read exactly as Arrow's cast does; anything else goes to the row check
_INT_TEXT = r"^-?[0-9]{1,18}$"
_FLOAT_TEXT = r"^-?[0-9]{1,300}(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,2})?$"


def one_arrow_thread() -> bool:
    """Whether Arrow runs on one thread in this process, as in an Airflow ingest task
    (`mobility.settings.task_arrow_threads`): the process is sized for one core beside other tasks'
    processes, so work it would spread over threads of its own only contends for that core."""
    return pa.cpu_count() == 1


class Unsupported(Exception):
    """The columnar path cannot decide this batch exactly; the row check will."""


@dataclass
class PayloadCheck:
    result: CheckResult
    rejected_records: dict[int, Any]  # row -> the record as parsed, for the quarantine file
    path: str  # "columnar" or "rows"
    distinct: dict[str, set] = field(default_factory=dict)  # tracked field -> every value seen (None too)


# ---------------------------------------------------------------------------- per field

def natural_type(f: Field) -> pa.DataType | None:
    """The Arrow type a field's values arrive in before typing, or None if only the row check knows."""
    lt = f.logical_type
    if lt == "timestamp":
        if f.physical_type in ("int64_epoch_ms", "int64_epoch_s"):
            return pa.int64()
        return pa.string() if f.physical_type == "local_datetime" and f.strptime_format else None
    if lt == "date":
        return pa.string()
    if lt == "array":
        return None if f.enum is not None or f.minimum is not None or f.maximum is not None else pa.list_(pa.string())
    if lt == "boolean" and (f.enum is not None or f.minimum is not None or f.maximum is not None):
        return None
    return {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}.get(lt)


def supported(contract: Contract) -> bool:
    return all(natural_type(f) is not None for f in contract.fields) and all(
        pa.types.is_string(natural_type(f)) for f in contract.fields if f.unique
    )


def _in_set(arr: pa.Array, values: frozenset, kind: type | tuple) -> pa.Array:
    if not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        return pa.array(np.zeros(len(arr), bool))  # a set of mixed types: let the row check compare
    return pc.is_in(arr, value_set=pa.array(sorted(values), arr.type))


def _time_format(f: Field) -> str:
    return f.strptime_format or "%Y-%m-%d"


def _parse_time(f: Field, arr: pa.Array) -> pa.Array:
    parsed = pc.strptime(arr, format=_time_format(f), unit="ms", error_is_null=True)
    return parsed.cast(pa.date32()) if f.logical_type == "date" else parsed


_PARTS = {"Y": (4, pc.year), "m": (2, pc.month), "d": (2, pc.day), "H": (2, pc.hour), "M": (2, pc.minute),
          "S": (2, pc.second)}


def _exact_time(f: Field, arr: pa.Array) -> pa.Array:
    """True where the text has the format's exact shape and each part reads back unchanged (Arrow's
    strptime rolls 2026-02-30 over into March and takes second 60; Python's refuses both)."""
    fmt, shape, slices, pos, k = _time_format(f), "", [], 0, 0
    while k < len(fmt):
        if fmt[k] == "%":
            width, part = _PARTS[fmt[k + 1]]
            shape += f"[0-9]{{{width}}}"
            slices.append((pos, width, part))
            pos, k = pos + width, k + 2
        else:
            shape += re.escape(fmt[k])
            pos, k = pos + 1, k + 1
    parsed = pc.strptime(arr, format=fmt, unit="s", error_is_null=True)
    ok = pc.and_(pc.match_substring_regex(arr, f"^{shape}$"), parsed.is_valid())
    for start, width, part in slices:
        text = pc.if_else(ok, pc.utf8_slice_codeunits(arr, start, start + width), pa.scalar("0"))
        ok = pc.and_(ok, pc.equal(text.cast(pa.int64()), part(parsed).cast(pa.int64())))
    return ok


def distinct_encoded(text: pa.Array) -> pa.DictionaryArray | None:
    """The column as its distinct values and each row's index into them, when that saves work:
    text columns mostly repeat a few values (codes, areas, rounded fares, times to the second),
    and regexes and time parsing cost per value. None for mostly distinct ones (ids)."""
    if len(text) < DISTINCT_MIN_ROWS:
        return None
    encoded = text.dictionary_encode(null_encoding="encode")
    return encoded if len(encoded.dictionary) <= len(text) * 3 // 4 else None


def cleared(f: Field, arr: pa.Array, codes: Mapping[str, frozenset]) -> np.ndarray:
    """True where the value is absent or proven to pass every field rule; False means ask the row check."""
    conds: list[pa.Array] = []
    t = arr.type
    if pa.types.is_null(t):
        return np.ones(len(arr), bool)
    if f.logical_type == "timestamp" and pa.types.is_integer(t):
        lo, hi = (_MS_MIN, _MS_MAX) if f.physical_type == "int64_epoch_ms" else (_S_MIN, _S_MAX)
        conds += [pc.greater_equal(arr, lo), pc.less(arr, hi)]
    elif f.logical_type in ("timestamp", "date"):
        conds.append(_exact_time(f, arr))
    else:
        if pa.types.is_string(t):
            if f.fmt == "uuid":
                conds.append(pc.match_substring_regex(arr, _UUID.pattern))
            if f.pattern is not None:
                try:
                    conds.append(pc.match_substring_regex(arr, f"^(?:{f.pattern.pattern})$"))
                except pa.ArrowInvalid:  # a pattern RE2 cannot run
                    conds.append(pa.array(np.zeros(len(arr), bool)))
        if pa.types.is_floating(t):
            conds.append(pc.is_finite(arr))
        kind = str if pa.types.is_string(t) else int if pa.types.is_integer(t) else (int, float)
        if f.enum is not None:
            conds.append(_in_set(arr, f.enum, kind))
        if f.minimum is not None or f.maximum is not None:
            if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                conds.append(pa.array(np.zeros(len(arr), bool)))
            if f.minimum is not None:
                conds.append(pc.greater_equal(arr, f.minimum))
            if f.maximum is not None:
                conds.append(pc.less_equal(arr, f.maximum))
        if f.codes:
            conds.append(_in_set(arr, codes[f.codes], kind))
    ok = pa.array(np.ones(len(arr), bool))
    for c in conds:
        ok = pc.and_(ok, c)
    return pc.or_(arr.is_null(), pc.fill_null(ok, False)).to_numpy(zero_copy_only=False)


def typed(f: Field, arr: pa.Array) -> pa.Array:
    """Natural values as the contract's Arrow type (as `_to_arrow` types the row check's values)."""
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), f.arrow_type)
    if f.logical_type in ("timestamp", "date") and pa.types.is_string(arr.type):
        return _parse_time(f, arr).cast(f.arrow_type)
    if f.logical_type == "timestamp":
        unit = "s" if f.physical_type == "int64_epoch_s" else "ms"
        return arr.cast(pa.timestamp(unit, tz="UTC")).cast(f.arrow_type)
    return arr.cast(f.arrow_type)


# ---------------------------------------------------------------------------- the chunked check

ROW = "__batch_row__"  # beside a key, the batch row that had it


class SeenKeys:
    """The keys (one column, or several together) of a batch seen so far, to find repeats across
    its chunks in little memory: each key is kept once, as a 64-bit hash (numpy, sorted) and as its
    values (Arrow). Hashes find the candidates and the values decide, so two keys that share a hash
    repeat only if they are equal. A key with a missing part is never a repeat (nor is it kept).

    The values are read back only for a hash seen before (a repeat, or a rare collision), so a
    chunk's are written to a temporary Arrow file and kept memory-mapped: they are most of what
    grows with a batch (a million 40-character trip ids: 52 MB of values, 16 of hashes). The files
    go with the object; a process killed mid-batch leaves them in the temp folder (`TMPDIR`).
    """

    def __init__(self, columns: list[str]):
        self.columns = columns
        self.hashes = np.empty(0, np.uint64)  # sorted
        self.where = np.empty(0, np.int64)  # each hash's key: its position among the kept keys
        self.kept: list[pa.Table] = []  # the keys, each with the batch row that had it first
        self.starts = [0]  # each kept table's first position, and the end
        self.count = 0
        self.folder: tempfile.TemporaryDirectory | None = None  # the kept values' files, removed with it

    def _kept_rows(self, positions: np.ndarray) -> list[dict]:
        """The kept keys at these positions, read from their tables one by one (a take over all of
        them at once could concatenate them: every value read back in)."""
        tables = np.searchsorted(self.starts, positions, "right") - 1
        rows: list[dict] = []
        for t in np.unique(tables).tolist():
            offsets = positions[tables == t] - self.starts[t]
            rows += self.kept[t].take(pa.array(offsets)).to_pylist()
        return rows

    def _kept(self, keep: pa.Table) -> pa.Table:
        """`keep` as a memory-mapped file's table, when it is big enough for that to pay."""
        if keep.nbytes < SPILL_MIN_BYTES:
            return keep
        if self.folder is None:
            self.folder = tempfile.TemporaryDirectory(prefix="seen-keys-")
        path = str(Path(self.folder.name) / f"{len(self.kept)}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, keep.schema) as writer:
            writer.write_table(keep)
        return pa.ipc.open_file(pa.memory_map(path)).read_all()

    def add(self, keys: pa.Table, rows: np.ndarray) -> list[tuple[int, int, Any]]:
        """Record a chunk's keys (`rows`: their batch row numbers, in order). Returns, for each key
        an earlier row already had (in this chunk or before), its position in the chunk, the batch
        row that had it first, and the key (a value, or a dict of the columns' values)."""
        valid = np.logical_and.reduce([keys.column(c).is_valid().to_numpy(zero_copy_only=False) for c in self.columns])
        present = np.flatnonzero(valid)
        keys = keys.select(self.columns).filter(pa.array(valid)).append_column(ROW, pa.array(rows[present]))
        hashes = _hash64(keys, self.columns)
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        twin = np.zeros(len(hashes), bool)  # a hash another key of this chunk has too
        same = ordered[1:] == ordered[:-1]
        twin[order[1:][same]] = twin[order[:-1][same]] = True
        # probing in sorted order walks the kept hashes front to back: far fewer cache misses
        found = np.empty(len(hashes), np.int64)
        found[order] = np.searchsorted(self.hashes, ordered)
        known = found < len(self.hashes)
        known[known] = self.hashes[found[known]] == hashes[known]
        candidates = np.flatnonzero(twin | known)
        repeats: list[tuple[int, int, Any]] = []
        new = np.ones(len(hashes), bool)
        if len(candidates):  # decide on the values themselves, in row order
            first: dict[tuple, int] = {}
            # the kept keys of those hashes: ranges of the sorted hashes (np.isin would compare
            # every kept hash with each candidate: 0.1 s for 100 candidates among 1M keys)
            wanted = np.unique(hashes[candidates])
            lo, hi = np.searchsorted(self.hashes, wanted, "left"), np.searchsorted(self.hashes, wanted, "right")
            earlier = np.concatenate([np.arange(a, b) for a, b in zip(lo.tolist(), hi.tolist())])
            if len(earlier):
                for r in self._kept_rows(self.where[earlier]):
                    first.setdefault(self._key(r), r[ROW])
            for k, r in zip(candidates.tolist(), keys.take(pa.array(candidates)).to_pylist()):
                key = self._key(r)
                if key in first:
                    repeats.append((int(present[k]), first[key], r[self.columns[0]] if len(self.columns) == 1
                                    else {c: r[c] for c in self.columns}))
                    new[k] = False
                else:
                    first[key] = r[ROW]
        keep = keys.filter(pa.array(new)) if not new.all() else keys
        # the new hashes go in among the kept ones (both sorted): a merge, not a sort of them all
        added = order[new[order]]  # the new keys' positions in the chunk, by hash
        slots = np.searchsorted(self.hashes, hashes[added], side="right")
        position = np.cumsum(new) - 1  # each new key's position among the kept ones of this chunk
        self.hashes = np.insert(self.hashes, slots, hashes[added])
        self.where = np.insert(self.where, slots, self.count + position[added])
        self.kept.append(self._kept(keep))
        self.count += keep.num_rows
        self.starts.append(self.count)
        return repeats

    def _key(self, row: dict) -> tuple:
        return tuple(row[c] for c in self.columns)


_DUCKDB = threading.local()  # one connection per thread: opening one costs more than hashing a chunk


def _hash64(keys: pa.Table, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's key (DuckDB's, vectorised)."""
    con = getattr(_DUCKDB, "con", None)
    if con is None:
        import duckdb

        con = _DUCKDB.con = duckdb.connect()
    con.register("keys", keys)
    try:
        quoted = ", ".join('k."' + c.replace('"', '""') + '"' for c in columns)
        return np.asarray(con.execute(f"select hash({quoted}) as h from keys k").fetchnumpy()["h"], np.uint64)
    finally:
        con.unregister("keys")


class ColumnarCheck:
    """The check of one batch, fed chunk by chunk; `finish` gives the same CheckResult as `Contract.check`."""

    def __init__(self, contract: Contract, window: tuple[datetime, datetime] | None = None,
                 track: tuple[str, ...] = ()):
        contract.require_codes()
        self.c = contract
        self.win_ms = window_ms(window)
        self.rows = 0
        self.rejected: list[int] = []
        self.violations: list[Violation] = []
        self.rejected_records: dict[int, Any] = {}
        self.extra: set[str] = set()
        self.seen: dict[str, SeenKeys] = {f.name: SeenKeys([f.name]) for f in contract.fields if f.unique}
        self.distinct: dict[str, set] = {name: set() for name in track}
        self.judged: dict[str, tuple[pa.Array, np.ndarray]] = {}  # field -> distinct values judged so far, verdicts

    def _cleared_values(self, f: Field, values: pa.Array) -> np.ndarray:
        """`cleared` on a chunk's distinct values, each value judged once per batch: the chunks of a
        batch repeat most of each other's values (a day's times to the second, fares). A few values
        are judged again: looking them up would cost more."""
        if len(values) < JUDGED_MIN:
            return cleared(f, values, self.c.codes)
        known, verdicts = self.judged.get(f.name, (values[:0], np.empty(0, bool)))
        at = pc.fill_null(pc.index_in(values, value_set=known), -1).to_numpy()
        new = np.flatnonzero(at < 0)
        out = np.empty(len(values), bool)
        out[at >= 0] = verdicts[at[at >= 0]]
        if len(new):
            fresh = values.take(pa.array(new))
            out[new] = judged = cleared(f, fresh, self.c.codes)
            if len(known) + len(new) <= JUDGED_MAX:
                self.judged[f.name] = (pa.concat_arrays([known, fresh]), np.concatenate([verdicts, judged]))
        return out

    def add(self, cols: Mapping[str, pa.Array], n: int, record: Callable[[int], Any],
            suspect: np.ndarray | None = None, extra: set[str] | frozenset = frozenset()) -> pa.Table:
        """Check `n` rows given as natural columns (field name -> array; absent -> all null).

        `record(i)` gives row i as `parse_records` would; `suspect` marks rows the reader could not
        put into natural columns. Returns the accepted rows, typed.
        """
        c, base = self.c, self.rows
        self.extra |= extra
        cols = {f.name: cols.get(f.name) if cols.get(f.name) is not None else pa.nulls(n) for f in c.fields}
        # dictionary columns: the per-value checks and typing run on their distinct values only
        encoded = {name: arr for name, arr in cols.items() if isinstance(arr, pa.DictionaryArray)}
        cols = {name: arr.dictionary_decode() if name in encoded else arr for name, arr in cols.items()}
        sus = np.zeros(n, bool) if suspect is None else suspect.copy()
        for f in c.fields:
            arr = cols[f.name]
            if f.required:
                sus |= ~arr.is_valid().to_numpy(zero_copy_only=False)
            d = encoded.get(f.name)
            sus |= ~(self._cleared_values(f, d.dictionary)[d.indices.to_numpy()] if d else cleared(f, arr, c.codes))

        records: dict[int, Any] = {}
        found: dict[int, list[tuple[int, Violation]]] = {}
        values: dict[int, list[Any]] = {}
        for i in np.flatnonzero(sus).tolist():
            rec = records[i] = record(i)
            if not isinstance(rec, dict):
                found[i] = [(-1, Violation(base + i, "<record>", "type:object", _short(rec)))]
                continue
            found[i], values[i] = c.row_field_violations(base + i, rec)

        if self.distinct:  # every value of a tracked field, over the records that are objects
            objects = np.ones(n, bool)
            objects[[i for i, rec in records.items() if not isinstance(rec, dict)]] = False
            for name, seen in self.distinct.items():
                seen.update(pc.unique(cols[name].filter(pa.array(objects))).to_pylist())

        for k, f in enumerate(c.fields):
            if not f.unique:
                continue
            vals = cols[f.name]
            if records:  # rows the row check read: its typed value, or none if the field itself is broken
                patched = sorted(records)
                vals = pc.replace_with_mask(vals, pa.array(np.isin(np.arange(n), patched)), pa.array(
                    [None if i not in values or any(kk == k for kk, _ in found[i]) else values[i][k] for i in patched],
                    vals.type))
            for i, _, value in self.seen[f.name].add(pa.table({f.name: vals}), np.arange(base, base + n)):
                found.setdefault(i, []).append((k, Violation(base + i, f.name, "unique", _short(value))))

        bad = np.zeros(n, bool)
        bad[[i for i, v in found.items() if v]] = True
        ask = (self._rule_flags(cols, n) | sus) & ~bad
        ruled: dict[int, list[Violation]] = {}
        for i in np.flatnonzero(ask).tolist():
            rec = records[i] if i in records else record(i)
            broken_rules = c.row_rule_violations(base + i, rec, self.win_ms)
            if broken_rules:
                ruled[i], records[i] = broken_rules, rec
                bad[i] = True

        for i in sorted(i for i in set(found) | set(ruled) if bad[i]):
            by_field = found.get(i)
            if by_field:
                self.violations.extend(v for _, v in sorted(by_field, key=lambda kv: kv[0]))
            else:
                self.violations.extend(ruled[i])
            self.rejected.append(base + i)
            self.rejected_records[base + i] = records[i] if i in records else record(i)

        clean = ~bad & ~sus
        keep = pa.array(clean)
        table = pa.Table.from_arrays([typed(f, encoded[f.name].dictionary).take(encoded[f.name].indices.filter(keep))
                                      if f.name in encoded else typed(f, cols[f.name].filter(keep)) for f in c.fields],
                                     schema=c.arrow_schema())
        rescued = np.flatnonzero(~bad & sus)
        if len(rescued):  # odd but valid values ("1.0" for an integer): typed as the row check types them
            extra_rows = pa.Table.from_arrays(
                [_to_arrow(f, [values[i][k] for i in rescued.tolist()]) for k, f in enumerate(c.fields)],
                schema=c.arrow_schema(),
            )
            order = np.argsort(np.concatenate([np.flatnonzero(clean), rescued]), kind="stable")
            table = pa.concat_tables([table, extra_rows]).take(pa.array(order))
        self.rows += n
        return table

    def _rule_flags(self, cols: Mapping[str, pa.Array], n: int) -> np.ndarray:
        """Rows a semantic rule might fail (a superset: the row check decides)."""
        flags = np.zeros(n, bool)
        every = np.ones(n, bool)
        c = self.c
        by_name = {f.name: cols[f.name] for f in c.fields}

        def col(name: str, kind: Callable[[pa.DataType], bool]) -> pa.Array | None:
            arr = by_name.get(name)
            return arr if arr is not None and kind(arr.type) else None

        for rule in c.rules:
            if rule == "end_not_before_start":
                start = by_name.get(c.properties.get("start_field", "start_time"))
                end = by_name.get(c.properties.get("end_field", "end_time"))
                if start is None or end is None or start.type != end.type or pa.types.is_null(start.type):
                    flags |= every
                else:
                    flags |= pc.fill_null(pc.less(end, start), False).to_numpy(zero_copy_only=False)
            elif rule == "in_request_window":
                if self.win_ms is None or not c.window_field:
                    continue
                arr = col(c.window_field, pa.types.is_integer)
                if arr is None:
                    flags |= every
                    continue
                inside = pc.and_(pc.greater_equal(arr, self.win_ms[0]), pc.less(arr, self.win_ms[1]))
                flags |= ~pc.fill_null(inside, False).to_numpy(zero_copy_only=False)
            elif rule == "on_window_date":
                if self.win_ms is None or not c.window_field:
                    continue
                arr = col(c.window_field, pa.types.is_string)
                if arr is None:
                    flags |= every
                    continue
                day = datetime.fromtimestamp(self.win_ms[0] / 1000, timezone.utc).date().isoformat()
                flags |= ~pc.fill_null(pc.starts_with(arr, day), False).to_numpy(zero_copy_only=False)
            elif rule == "trip_total_is_sum":
                parts = [col(k, pa.types.is_floating) for k in ("fare", "tip", "additional_charges", "trip_total")]
                if any(p is None for p in parts):
                    flags |= every
                    continue
                fare, tip, other, total = (pc.fill_null(p, 0.0) for p in parts)
                gap = pc.abs(pc.subtract(pc.add(pc.add(fare, tip), other), total))
                # a little below the rule's 0.011: float noise must not clear a row the rule rejects
                off = pc.and_(parts[3].is_valid(), pc.greater(gap, 0.0105))
                flags |= pc.fill_null(off, True).to_numpy(zero_copy_only=False)
            else:
                flags |= every
        return flags

    def finish(self, accepted: pa.Table) -> CheckResult:
        warnings = self.c.extra_warnings(self.extra)
        return CheckResult(self.c.id, self.c.version, self.rows, accepted, self.rejected, self.violations, warnings)



# ---------------------------------------------------------------------------- readers

def _csv_chunks(contract: Contract, raw: Raw, check: ColumnarCheck, read_ahead: bool = True) -> Iterator[pa.Table]:
    from_file = isinstance(raw, Path)
    try:
        with raw.open("rb") if from_file else io.BytesIO(raw) as head:
            header = next(csv.reader(io.TextIOWrapper(head, encoding="utf-8-sig", newline="")))
    except (StopIteration, csv.Error, UnicodeDecodeError):
        raise Unsupported("no readable header") from None
    names = [h.strip() for h in header]
    missing = sorted(f.name for f in contract.fields if f.required and f.name not in names)
    if missing or len(set(names)) != len(names):
        raise Unsupported("header")  # the row path names the missing columns
    fields = {f.name: f for f in contract.fields}
    auto = [f"f{j}" for j in range(len(names))]
    reader = pacsv.open_csv(
        # a file is read block by block; bytes zero-copy (a Python file object would copy them)
        pa.OSFile(str(raw)) if from_file else pa.BufferReader(raw),
        read_options=pacsv.ReadOptions(autogenerate_column_names=True,
                                       block_size=CSV_FILE_BLOCK_BYTES if from_file else CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={a: pa.string() for a in auto}, include_columns=auto,
                                             strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    extra = frozenset(k for k in names if k not in contract.top_level)

    def prepared() -> Iterator[tuple[int, dict[str, pa.Array], np.ndarray, list[pa.Array]]]:
        """Each chunk's cells read and turned into natural values (Arrow kernels, mostly)."""
        first = True
        for batch in _gathered(reader) if from_file else reader:
            if first:
                if batch.num_rows == 0 or [batch.column(j)[0].as_py() for j in range(len(names))] != header:
                    raise Unsupported("header read differently")
                batch, first = batch.slice(1), False
            for start in range(0, batch.num_rows, CHUNK_ROWS):
                part = batch.slice(start, CHUNK_ROWS)
                n = part.num_rows
                if not n:
                    continue
                cells = [part.column(j) for j in range(len(names))]
                cols: dict[str, pa.Array] = {}
                suspect = np.zeros(n, bool)
                for name, arr in zip(names, cells):
                    if name in fields:
                        # a unique field (an id) is distinct by contract: encoding it would be wasted
                        d = None if fields[name].unique else distinct_encoded(arr)
                        if d is None:
                            cols[name], odd = _from_text(fields[name], arr)
                        else:
                            values, odd = _from_text(fields[name], d.dictionary)
                            cols[name], odd = pa.DictionaryArray.from_arrays(d.indices, values), odd[d.indices.to_numpy()]
                        suspect |= odd
                yield n, cols, suspect, cells

    # the next chunk is read and converted on a thread of its own while this one is checked: both
    # are mostly Arrow kernels, which let go of the GIL, so a big file keeps both cores busy
    for n, cols, suspect, cells in _ahead(prepared()) if read_ahead else prepared():
        def record(i: int, cells=cells) -> dict:
            return {name: fields[name].from_text(cell[i].as_py()) if name in fields else cell[i].as_py()
                    for name, cell in zip(names, cells)}

        yield check.add(cols, n, record, suspect, extra)


def _gathered(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """A file's batches, read in small blocks, gathered into batches of about `CSV_BLOCK_BYTES`."""
    gathered: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        gathered.append(batch)
        size += batch.nbytes
        if size >= CSV_BLOCK_BYTES:
            yield pa.concat_batches(gathered)
            gathered, size = [], 0
    if gathered:
        yield pa.concat_batches(gathered)


_DONE = object()


def _ahead(items: Iterator[Any]) -> Iterator[Any]:
    """`items`, each next one produced on a thread of its own while the consumer handles this one.
    An error there is raised here; a consumer that stops early waits for the one in hand, no more."""
    items = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="columnar-read") as pool:
        coming = pool.submit(next, items, _DONE)
        while (item := coming.result()) is not _DONE:
            coming = pool.submit(next, items, _DONE)
            yield item


def _from_text(f: Field, text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """CSV cells as natural values, as `Field.from_text` reads them; cells it may read otherwise are odd."""
    empty = pc.equal(text, "")
    nat = natural_type(f)
    if pa.types.is_string(nat):
        return pc.if_else(empty, pa.scalar(None, pa.string()), text), np.zeros(len(text), bool)
    if pa.types.is_integer(nat) or pa.types.is_floating(nat):
        ok = pc.match_substring_regex(text, _INT_TEXT if pa.types.is_integer(nat) else _FLOAT_TEXT)
        values = pc.if_else(ok, text, pa.scalar(None, pa.string())).cast(nat)
    elif pa.types.is_boolean(nat):
        low = pc.utf8_lower(text)
        true, false = pc.is_in(low, pa.array(sorted(_TRUE))), pc.is_in(low, pa.array(sorted(_FALSE)))
        ok = pc.or_(true, false)
        values = pc.if_else(ok, true, pa.scalar(None, pa.bool_()))
    else:  # a list cannot come from a CSV cell: the row check names the type
        ok = pa.array(np.zeros(len(text), bool))
        values = pa.nulls(len(text), nat)
    odd = ~(pc.or_(ok, empty).to_numpy(zero_copy_only=False))
    return values, odd


def _record_type(contract: Contract) -> pa.StructType:
    tree: dict = {}
    for f in contract.fields:
        node = tree
        *parents, leaf = f.path
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = natural_type(f)

    def build(node: dict) -> pa.StructType:
        return pa.struct([(k, build(v) if isinstance(v, dict) else v) for k, v in node.items()])

    return build(tree)


def _json_chunks(contract: Contract, raw: bytes, check: ColumnarCheck) -> Iterator[pa.Table]:
    key = contract.payload_key
    if not key:
        raise Unsupported("a bare JSON list")
    parts = key.split(".")
    found = _raw_records(raw, parts)
    # one record per line lets pyarrow parse blocks on its threads; on one thread the lines only
    # add work: a 100,000-trip page took a median 0.33 CPU s so, 0.26 parsed whole (ten runs each)
    records = _records_apart(contract, found) if found and not one_arrow_thread() else None
    if records is None:
        records = _records_in_document(contract, raw, parts)
        if found is not None and len(found) != len(records):
            found = None  # msgspec read the document otherwise than pyarrow
    extra = frozenset(records.type.field(j).name for j in range(records.type.num_fields)) - contract.top_level
    parsed: list[Any] = []

    def python_record(i: int) -> Any:
        """Record i exactly as json.loads gives it; only rows the row check needs are parsed."""
        if found is not None:
            return json.loads(bytes(found[i]))
        if not parsed:  # the whole document, once
            from ingest.payloads import _json_records

            parsed.extend(_json_records(contract, raw))
        return parsed[i]

    for start in range(0, len(records), CHUNK_ROWS):
        chunk = records.slice(start, CHUNK_ROWS)
        n = len(chunk)
        cols = {f.name: _leaf(chunk, f.path) for f in contract.fields}
        suspect = ~chunk.is_valid().to_numpy(zero_copy_only=False)
        # a field present in some rows as null and missing in others reads the same: null both ways
        yield check.add(cols, n, lambda i, s=start: python_record(s + i), suspect,
                        extra if n and chunk.null_count < n else frozenset())


def _records_apart(contract: Contract, found: list[msgspec.Raw]) -> pa.StructArray | None:
    """The records as one line each, parsed in blocks on pyarrow's threads (a whole page is one
    document, which pyarrow parses on one thread); None where that could read them otherwise than
    the document: a null record (a line of nulls, not a null row) or one pyarrow refuses."""
    lines = b"\n".join(found)
    if lines == b"null" or lines.startswith(b"null\n") or lines.endswith(b"\nnull") or b"\nnull\n" in lines:
        return None
    try:
        table = pajson.read_json(
            pa.BufferReader(lines),
            read_options=pajson.ReadOptions(block_size=JSON_BLOCK_BYTES, use_threads=True),
            # a record printed over several lines (an indented page) needs the slower multi-line reading
            parse_options=pajson.ParseOptions(explicit_schema=pa.schema(list(_record_type(contract))),
                                              unexpected_field_behavior="infer",
                                              newlines_in_values=lines.count(b"\n") != len(found) - 1),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if table.num_rows != len(found):
        return None
    return pa.StructArray.from_arrays([c.combine_chunks() for c in table.columns], fields=list(table.schema))


def _records_in_document(contract: Contract, raw: bytes, parts: list[str]) -> pa.StructArray:
    """The records at key path `parts`, read with the whole document by pyarrow."""
    node_type: pa.DataType = pa.list_(_record_type(contract))
    for p in reversed(parts[1:]):
        node_type = pa.struct([(p, node_type)])
    schema = pa.schema([(parts[0], node_type)])
    try:
        doc = pajson.read_json(
            pa.BufferReader(raw),
            read_options=pajson.ReadOptions(block_size=max(len(raw) + 1, 1 << 20), use_threads=False),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer",
                                              newlines_in_values=True),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise Unsupported(str(exc)) from None
    if doc.num_rows != 1:
        raise Unsupported("not one JSON document")
    node: pa.Array = doc.column(parts[0]).combine_chunks()
    for p in parts[1:]:
        if node.null_count:
            raise Unsupported("payload key missing")
        node = node.field(p)
    if node.null_count:
        raise Unsupported("payload key missing or not a list")
    records = node.flatten()  # one struct per record; a null one is not an object
    if not pa.types.is_struct(records.type):
        raise Unsupported("records are not objects")
    return records


@lru_cache(maxsize=None)
def _records_decoder(parts: tuple[str, ...]) -> msgspec.json.Decoder:
    """A decoder of a page that keeps each record at key path `parts` as its raw JSON bytes."""
    node: Any = list[msgspec.Raw]
    for depth, key in reversed(list(enumerate(parts))):  # a key need not be a Python name
        node = msgspec.defstruct(f"Level{depth}", [("node", node)], rename={"node": key})
    return msgspec.json.Decoder(node)


def _raw_records(raw: bytes, parts: list[str]) -> list[msgspec.Raw] | None:
    """The records in the list at key path `parts`, each as its own JSON bytes, or None.

    msgspec reads the document in C without building the records; a rejected record is then
    parsed alone. None when msgspec cannot read the document so (not JSON as msgspec reads JSON,
    such as NaN, or another layout): pyarrow then reads the whole of it.
    """
    try:
        node = _records_decoder(tuple(parts)).decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    for _ in parts:
        node = node.node
    return node


def _leaf(struct: pa.StructArray, path: tuple[str, ...]) -> pa.Array | None:
    node: pa.Array = struct
    for p in path:
        if not pa.types.is_struct(node.type) or node.type.get_field_index(p) < 0:
            return None
        # flatten() folds the parent's nulls into the child (a null location has a null lat)
        node = node.flatten()[node.type.get_field_index(p)]
    return node


class CheckStream:
    """One batch's check as a stream: iterate it once for the accepted rows, typed, chunk by chunk;
    then `result` is its PayloadCheck (with `accepted` empty: the rows went out as chunks).

    The columnar path yields as it checks, so a big batch is never whole in memory. When it meets
    bytes only the row check can decide, possibly after some chunks, the stream yields None (what
    came before is void) and the row check's accepted rows follow as one table. Raises
    `PayloadError` for bytes that cannot be read as the contract says.
    """

    def __init__(self, contract: Contract, raw: Raw, *, window: tuple[datetime, datetime] | None = None,
                 track: tuple[str, ...] = (), read_ahead: bool = True):
        self.contract, self.raw, self.window, self.track = contract, raw, window, track
        self.read_ahead = read_ahead  # a CSV's next chunk read on a second thread (see `_ahead`)
        self.result: PayloadCheck | None = None

    def __iter__(self) -> Iterator[pa.Table | None]:
        contract, raw = self.contract, self.raw
        if supported(contract) and contract.payload_format in ("json", "csv", "gtfs_zip"):
            check = ColumnarCheck(contract, self.window, self.track)
            rows, yielded = 0, False
            try:
                for table in self._columnar_chunks(check):
                    rows, yielded = rows + table.num_rows, True
                    yield table
                result = check.finish(contract.arrow_schema().empty_table())
                result.streamed_rows = rows
                self.result = PayloadCheck(result, check.rejected_records, "columnar", check.distinct)
                return
            except (Unsupported, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, UnicodeDecodeError):
                if yielded:
                    yield None  # the row check decides, from the start
        records = parse_records(contract, raw)
        result = contract.check(records, window=self.window)
        distinct = {name: {r.get(name) for r in records if isinstance(r, dict)} for name in self.track}
        self.result = PayloadCheck(result, {r: records[r] for r in result.rejected_rows}, "rows", distinct)
        yield result.accepted

    def _columnar_chunks(self, check: ColumnarCheck) -> Iterator[pa.Table]:
        contract, data = self.contract, self.raw
        if contract.payload_format == "json":  # a JSON page is parsed whole
            return _json_chunks(contract, raw_bytes(data), check)
        if contract.payload_format == "gtfs_zip":
            data = read_zip_member(raw_bytes(data), contract.properties["zip_member"], ZipLimits.of(contract))
            if data is None:
                raise Unsupported("member absent")  # the row path says whether that is allowed
        return _csv_chunks(contract, data, check, self.read_ahead)


def check_payload(contract: Contract, raw: Raw, *, window: tuple[datetime, datetime] | None = None,
                  track: tuple[str, ...] = ()) -> PayloadCheck:
    """Parse and check one batch's bytes; the columnar path when it applies, else the row check.

    Either way the result is the one `Contract.check(parse_records(contract, raw))` gives, with
    every accepted row in `result.accepted`. `track` names fields whose every value is collected
    (the partner's claimed provider id). Raises `PayloadError` for bytes that cannot be read as the
    contract says.
    """
    stream = CheckStream(contract, raw, window=window, track=track)
    tables: list[pa.Table] = []
    for table in stream:
        if table is None:
            tables.clear()
        else:
            tables.append(table)
    checked = stream.result
    accepted = pa.concat_tables(tables) if tables else contract.arrow_schema().empty_table()
    return replace(checked, result=replace(checked.result, accepted=accepted, streamed_rows=None))


__all__ = ["CheckStream", "ColumnarCheck", "SeenKeys", "PayloadCheck", "PayloadError", "Unsupported", "check_payload",
           "one_arrow_thread", "supported"]
