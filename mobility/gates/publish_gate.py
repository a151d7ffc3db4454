"""The publish gate: Great Expectations on the marts, before anything is published.

GX validates pandas frames read with DuckDB, not SQL: through SQLAlchemy + duckdb-engine,
GX 1.24 gets empty query results and every expectation errors (see DESIGN.md).

Checks, per published mart:
- every neighborhood present for every day (row count = neighborhoods x days x modes, key unique;
  transit marts: x hours, and one row per day for the equity figure)
- shares (transit coverage, first/last mile) between 0 and 1
- no negative counts or rates; rates finite (inf fails the range check; NaN, which pandas cannot
  tell from NULL, fails "not null where population > 0", the only rows where a rate must exist)
- volume: the newest day's total trips within 0.5x..2x the median of the 7 days before it
  (`VolumeCheck`); with fewer than 3 prior days the result notes that volume was not judged
- supply, bike-share and compliance marts (`supply_suites`): every neighborhood present for every
  hour/day the mart covers, keys unique, counts not negative, shares within 0..1, rates finite
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
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from mobility.gates._gx import (
    GX_LOCK,
    ExpectationOutcome,
    GateFailed,
    GateResult,
    build_docs,
    gate_error,
    json_safe,
    new_context,
    outcomes_from,
    store_result,
    validate_frame,
)
from mobility.settings import Workdir
from mobility.warehouse.suppression import (
    DEFAULT_K,
    SUPPRESSION,
    WITHHELD,
    all_totals,
    suppressed_select,
    totals_of,
)

log = logging.getLogger(__name__)

MAX_RATE = 1e9  # finite upper bound: anything above is a bug, and inf fails it

NEIGHBORHOOD_DAY = "mart_trips_per_neighborhood_day"
EQUITY_DAILY = "mart_equity_trips_daily"
TRANSIT_SERVICE = "mart_transit_service"
EQUITY_TRANSIT = "mart_equity_transit_daily"
FIRST_LAST_MILE = "mart_first_last_mile"
NEIGHBORHOOD_HOUR = "mart_trips_per_neighborhood_mode_hour"
OD_FLOWS = "mart_od_flows"
FEED_HEALTH = "mart_feed_health"
SCORECARD = "mart_equity_scorecard"


# ---------------------------------------------------------------------------- frames to validate

def read_frames(wd: Workdir, k: int) -> tuple[dict[str, pd.DataFrame], list[int]]:
    """The marts as built, the suppressed frames that would be published, and the neighborhood ids."""
    frames: dict[str, pd.DataFrame] = {}
    con = duckdb.connect(str(wd.warehouse), read_only=True, config=wd.duckdb_config())
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
    for table, count, spec in all_totals():
        if f"{table}__published" not in frames or f"{spec.member_table}__published" not in frames:
            continue  # frames given by a caller may hold only some marts
        published = frames[f"{table}__published"]
        cells = frames[f"{spec.member_table}__published"]
        if spec.flag_column is not None:
            cells = cells[cells[spec.flag_column] == spec.flag_value]
        keys = list(spec.keys_in_total)
        grouped = (
            cells.rename(columns=dict(zip(spec.keys, spec.keys_in_total)))
            .groupby(keys, dropna=False)[spec.member_count]
            .agg(visible="sum", hidden_cells=lambda c: int(c.isna().sum()))
            .reset_index()
        )
        merged = published[keys + [count]].merge(grouped, on=keys, how="left")
        revealed = merged[count].notna()
        name = f"{table}__{count}" + (f"__{spec.member_table}" if len(totals_of(table, count)) > 1 else "")
        out[f"{name}__residuals"] = pd.DataFrame(
            {
                **{key: merged[key] for key in keys},
                "hidden_cells": merged["hidden_cells"].where(revealed).astype("Float64"),
                "residual": (merged[count] - merged["visible"]).where(revealed).astype("Float64"),
                # a hidden total whose cells are all visible would be their sum: it needs a hidden cell
                "hidden_cells_under_hidden_total": merged["hidden_cells"]
                .fillna(0)
                .where(~revealed & (merged["visible"].fillna(0) > 0))
                .astype("Float64"),
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

    if NEIGHBORHOOD_HOUR in frames:
        nh = frames[NEIGHBORHOOD_HOUR]
        hour_days = _days_in_range(nh["trip_date"]) if len(nh) else 0
        hour_modes = int(nh["mode"].nunique()) if len(nh) else 0
        suites[NEIGHBORHOOD_HOUR] = [
            # every neighborhood, every hour of every day of the range, every mode
            E.ExpectTableRowCountToEqual(value=len(neighborhood_ids) * hour_days * 24 * hour_modes),
            E.ExpectCompoundColumnsToBeUnique(column_list=["neighborhood_id", "trip_date", "local_hour", "mode"]),
            E.ExpectColumnDistinctValuesToEqualSet(column="neighborhood_id", value_set=neighborhood_ids),
            E.ExpectColumnValuesToBeBetween(column="local_hour", min_value=0, max_value=23),
        ]
        for count, rate in (("trips_started", "trips_started_per_1000_residents"),
                            ("trips_ended", "trips_ended_per_1000_residents")):
            suites[NEIGHBORHOOD_HOUR] += [
                E.ExpectColumnValuesToNotBeNull(column=count),
                E.ExpectColumnValuesToBeBetween(column=count, min_value=0),
                E.ExpectColumnValuesToBeBetween(column=rate, min_value=0, max_value=MAX_RATE),
                E.ExpectColumnValuesToNotBeNull(column=rate, row_condition=Column("population") > 0),
            ]
    if OD_FLOWS in frames:
        # only pairs with trips appear: no zero rows, no negative ones, one row per pair, day and mode
        suites[OD_FLOWS] = [
            E.ExpectCompoundColumnsToBeUnique(
                column_list=["origin_neighborhood_id", "destination_neighborhood_id", "trip_date", "mode"],
                ignore_row_if="never",
            ),
            E.ExpectColumnValuesToNotBeNull(column="origin_neighborhood_id"),
            E.ExpectColumnValuesToBeInSet(column="origin_neighborhood_id", value_set=neighborhood_ids),
            E.ExpectColumnValuesToBeInSet(column="destination_neighborhood_id", value_set=neighborhood_ids),
            E.ExpectColumnValuesToNotBeNull(column="trips"),
            E.ExpectColumnValuesToBeBetween(column="trips", min_value=1),
        ]
    if SCORECARD in frames:
        sc = frames[SCORECARD]
        metric_days = len(sc[["metric", "local_date"]].drop_duplicates()) if len(sc) else 0
        quintiles = sc.loc[sc["grouping"] == "income_quintile", "group_name"].nunique() if len(sc) else 0
        suites[SCORECARD] = [
            # every quintile of the city and the two equity groups, for every metric and day
            E.ExpectTableRowCountToEqual(value=metric_days * (quintiles + 2)),
            E.ExpectCompoundColumnsToBeUnique(column_list=["metric", "local_date", "grouping", "group_name"]),
            E.ExpectColumnValuesToBeBetween(column="value", min_value=0, max_value=MAX_RATE),
            E.ExpectColumnValuesToBeBetween(column="ratio_to_reference", min_value=0, max_value=MAX_RATE),
            E.ExpectColumnValuesToNotBeNull(column="value", row_condition=Column("residents") > 0),
        ]
    if FEED_HEALTH in frames:
        suites[FEED_HEALTH] = [
            E.ExpectCompoundColumnsToBeUnique(column_list=["partner_id", "feed", "local_date"]),
            *[
                E.ExpectColumnValuesToBeBetween(column=c, min_value=0)
                for c in ("batches", "batches_received", "batches_accepted", "batches_rejected", "fetch_errors",
                          "rows_received", "rows_accepted", "rows_quarantined", "batches_late")
            ],
            E.ExpectColumnValuesToBeBetween(column="max_hours_after_close", min_value=-MAX_RATE, max_value=MAX_RATE),
        ]

    suites.update(supply_suites(frames, neighborhood_ids))
    suites.update(transit_suites(frames, neighborhood_ids))

    small = list(range(1, k))
    for table, rules in SUPPRESSION.items():
        name = f"{table}__published"
        if table not in frames and name not in frames:
            continue  # frames handed in for other marts (read_frames always reads every declared mart)
        withheld = WITHHELD.get(table, ())
        suites[name] = [E.ExpectColumnValuesToNotBeInSet(column=c, value_set=small)
                        for c in rules if c not in withheld] if small else []
        if withheld and table in frames:  # columns that decide suppression must not leave the warehouse
            suites[name].append(E.ExpectTableColumnsToMatchSet(
                column_set=[c for c in frames[table].columns if c not in withheld], exact_match=True))
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
                # a hidden total over visible, positive cells would be given back by their sum
                E.ExpectColumnValuesToBeBetween(column="hidden_cells_under_hidden_total", min_value=1),
            ]
    return suites


def supply_suites(frames: Mapping[str, pd.DataFrame], neighborhood_ids: list[int]) -> dict[str, list]:
    """Supply, bike-share and compliance marts: every neighborhood present for every period the
    mart covers, keys unique, no negative count, shares within 0..1 and rates finite."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    E = gx.expectations
    suites: dict[str, list] = {}

    def per_neighborhood(table: str, period: list[str]) -> list:
        if table not in frames:
            return []
        frame = frames[table]
        periods = len(frame[period].drop_duplicates()) if len(frame) else 0
        checks = [
            E.ExpectTableRowCountToEqual(value=len(neighborhood_ids) * periods),
            E.ExpectCompoundColumnsToBeUnique(column_list=["neighborhood_id", *period]),
        ]
        if len(frame):
            checks.append(E.ExpectColumnDistinctValuesToEqualSet(column="neighborhood_id", value_set=neighborhood_ids))
        return checks

    def counts(*columns: str) -> list:
        return [e for c in columns for e in (E.ExpectColumnValuesToNotBeNull(column=c),
                                             E.ExpectColumnValuesToBeBetween(column=c, min_value=0))]

    def rates(*columns: str, max_value: float = MAX_RATE) -> list:
        return [E.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=max_value) for c in columns]

    def where_residents(column: str) -> list:
        return [E.ExpectColumnValuesToNotBeNull(column=column, row_condition=Column("population") > 0)]

    hourly = ["local_date", "local_hour", "mode"]
    present = set(frames)
    suites["mart_vehicle_availability"] = [
        *per_neighborhood("mart_vehicle_availability", hourly),
        *counts("avg_available_vehicles"), *rates("avg_available_vehicles", "available_per_1000_residents"),
        *where_residents("available_per_1000_residents"),
    ]
    suites["mart_vehicle_coverage"] = [
        *per_neighborhood("mart_vehicle_coverage", hourly),
        *counts("residents_covered"), *rates("share_residents_covered", max_value=1),
        *where_residents("share_residents_covered"),
    ]
    suites["mart_bikeshare_docks"] = [
        *per_neighborhood("mart_bikeshare_docks", ["local_date"]),
        *counts("stations", "docks", "trips_started"), *rates("docks_per_1000_residents", "trips_per_dock"),
        *where_residents("docks_per_1000_residents"),
    ]
    suites["mart_bikeshare_docks_by_quintile"] = [
        E.ExpectCompoundColumnsToBeUnique(column_list=["income_quintile", "local_date"]),
        *counts("stations", "docks", "trips_started"), *rates("docks_per_1000_residents", "trips_per_dock"),
    ]
    suites["mart_bikeshare_pass_mix"] = [
        E.ExpectCompoundColumnsToBeUnique(column_list=["income_quintile", "local_date", "pass_type"]),
        *counts("trips_started"),
    ]
    suites["mart_partner_compliance"] = [
        E.ExpectCompoundColumnsToBeUnique(column_list=["partner_id", "local_date", "check_hour"]),
        *counts("deployed_vehicles", "deployed_in_city", "deployed_in_equity_zones"),
        *rates("equity_zone_share", "required_equity_zone_share", "timeliness_share", "completeness_share",
               max_value=1),
        E.ExpectColumnValuesToNotBeNull(column="equity_zone_share", row_condition=Column("deployed_in_city") > 0),
    ]
    return {name: checks for name, checks in suites.items() if name in present}


def transit_suites(frames: Mapping[str, pd.DataFrame], neighborhood_ids: list[int]) -> dict[str, list]:
    """Transit marts: every neighborhood for every day (and hour) of their period, no negatives,
    shares in [0, 1], ratios finite. Frames handed in without them (tests of the trip marts) skip them;
    read_frames always reads every declared mart, so a missing table fails the gate there."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    E = gx.expectations
    suites: dict[str, list] = {}
    if TRANSIT_SERVICE in frames:
        ts = frames[TRANSIT_SERVICE]
        n_days = _days_in_range(ts["local_date"]) if len(ts) else 0
        suites[TRANSIT_SERVICE] = [
            E.ExpectTableRowCountToEqual(value=len(neighborhood_ids) * n_days * 24),
            E.ExpectCompoundColumnsToBeUnique(column_list=["neighborhood_id", "local_date", "local_hour"]),
            E.ExpectColumnValuesToBeBetween(column="local_hour", min_value=0, max_value=23),
            *([E.ExpectColumnDistinctValuesToEqualSet(column="neighborhood_id", value_set=neighborhood_ids)]
              if len(ts) else []),
            *[E.ExpectColumnValuesToNotBeNull(column=c)
              for c in ("stops", "departures", "frequent_stops", "residents_near_frequent_service")],
            *[E.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=MAX_RATE)
              for c in ("stops", "departures", "frequent_stops", "residents_near_frequent_service")],
            E.ExpectColumnValuesToBeBetween(column="share_near_frequent_service", min_value=0, max_value=1),
            E.ExpectColumnValuesToNotBeNull(
                column="share_near_frequent_service", row_condition=Column("population") > 0
            ),
        ]
        if EQUITY_TRANSIT in frames:
            suites[EQUITY_TRANSIT] = [
                E.ExpectTableRowCountToEqual(value=n_days),
                E.ExpectColumnValuesToBeUnique(column="local_date"),
                *[E.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1)
                  for c in ("equity_zone_share_near_frequent_service", "other_share_near_frequent_service")],
                *[E.ExpectColumnValuesToNotBeNull(column=share, row_condition=Column(pop) > 0)
                  for share, pop in (("equity_zone_share_near_frequent_service", "equity_zone_population"),
                                     ("other_share_near_frequent_service", "other_population"))],
                E.ExpectColumnValuesToBeBetween(column="equity_ratio", min_value=0, max_value=MAX_RATE),
                E.ExpectColumnValuesToNotBeNull(
                    column="equity_ratio", row_condition=Column("other_share_near_frequent_service") > 0
                ),
            ]
    if FIRST_LAST_MILE in frames:
        flm = frames[FIRST_LAST_MILE]
        n_days = _days_in_range(flm["trip_date"]) if len(flm) else 0
        counts = ("micromobility_trips", "trips_starting_near_frequent_stop", "trips_ending_near_frequent_stop",
                  "first_last_mile_trips")
        suites[FIRST_LAST_MILE] = [
            E.ExpectTableRowCountToEqual(value=len(neighborhood_ids) * n_days),
            E.ExpectCompoundColumnsToBeUnique(column_list=["neighborhood_id", "trip_date"]),
            *([E.ExpectColumnDistinctValuesToEqualSet(column="neighborhood_id", value_set=neighborhood_ids)]
              if len(flm) else []),
            *[E.ExpectColumnValuesToNotBeNull(column=c) for c in counts],
            *[E.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=MAX_RATE) for c in counts],
            E.ExpectColumnValuesToBeBetween(column="first_last_mile_share", min_value=0, max_value=1),
            E.ExpectColumnValuesToNotBeNull(
                column="first_last_mile_share", row_condition=Column("micromobility_trips") > 0
            ),
        ]
    return suites


def _days_in_range(dates: pd.Series) -> int:
    d = pd.to_datetime(dates)
    return int((d.max() - d.min()).days) + 1


# ---------------------------------------------------------------------------- running GX

def validate_frames(
    frames: Mapping[str, pd.DataFrame], suites: Mapping[str, list], docs_dir: Path | None
) -> tuple[list[ExpectationOutcome], str | None]:
    """Validate each frame with its suite; build Data Docs into docs_dir (the site shared by both gates)."""
    import great_expectations as gx

    outcomes: list[ExpectationOutcome] = []
    keys = []
    with GX_LOCK:
        context = new_context(docs_dir.parent if docs_dir is not None else None)
        run_name = f"publish-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
        for name, expectations in suites.items():
            if not expectations:
                continue
            suite = gx.ExpectationSuite(name=f"publish_gate.{name}", expectations=expectations)
            result, batch_id = validate_frame(context, frames[name], suite, asset=name)
            outcomes += outcomes_from(result, name)
            if docs_dir is not None:
                keys.append(store_result(context, suite, result, batch_id=batch_id, run_name=run_name))
        docs_url = build_docs(context, keys) if keys else None
    return outcomes, docs_url


# ---------------------------------------------------------------------------- volume against recent days

@dataclass(frozen=True)
class VolumeCheck:
    """The newest day's total trips against the median of the previous `days` days of the same mart."""

    days: int = 7
    min_ratio: float = 0.5
    max_ratio: float = 2.0
    min_history: int = 3  # fewer prior days than this: not judged, and the result says so


VOLUME = f"{NEIGHBORHOOD_DAY}__volume"


def volume_frame(mart: pd.DataFrame, check: VolumeCheck) -> tuple[pd.DataFrame, int, str]:
    """One row for the newest day: its trips, the prior days' median and the ratio; plus a note."""
    daily = mart.groupby(pd.to_datetime(mart["trip_date"]))["trips_started"].sum().sort_index()
    if daily.empty:
        return pd.DataFrame(columns=["trip_date", "trips", "baseline_median", "prior_days", "ratio"]), 0, (
            "volume: the mart has no day to compare"
        )
    newest = daily.index[-1]
    prior = daily[(daily.index < newest) & (daily.index >= newest - pd.Timedelta(days=check.days))]
    trips = float(daily.iloc[-1])
    median = float(prior.median()) if len(prior) else math.nan
    if len(prior) == 0:
        ratio = math.nan
    elif median == 0:
        ratio = 1.0 if trips == 0 else math.inf  # from nothing to something is a spike
    else:
        ratio = trips / median
    frame = pd.DataFrame(
        {"trip_date": [newest], "trips": [trips], "baseline_median": [median], "prior_days": [len(prior)], "ratio": [ratio]}
    )
    note = (
        f"volume: {newest:%Y-%m-%d} has {trips:,.0f} trips vs a median of {median:,.1f} over {len(prior)} prior "
        f"day(s) (ratio {ratio:.2f}; allowed {check.min_ratio}..{check.max_ratio})"
    )
    if len(prior) < check.min_history:
        note += f"; not judged: fewer than {check.min_history} prior days of history"
    return frame, len(prior), note


def volume_suites(frame: pd.DataFrame, prior_days: int, check: VolumeCheck) -> dict[str, list]:
    import great_expectations as gx

    if prior_days < check.min_history:
        return {}
    E = gx.expectations
    return {
        VOLUME: [
            E.ExpectColumnValuesToNotBeNull(column="ratio"),
            E.ExpectColumnValuesToBeBetween(column="ratio", min_value=check.min_ratio, max_value=check.max_ratio),
        ]
    }


def run_publish_gate(
    workdir: Workdir | str | Path,
    k: int = DEFAULT_K,
    *,
    enforce: bool = True,
    frames: Mapping[str, pd.DataFrame] | None = None,
    neighborhood_ids: list[int] | None = None,
    validate: Callable[..., tuple[list[ExpectationOutcome], str | None]] = validate_frames,
    volume: VolumeCheck = VolumeCheck(),
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
        frames[VOLUME], prior_days, note = volume_frame(frames[NEIGHBORHOOD_DAY], volume)
        result.notes.append(note)
        suites = {**build_suites(frames, neighborhood_ids, k), **volume_suites(frames[VOLUME], prior_days, volume)}
        result.outcomes, result.data_docs = validate(frames, suites, wd.gates / "data_docs")
    except Exception as exc:  # the gate itself broke: record it as a failed check, never a pass
        log.exception("publish gate errored")
        result.outcomes.append(gate_error(exc))
    result.result_path = _write_result(wd, result, run_at)
    log.info(result.message())
    if enforce and not result.success:
        raise GateFailed(result.message(), result)
    return result


def _write_result(wd: Workdir, result: GateResult, run_at: datetime) -> Path:
    folder = wd.gates / "publish"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_at:%Y%m%dT%H%M%S%fZ}.json"
    payload = result.summary() | {"outcomes": [json_safe(asdict(o)) for o in result.outcomes]}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
