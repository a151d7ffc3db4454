"""The landing gate: a batch-level Great Expectations decision on each batch's typed rows.

`Contract.check` already drops bad rows one by one; this gate decides whether the batch as a
whole may land. Its suite is derived from the contract, never written by hand:

- schema: the table has exactly the contract's columns, each of its logical type
- per field: required -> not null, enum -> in set, minimum/maximum -> between, unique -> unique,
  several primaryKey fields -> compound unique
- the contract's quality rules that a schema cannot express, by implementation or name:
  `end_not_before_start` (start_field/end_field), `in_request_window` and `on_window_date`
  (window_field inside the requested window), `trip_total_is_sum`, `plausible_speed` (bound from
  `mustBeLessThan`, km/h), `locations_in_city` (points inside city.json's bbox plus `margin_km`)

The suite is built once per contract table and cached; what changes per batch (the window, the
city's bbox) goes in as suite parameters. A failing batch is quarantined whole with a report the
partner can read; a gate that raises is a failed gate, never a pass or a skip.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ingest.columnar import SeenKeys
from ingest.contracts import Contract
from mobility.gates._gx import (
    GX_LOCK,
    ExpectationOutcome,
    GateResult,
    build_docs,
    collect_cycles,
    frame_validator,
    gate_error,
    json_safe,
    kept_context,
    make_current,
    outcomes_from,
    store_result,
    validate_frame,
    validate_with,
)
from mobility.settings import Workdir

log = logging.getLogger(__name__)

KM_PER_DEG_LAT = 111.32
MAX_EXAMPLE_ROWS = 5
# SUMMARY keeps GX's work bounded on big batches; the index list gives us example rows
PARTIAL_UNEXPECTED = 20
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_UNEXPECTED}
# a passing slice's outcomes are the same in BASIC (it has no unexpected rows to index), which GX
# builds in about two thirds of SUMMARY's time; a failing slice is validated again in SUMMARY
PASS_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": PARTIAL_UNEXPECTED}
# rows validated at a time: GX takes whole pandas frames, which cost more than their Arrow rows,
# and each validation has a fixed cost too (GX's metric graph: about 0.1 s for a suite of 26
# expectations, more than validating 100,000 rows costs). 1M CSV rows landed 10% faster than in
# slices of half this, and twice this was no faster and 100 MB heavier; an MDS page of 100,000
# trips is one slice, validated while the page is written (`flush`)
GATE_ROWS = 131_072


@dataclass
class LandingSuite:
    """The cached suite of one contract table, and what each batch must add to its frame."""

    suite: Any  # gx.ExpectationSuite on the batch's rows
    schema_suite: Any  # gx.ExpectationSuite on the batch's Arrow types vs the contract's (see schema_frame)
    columns: list[str]
    read_columns: set[str] = field(default_factory=set)  # the batch columns the expectations read
    derived: dict[str, Callable[[pd.DataFrame], pd.Series]] = field(default_factory=dict)
    window: str | None = None  # "instant" (tz-aware UTC) or "day" (naive local date); None: no window rule
    points: list[tuple[str, str]] = field(default_factory=list)  # (lat column, lon column)
    margin_km: float = 0.0
    notes: list[str] = field(default_factory=list)
    unique: dict[int, list[str]] = field(default_factory=dict)  # unique expectation's position -> its columns


_SUITES: dict[tuple[str, str, str], LandingSuite] = {}
_SUITES_LOCK = threading.Lock()


def landing_suite(contract: Contract) -> LandingSuite:
    """The suite of a contract table, built on first use and cached for the process."""
    key = (contract.ref, contract.table, str(contract.path))
    with _SUITES_LOCK:
        if key not in _SUITES:
            _SUITES[key] = _build_suite(contract)
        return _SUITES[key]


def _param(name: str) -> dict:
    return {"$PARAMETER": name}


def _build_suite(contract: Contract) -> LandingSuite:
    import great_expectations as gx

    E = gx.expectations
    columns = [f.column for f in contract.fields]
    by_name = {f.name: f for f in contract.fields}
    out = LandingSuite(suite=None, schema_suite=None, columns=columns)
    expectations: list[Any] = []
    derived_sources: dict[str, list[str]] = {}  # derived column -> the batch columns it is computed from

    def add(expectation: Any, rule: str) -> None:
        expectation.meta = {"rule": rule}
        expectations.append(expectation)

    for f in contract.fields:
        if f.required:
            add(E.ExpectColumnValuesToNotBeNull(column=f.column), f"{f.name}: required")
        if f.enum is not None:
            add(E.ExpectColumnValuesToBeInSet(column=f.column, value_set=sorted(f.enum)), f"{f.name}: enum")
        if f.minimum is not None or f.maximum is not None:
            add(E.ExpectColumnValuesToBeBetween(column=f.column, min_value=f.minimum, max_value=f.maximum),
                f"{f.name}: range")
        if f.unique:
            add(E.ExpectColumnValuesToBeUnique(column=f.column), f"{f.name}: unique")
    obj = _schema_object(contract)
    keys = [by_name[p.name].column for p in obj.properties or [] if p.primaryKey and p.name in by_name]
    if len(keys) > 1:
        add(E.ExpectCompoundColumnsToBeUnique(column_list=keys), "primary key")

    for q in obj.quality or []:
        rule = q.implementation if q.type == "custom" and isinstance(q.implementation, str) else q.name
        custom = {p.property: p.value for p in q.customProperties or []}
        if rule == "end_not_before_start":
            start = by_name[contract.properties.get("start_field", "start_time")].column
            end = by_name[contract.properties.get("end_field", "end_time")].column
            add(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=end, column_B=start, or_equal=True,
                                                          ignore_row_if="either_value_is_missing"), q.name or rule)
        elif rule in ("in_request_window", "on_window_date") and contract.window_field:
            column = by_name[contract.window_field].column
            out.window = "instant" if rule == "in_request_window" else "day"
            add(E.ExpectColumnValuesToBeBetween(column=column, min_value=_param("window_start"),
                                                max_value=_param("window_end"), strict_max=True), q.name or rule)
        elif rule == "trip_total_is_sum":
            derived_sources["trip_total_minus_parts"] = ["trip_total", "fare", "tip", "additional_charges"]
            out.derived["trip_total_minus_parts"] = lambda df: (
                df["trip_total"] - df[["fare", "tip", "additional_charges"]].fillna(0).sum(axis=1)
            ).abs()
            add(E.ExpectColumnValuesToBeBetween(column="trip_total_minus_parts", max_value=0.011), q.name or rule)
        elif rule == "plausible_speed":
            if q.mustBeLessThan is None:
                raise ValueError(f"{contract.ref}: quality rule plausible_speed needs mustBeLessThan (km/h)")
            distance = by_name[custom.get("distance_field", "distance")]
            duration = by_name[custom.get("duration_field", "duration")]
            _require_unit(contract, distance.name, "m")
            _require_unit(contract, duration.name, "s")
            derived_sources["speed_kmh"] = [distance.column, duration.column]
            # metres per second * 3.6 = km/h; zero duration with a distance is infinitely fast
            out.derived["speed_kmh"] = lambda df, d=distance.column, t=duration.column: (
                df[d] / df[t].where(df[t] != 0) * 3.6
            ).where(df[t] != 0, (df[d] > 0).map({True: math.inf, False: math.nan}))
            add(E.ExpectColumnValuesToBeBetween(column="speed_kmh", max_value=float(q.mustBeLessThan),
                                                strict_max=True), q.name)
        elif rule == "locations_in_city":
            out.margin_km = float(custom.get("margin_km", 0))
            for point in custom.get("points") or []:
                lat, lon = by_name[f"{point}.lat"].column, by_name[f"{point}.lng"].column
                out.points.append((lat, lon))
                add(E.ExpectColumnValuesToBeBetween(column=lat, min_value=_param("min_lat"),
                                                    max_value=_param("max_lat")), q.name)
                add(E.ExpectColumnValuesToBeBetween(column=lon, min_value=_param("min_lon"),
                                                    max_value=_param("max_lon")), q.name)
        else:
            out.notes.append(f"quality rule {q.name or rule!r} is checked row by row only (no batch expectation)")

    name = ".".join(filter(None, ("landing", contract.id, contract.part)))
    out.suite = gx.ExpectationSuite(name=name, expectations=expectations)
    for k, e in enumerate(expectations):
        if isinstance(e, E.ExpectColumnValuesToBeUnique):
            out.unique[k] = [e.column]
        elif isinstance(e, E.ExpectCompoundColumnsToBeUnique):
            out.unique[k] = list(e.column_list)
    for e in expectations:
        kwargs = e.configuration.kwargs
        for c in [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B"), *(kwargs.get("column_list") or [])]:
            if c:
                out.read_columns.update(derived_sources.get(c, [c]))
    # logical types are checked on the Arrow schema: pandas blurs them (ints with nulls turn float)
    types = E.ExpectColumnPairValuesToBeEqual(column_A="batch_type", column_B="contract_type")
    types.meta = {"rule": "logical types"}
    out.schema_suite = gx.ExpectationSuite(name=f"{name}.schema", expectations=[types])
    return out


def _schema_object(contract: Contract) -> Any:
    return next(o for o in contract.model.schema_ if o.name == contract.table) if contract.table else contract.model.schema_[0]


def _require_unit(contract: Contract, name: str, unit: str) -> None:
    prop = next(p for p in _schema_object(contract).properties if p.name == name)
    found = {p.property: p.value for p in prop.customProperties or []}.get("unit")
    if found != unit:
        raise ValueError(f"{contract.ref}: plausible_speed needs '{name}' in {unit}, the contract says {found!r}")


# ---------------------------------------------------------------------------- per batch

def city_bbox(wd: Workdir) -> tuple[float, float, float, float] | None:
    """city.json's [minlon, minlat, maxlon, maxlat], or None without a city or a bbox."""
    try:
        bbox = json.loads(wd.city_meta.read_text()).get("bbox")
    except FileNotFoundError:
        return None
    return tuple(float(v) for v in bbox) if bbox else None  # type: ignore[return-value]


def batch_parameters(
    spec: LandingSuite, window: tuple[datetime, datetime], bbox: tuple[float, float, float, float] | None
) -> tuple[dict[str, Any], list[str]]:
    """Suite parameters for one batch, and notes on what could not be checked."""
    params: dict[str, Any] = {}
    notes: list[str] = []
    if spec.window == "instant":
        params["window_start"], params["window_end"] = (pd.Timestamp(t).tz_convert("UTC") for t in window)
    elif spec.window == "day":
        # a daily file holds local wall-clock times of the file's date
        day = pd.Timestamp(window[0].astimezone(timezone.utc).date())
        params["window_start"], params["window_end"] = day, day + pd.Timedelta(days=1)
    if spec.points:
        if bbox is None:
            # no city loaded: still a check, but only against the earth's bounds
            bbox = (-180.0, -90.0, 180.0, 90.0)
            notes.append("no city bbox in city.json: points checked against WGS84 bounds only")
        min_lon, min_lat, max_lon, max_lat = bbox
        dlat = spec.margin_km / KM_PER_DEG_LAT
        dlon = spec.margin_km / (KM_PER_DEG_LAT * max(math.cos(math.radians((min_lat + max_lat) / 2)), 0.01))
        params.update(min_lat=min_lat - dlat, max_lat=max_lat + dlat, min_lon=min_lon - dlon, max_lon=max_lon + dlon)
    return params, notes


def schema_frame(contract: Contract, table: pa.Table) -> pd.DataFrame:
    """One row per contract column: the Arrow type the batch has and the one the contract gives."""
    names = set(table.schema.names)
    return pd.DataFrame(
        {
            "column": [f.column for f in contract.fields],
            "batch_type": [str(table.schema.field(f.column).type) if f.column in names else "missing" for f in contract.fields],
            "contract_type": [str(f.arrow_type) for f in contract.fields],
        }
    )


def to_frame(spec: LandingSuite, table: pa.Table) -> pd.DataFrame:
    """The typed Arrow batch as pandas, with the derived columns the semantic rules check.

    Only the columns some expectation reads go in (GX falls back to pickling the whole frame when
    a column holds lists). Strings with repeats go in dictionary-encoded (pandas categoricals),
    which null-check, dedupe and set-check several times faster on a million rows than plain
    strings; unique and mostly-distinct ones (ids) stay plain and Arrow-backed: their categories
    would be a second copy of the column, and Arrow strings cost no Python object per value.
    Naive timestamps go in as nanoseconds, which GX compares vectorised.
    """
    wanted = [c for c in table.schema.names if c in spec.read_columns]
    table = table.select(wanted)
    keys = {c for columns in spec.unique.values() for c in columns}  # distinct by contract: not worth encoding
    for i, col in enumerate(table.schema):
        if pa.types.is_timestamp(col.type) and col.type.tz is None and col.type.unit != "ns":
            # GX compares naive datetimes vectorised only in nanoseconds, else row by row in Python
            try:
                table = table.set_column(i, col.name, table.column(i).cast(pa.timestamp("ns")))
            except pa.ArrowInvalid:
                pass  # a value beyond 2262 does not fit: GX's slow path still judges it
        if (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) and col.name not in keys:
            encoded = table.column(i).dictionary_encode().combine_chunks()
            if len(encoded.dictionary) <= table.num_rows // 2:
                table = table.set_column(i, col.name, encoded)
    frame = table.to_pandas(types_mapper={pa.string(): pd.ArrowDtype(pa.string()),
                                          pa.large_string(): pd.ArrowDtype(pa.large_string())}.get)
    for name, compute in spec.derived.items():
        try:
            frame[name] = compute(frame)
        except KeyError:
            pass  # a source column is missing: the schema expectation and this one fail on it in GX
    return frame


def run_landing_gate(
    workdir: Workdir,
    contract: Contract,
    table: pa.Table,
    *,
    window: tuple[datetime, datetime],
    partner_id: str,
    feed: str,
    batch: str,
    batch_id: str | None = None,
    quarantine_dir: Path | None = None,
    docs: str = "failures",
) -> GateResult:
    """Validate one batch's typed rows; write the result JSON and, on failure, the partner's report.

    ``batch`` names the result file (``<window>__<sha12>``). ``docs``: "failures" (default: Data
    Docs for failed batches only, a passing batch has its JSON result), "always" or "never".
    """
    gate = LandingGate(workdir, contract, window=window, partner_id=partner_id, feed=feed, batch=batch,
                       batch_id=batch_id, quarantine_dir=quarantine_dir, docs=docs)
    gate.add(table)
    return gate.finish()


class LandingGate:
    """The landing gate on one batch fed chunk by chunk, so a big batch is never one pandas frame.

    `add` validates the rows in slices of GATE_ROWS; `finish` gives the batch's verdict and only
    then writes anything (result JSON, Data Docs, the partner's report), so a batch refused for
    another reason after its rows were gated leaves no gate record. Per expectation the slices'
    outcomes add up to the whole batch's: every expectation is row by row except uniqueness,
    which is also checked across the slices (`SeenKeys`). Row numbers count from the batch's first row.
    """

    def __init__(self, workdir: Workdir, contract: Contract, *, window: tuple[datetime, datetime], partner_id: str,
                 feed: str, batch: str, batch_id: str | None = None, quarantine_dir: Path | None = None,
                 docs: str = "failures", background: bool = False):
        self.workdir, self.contract, self.window = workdir, contract, window
        # background: each slice is validated on a thread of the gate's own while the caller reads,
        # checks and writes the next rows (GX is mostly Python; Arrow, Parquet and the CSV and JSON
        # readers let go of the GIL). One slice at a time: `add` waits for the previous one first.
        self.background = background
        self.pool: ThreadPoolExecutor | None = None
        self.job: Future | None = None
        self.partner_id, self.feed, self.batch, self.batch_id = partner_id, feed, batch, batch_id
        self.quarantine_dir, self.docs = quarantine_dir, docs
        self.result = GateResult(gate="landing", run_at=datetime.now(timezone.utc).isoformat())
        self.params: dict[str, Any] = {}
        self.spec: LandingSuite | None = None
        self.context: Any = None
        self.schema: pa.Schema | None = None
        self.schema_outcomes: list[ExpectationOutcome] = []
        self.pending: list[pa.Table] = []
        self.rows = 0  # rows validated so far
        self.slices: list[list[ExpectationOutcome]] = []  # per validated slice, its outcomes
        self.stored: list[tuple[Any, Any, str]] = []  # (suite, GX result, batch id) for Data Docs
        self.examples: dict[int, dict] = {}  # batch row -> the row, for the report
        # unique expectation's position in the suite -> its keys so far, and each row whose key another has
        self.keys: dict[int, tuple[SeenKeys, dict[int, Any]]] = {}
        self.waiting: list[tuple[pa.Table, int]] = []  # a slice's keys not in `keys` yet, and its first row
        self.errored = False

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        if sum(t.num_rows for t in self.pending) >= GATE_ROWS:
            self.flush()

    def flush(self) -> None:
        """Validate the rows added so far as a slice now (on the gate's thread, if it has one):
        the batch has no more rows, and its last ones can be written while they are validated."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        if not self.background:
            self._validate_pending(pending)
            return
        self._wait()
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-gate")
        self.job = self.pool.submit(self._validate_pending, pending)

    def close(self) -> None:
        """Wait for a slice still being validated and stop the gate's thread (`finish` does it too)."""
        self._wait()
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def _wait(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.result()  # _validate_pending records an error as a failed gate: it does not raise

    def finish(self) -> GateResult:
        self.close()
        if self.pending or not self.slices:
            pending, self.pending = self.pending, []
            self._validate_pending(pending)
        result = self.result
        if not self.errored:
            outcomes = [_merge(parts) for parts in zip(*self.slices)]
            if len(self.slices) > 1:  # uniqueness across slices: GX saw each slice alone
                for k, (_, repeated) in self.keys.items():
                    outcomes[k] = _unique_outcome(outcomes[k], repeated)
            result.outcomes = self.schema_outcomes + outcomes
            if self.docs == "always" or (self.docs == "failures" and not result.success):
                result.data_docs = self._docs()
        result.result_path = _write_result(self.workdir, result, self.feed, self.partner_id, self.batch,
                                           json_safe(self.params))
        if not result.success:
            log.warning("batch %s: %s", self.batch_id or self.batch, result.message())
            if self.quarantine_dir is not None:
                write_report(self.quarantine_dir, result, self.examples, self.rows, self.contract,
                             batch_id=self.batch_id)
        return result

    def _validate_pending(self, pending: list[pa.Table]) -> None:
        table = pa.concat_tables(pending) if pending else self.contract.arrow_schema().empty_table()
        pending.clear()
        if not self.errored:
            try:
                with GX_LOCK:
                    self._validate(table)
            except Exception as exc:  # the gate itself broke: a failed check, never a pass
                log.exception("landing gate errored on %s", self.batch_id or self.batch)
                self.errored = True
                self.result.outcomes = [gate_error(exc)]
            collect_cycles()  # GX's cycles would otherwise keep this slice and its callers' data
        self.rows += table.num_rows

    def _validate(self, table: pa.Table) -> None:
        if self.context is not None:
            make_current(self.context)
        if self.spec is None:
            self.spec = landing_suite(self.contract)
            self.params, notes = batch_parameters(self.spec, self.window, city_bbox(self.workdir))
            self.result.notes += self.spec.notes + notes
            self.context = kept_context(self.workdir.gates if self.docs != "never" else None)
            # the logical types are the schema's, the same for every slice: checked once
            self.schema = table.schema
            suite = self.spec.schema_suite
            run = validate_frame(self.context, schema_frame(self.contract, table), suite, asset="landing_schema")
            self.schema_outcomes = outcomes_from(run[0], suite.name)
            self.stored.append((suite, *run))
        elif table.schema != self.schema:
            raise ValueError("the slices of one batch differ in schema")
        suite = self.spec.suite
        frame = to_frame(self.spec, table)
        frame.index = pd.RangeIndex(self.rows, self.rows + len(frame))  # GX's row numbers are the batch's
        outcomes: list[ExpectationOutcome] = []
        validator = frame_validator(self.context, frame, asset="landing")
        for result_format in (PASS_FORMAT, RESULT_FORMAT):
            run = validate_with(validator, suite, parameters=self.params, result_format=result_format)
            outcomes = outcomes_from(run[0], suite.name)
            if result_format is RESULT_FORMAT or (all(o.success for o in outcomes) and self.docs != "always"):
                break  # a failing slice (or one for Data Docs) goes again in SUMMARY, for its examples
        if result_format is RESULT_FORMAT:
            self.stored.append((suite, *run))
        del frame, validator
        for o in outcomes:
            rows = [i - self.rows for i in o.unexpected_index[:MAX_EXAMPLE_ROWS]
                    if isinstance(i, int) and self.rows <= i < self.rows + table.num_rows]
            for i, row in zip(rows, json_safe(table.take(rows).to_pylist()) if rows else []):
                self.examples[self.rows + i] = row
        self.slices.append(outcomes)
        # uniqueness across slices: a first slice's keys wait (referenced, not copied) for a second one
        unique = {k: cols for k, cols in self.spec.unique.items() if set(cols) <= set(table.schema.names)}
        self.waiting.append((table.select(sorted({c for cols in unique.values() for c in cols})), self.rows))
        if len(self.slices) > 1:
            for part, start in self.waiting:
                rows = np.arange(start, start + part.num_rows)
                for k, columns in unique.items():
                    seen, repeated = self.keys.setdefault(k, (SeenKeys(columns), {}))
                    for i, first, key in seen.add(part.select(columns), rows):
                        repeated[int(rows[i])] = repeated[first] = key
            self.waiting = []

    def _docs(self) -> str | None:
        run_name = f"{self.partner_id}.{self.feed}.{self.batch}"
        with GX_LOCK:
            make_current(self.context)
            keys = [store_result(self.context, suite, r, batch_id=b, run_name=run_name) for suite, r, b in self.stored]
            return build_docs(self.context, keys)


def _unique_outcome(merged: ExpectationOutcome, repeated: dict[int, Any]) -> ExpectationOutcome:
    """A uniqueness expectation on the whole batch; `repeated`: each row whose key another row has."""
    if not repeated:
        return merged
    rows = sorted(repeated)[:PARTIAL_UNEXPECTED]
    return replace(merged, success=False, unexpected_count=len(repeated),
                   unexpected_examples=json_safe([repeated[i] for i in rows]), unexpected_index=rows)


def _merge(parts: tuple[ExpectationOutcome, ...]) -> ExpectationOutcome:
    """One expectation's outcome on the whole batch from its outcomes on the slices, in row order."""
    if len(parts) == 1:
        return parts[0]
    counts = [o.unexpected_count for o in parts if o.unexpected_count is not None]
    return replace(
        parts[0],
        success=all(o.success for o in parts),
        observed_value=next((o.observed_value for o in parts if o.observed_value is not None), None),
        unexpected_count=sum(counts) if counts else None,
        unexpected_examples=[v for o in parts for v in o.unexpected_examples][:PARTIAL_UNEXPECTED],
        unexpected_index=[i for o in parts for i in o.unexpected_index][:PARTIAL_UNEXPECTED],
        exception=next((o.exception for o in parts if o.exception), None),
    )


def _write_result(wd: Workdir, result: GateResult, feed: str, partner_id: str, batch: str, params: dict) -> Path:
    folder = wd.gates / "landing" / feed / partner_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{batch}.json"
    payload = result.summary() | {"parameters": params, "outcomes": [json_safe(asdict(o)) for o in result.outcomes]}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def write_report(
    folder: Path, result: GateResult, examples: Mapping[int, dict], rows_checked: int, contract: Contract, *,
    batch_id: str | None,
) -> Path:
    """The partner-readable report of a rejected batch: each failed expectation, counts, example rows
    (`examples`: batch row -> the row, for rows the gate named)."""
    from ingest.landing import atomic_write  # landing imports this module; import late

    failed = []
    for o in result.failed:
        rows = [i for i in o.unexpected_index[:MAX_EXAMPLE_ROWS] if isinstance(i, int) and i in examples]
        failed.append({
            "expectation": o.expectation_type,
            "column": o.column,
            "rule": o.rule,
            "unexpected_rows": o.unexpected_count,
            "unexpected_values": o.unexpected_examples[:MAX_EXAMPLE_ROWS],
            "observed": o.observed_value,
            "gx_error": o.exception,
            "example_rows": [examples[i] for i in rows],
        })
    report = {
        "batch_id": batch_id,
        "contract": contract.ref,
        "verdict": "batch rejected by the landing gate: nothing from it was loaded",
        "rows_checked": rows_checked,
        "failed_expectations": failed,
        "notes": result.notes,
        "gate_result": str(result.result_path) if result.result_path else None,
        "data_docs": result.data_docs,
    }
    path = folder / "landing_gate.json"
    atomic_write(path, json.dumps(report, indent=2, default=str).encode())
    return path


def rejection_error(result: GateResult, report: Path | None) -> str:
    """The manifest's error for a gate-rejected batch: the failed expectations, by name."""
    names = sorted({f"{o.expectation_type}({o.column or o.frame})" for o in result.failed})
    where = f"; report {report}" if report else ""
    return f"landing gate failed {len(result.failed)} expectation(s): {', '.join(names)}{where}"
