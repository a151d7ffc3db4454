"""The publish gate: Great Expectations on the marts, before anything is published.

GX validates pandas frames read with DuckDB, not SQL: through SQLAlchemy + duckdb-engine,
GX 1.24 gets empty query results and every expectation errors (see DESIGN.md).

Checks, per published mart:
- every neighborhood present for every day (row count = neighborhoods x days x modes, key unique)
- no negative counts or rates; rates finite (inf fails the range check; NaN, which pandas cannot
  tell from NULL, fails "not null where population > 0", the only rows where a rate must exist)
- suppression applied: the frame that will be published has no count in 1..k-1, and no
  published total gives back a suppressed cell by subtraction (complementary suppression):
  from the published frames alone, a total minus its visible cells is 0 with no hidden cell, or
  at least k spread over at least two hidden cells, never a lone cell nor a value in 1..k-1
A GX error inside an expectation is a failure, never a pass.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from mobility.settings import Workdir
from mobility.warehouse.suppression import COMPLEMENTARY, DEFAULT_K, SUPPRESSION, suppressed_select

log = logging.getLogger(__name__)

MAX_RATE = 1e9  # finite upper bound: anything above is a bug, and inf fails it

NEIGHBORHOOD_DAY = "mart_trips_per_neighborhood_day"
EQUITY_DAILY = "mart_equity_trips_daily"


class GateFailed(RuntimeError):
    """The gate failed; the message names each failed expectation."""

    def __init__(self, message: str, result: "GateResult"):
        super().__init__(message)
        self.result = result


@dataclass
class ExpectationOutcome:
    frame: str
    expectation_type: str
    column: str | None
    success: bool
    observed_value: Any = None
    unexpected_count: int | None = None
    unexpected_examples: list = field(default_factory=list)
    exception: str | None = None

    def describe(self) -> str:
        where = f"{self.frame}.{self.column}" if self.column else self.frame
        if self.exception:
            return f"{self.expectation_type} on {where}: GX error: {self.exception}"
        detail = f"observed {self.observed_value!r}" if self.observed_value is not None else ""
        if self.unexpected_count:
            detail = f"{self.unexpected_count} unexpected, e.g. {self.unexpected_examples[:5]!r}"
        return f"{self.expectation_type} on {where}: {detail}".rstrip(": ")


@dataclass
class GateResult:
    gate: str
    run_at: str
    k: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    result_path: Path | None = None
    data_docs: str | None = None

    @property
    def success(self) -> bool:
        # an empty gate proves nothing: no outcomes is a failure too
        return bool(self.outcomes) and all(o.success for o in self.outcomes)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def message(self) -> str:
        if self.success:
            return f"{self.gate} gate passed ({len(self.outcomes)} expectations)"
        if not self.outcomes:
            return f"{self.gate} gate failed: no expectation was evaluated"
        lines = [f"{self.gate} gate failed {len(self.failed)} of {len(self.outcomes)} expectations:"]
        return "\n".join(lines + [f"- {o.describe()}" for o in self.failed])

    def summary(self) -> dict:
        return {
            "gate": self.gate,
            "success": self.success,
            "run_at": self.run_at,
            "k": self.k,
            "expectations": len(self.outcomes),
            "failed": [o.describe() for o in self.failed],
            "result_path": str(self.result_path) if self.result_path else None,
            "data_docs": self.data_docs,
        }


# ---------------------------------------------------------------------------- frames to validate

def read_frames(wd: Workdir, k: int) -> tuple[dict[str, pd.DataFrame], list[int]]:
    """The marts as built, the suppressed frames that would be published, and the neighborhood ids."""
    frames: dict[str, pd.DataFrame] = {}
    con = duckdb.connect(str(wd.warehouse), read_only=True)
    try:
        for table in SUPPRESSION:
            frames[table] = con.execute(f'select * from main."{table}"').df()
            columns = list(frames[table].columns)
            frames[f"{table}__published"] = con.execute(suppressed_select(table, columns, k)).df()
    finally:
        con.close()
    ids = duckdb.sql(
        f"select distinct neighborhood_id from read_parquet('{_quote(wd.neighborhoods)}') order by 1"
    ).fetchall()
    return frames, [int(r[0]) for r in ids]


def residual_frames(frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """For each published total over published cells: how many cells are hidden and what they add up to.

    Computed from the published frames alone, as an analyst would: residual = total - visible cells.
    Rows whose total is itself suppressed reveal nothing and get nulls.
    """
    out: dict[str, pd.DataFrame] = {}
    for table, totals in COMPLEMENTARY.items():
        published = frames[f"{table}__published"]
        for count, spec in totals.items():
            cells = frames[f"{spec.member_table}__published"]
            if spec.flag_column is not None:
                cells = cells[cells[spec.flag_column] == spec.flag_value]
            keys = list(spec.keys)
            grouped = cells.groupby(keys, dropna=False)[spec.member_count].agg(
                visible="sum", hidden_cells=lambda c: int(c.isna().sum())
            ).reset_index()
            merged = published[keys + [count]].merge(grouped, on=keys, how="left")
            revealed = merged[count].notna()
            out[f"{table}__{count}__residuals"] = pd.DataFrame(
                {
                    **{key: merged[key] for key in keys},
                    "hidden_cells": merged["hidden_cells"].where(revealed).astype("Float64"),
                    "residual": (merged[count] - merged["visible"]).where(revealed).astype("Float64"),
                }
            )
    return out


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


# ---------------------------------------------------------------------------- expectations

def build_suites(frames: Mapping[str, pd.DataFrame], neighborhood_ids: list[int], k: int) -> dict[str, list]:
    """Frame name -> list of GX expectations. Expected row counts come from the data's own day range."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    E = gx.expectations
    suites: dict[str, list] = {}

    nd = frames[NEIGHBORHOOD_DAY]
    n_days = _days_in_range(nd["trip_date"]) if len(nd) else 0
    n_modes = int(nd["mode"].nunique()) if len(nd) else 0
    suites[NEIGHBORHOOD_DAY] = [
        E.ExpectTableRowCountToEqual(value=len(neighborhood_ids) * n_days * n_modes),
        E.ExpectCompoundColumnsToBeUnique(column_list=["neighborhood_id", "trip_date", "mode"]),
        E.ExpectColumnDistinctValuesToEqualSet(column="neighborhood_id", value_set=neighborhood_ids),
        E.ExpectColumnValuesToNotBeNull(column="trips_started"),
        E.ExpectColumnValuesToBeBetween(column="trips_started", min_value=0),
        E.ExpectColumnValuesToBeBetween(column="trips_per_1000_residents", min_value=0, max_value=MAX_RATE),
        E.ExpectColumnValuesToNotBeNull(column="trips_per_1000_residents", row_condition=Column("population") > 0),
    ]

    # one row per day and mode of the neighborhood-day mart's range
    suites[EQUITY_DAILY] = [
        E.ExpectTableRowCountToEqual(value=n_days * n_modes),
        E.ExpectCompoundColumnsToBeUnique(column_list=["trip_date", "mode"]),
    ]
    for col in ("equity_zone_trips_started", "other_trips_started"):
        suites[EQUITY_DAILY] += [
            E.ExpectColumnValuesToNotBeNull(column=col),
            E.ExpectColumnValuesToBeBetween(column=col, min_value=0),
        ]
    for col, pop in (
        ("equity_zone_trips_per_1000_residents", "equity_zone_population"),
        ("other_trips_per_1000_residents", "other_population"),
    ):
        suites[EQUITY_DAILY] += [
            E.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=MAX_RATE),
            E.ExpectColumnValuesToNotBeNull(column=col, row_condition=Column(pop) > 0),
        ]
    suites[EQUITY_DAILY] += [
        E.ExpectColumnValuesToBeBetween(column="equity_ratio", min_value=0, max_value=MAX_RATE),
        E.ExpectColumnValuesToNotBeNull(
            column="equity_ratio", row_condition=Column("other_trips_per_1000_residents") > 0
        ),
    ]

    small = list(range(1, k))
    for table, rules in SUPPRESSION.items():
        name = f"{table}__published"
        suites[name] = [E.ExpectColumnValuesToNotBeInSet(column=c, value_set=small) for c in rules] if small else []
    for name in frames:
        if name.endswith("__residuals"):
            # a lone hidden cell, or hidden cells adding up to less than k, can be recovered
            suites[name] = [E.ExpectColumnValuesToNotBeInSet(column="hidden_cells", value_set=[1])]
            if small:
                suites[name].append(E.ExpectColumnValuesToNotBeInSet(column="residual", value_set=small))
            suites[name] += [
                # hidden cells must hide at least k between them (hidden zeros would show as 0)
                E.ExpectColumnValuesToBeBetween(
                    column="residual", min_value=k, row_condition=Column("hidden_cells") >= 2
                ),
                # nothing hidden: the total must be exactly its visible cells, or the relation is wrong
                E.ExpectColumnValuesToBeBetween(
                    column="residual", min_value=0, max_value=0, row_condition=Column("hidden_cells") == 0
                ),
            ]
    return suites


def _days_in_range(dates: pd.Series) -> int:
    d = pd.to_datetime(dates)
    return int((d.max() - d.min()).days) + 1


# ---------------------------------------------------------------------------- running GX

def _exception_text(info: Any) -> str | None:
    """GX reports errors either flat or keyed by metric id; find any raised exception in either."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for value in info.values():
        found = _exception_text(value)
        if found:
            return found
    return None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


def validate_frames(
    frames: Mapping[str, pd.DataFrame], suites: Mapping[str, list], docs_dir: Path | None
) -> tuple[list[ExpectationOutcome], str | None]:
    """Validate each frame with its suite in an ephemeral GX context; build Data Docs into docs_dir."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    site = "publish_gate"
    if docs_dir is not None:
        context.add_data_docs_site(
            site,
            {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    source = context.data_sources.add_pandas("marts")
    outcomes: list[ExpectationOutcome] = []
    for name, expectations in suites.items():
        if not expectations:
            continue
        batch_definition = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(gx.ExpectationSuite(name=f"publish_gate.{name}"))
        for expectation in expectations:
            suite.add_expectation(expectation)
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"publish_gate.{name}", data=batch_definition, suite=suite)
        )
        result = validation.run(batch_parameters={"dataframe": frames[name]}, result_format="SUMMARY")
        for r in result.results:
            exception = _exception_text(r.exception_info)
            details = r.result or {}
            outcomes.append(
                ExpectationOutcome(
                    frame=name,
                    expectation_type=r.expectation_config.type,
                    column=r.expectation_config.kwargs.get("column"),
                    # an expectation that raised is a failure whatever GX put in `success`
                    success=bool(r.success) and exception is None,
                    observed_value=_json_safe(details.get("observed_value")),
                    unexpected_count=details.get("unexpected_count"),
                    unexpected_examples=_json_safe(details.get("partial_unexpected_list") or []),
                    exception=exception,
                )
            )
    docs_url = None
    if docs_dir is not None:
        docs_url = context.build_data_docs(site_names=[site]).get(site)
    return outcomes, docs_url


def run_publish_gate(
    workdir: Workdir | str | Path,
    k: int = DEFAULT_K,
    *,
    enforce: bool = True,
    frames: Mapping[str, pd.DataFrame] | None = None,
    neighborhood_ids: list[int] | None = None,
    validate: Callable[..., tuple[list[ExpectationOutcome], str | None]] = validate_frames,
) -> GateResult:
    """Run the publish gate on the warehouse's marts; write the JSON result; raise GateFailed if enforcing.

    ``frames``/``neighborhood_ids`` override what is read from the warehouse (tests plant bad marts).
    """
    wd = workdir if isinstance(workdir, Workdir) else Workdir.resolve(workdir)
    run_at = datetime.now(timezone.utc)
    result = GateResult(gate="publish", run_at=run_at.isoformat(), k=k)
    try:
        if frames is None or neighborhood_ids is None:
            read, ids = read_frames(wd, k)
            frames = frames if frames is not None else read
            neighborhood_ids = neighborhood_ids if neighborhood_ids is not None else ids
        frames = {**frames, **residual_frames(frames)}
        suites = build_suites(frames, neighborhood_ids, k)
        result.outcomes, result.data_docs = validate(frames, suites, wd.gates / "data_docs")
    except Exception as exc:  # the gate itself broke: record it as a failed check, never a pass
        log.exception("publish gate errored")
        result.outcomes.append(
            ExpectationOutcome(frame="*", expectation_type="gate_run", column=None, success=False,
                               exception=f"{type(exc).__name__}: {exc}")
        )
    result.result_path = _write_result(wd, result, run_at)
    log.info(result.message())
    if enforce and not result.success:
        raise GateFailed(result.message(), result)
    return result


def _write_result(wd: Workdir, result: GateResult, run_at: datetime) -> Path:
    folder = wd.gates / "publish"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_at:%Y%m%dT%H%M%S%fZ}.json"
    payload = result.summary() | {"outcomes": [_json_safe(asdict(o)) for o in result.outcomes]}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
