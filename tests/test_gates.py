"""The publish gate: clean marts pass; each planted defect fails on the named expectation."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from fixtures_lake import DAY1, MART_NEIGHBORHOODS, built_lake, mart_connection  # noqa: F401  (session fixture)
from mobility.gates.publish_gate import (
    EQUITY_DAILY,
    NEIGHBORHOOD_DAY,
    GateFailed,
    read_frames,
    run_publish_gate,
)
from mobility.settings import Workdir
from mobility.warehouse.suppression import suppressed_select

K = 10


@pytest.fixture(scope="module")
def clean(built_lake: Workdir) -> tuple[dict[str, pd.DataFrame], list[int]]:
    return read_frames(built_lake, K)


def _copy(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: df.copy() for name, df in frames.items()}


def _failed_types(err: GateFailed) -> set[tuple[str, str, str | None]]:
    return {(o.frame, o.expectation_type, o.column) for o in err.result.failed}


def test_gate_passes_on_clean_marts_and_records_its_result(built_lake: Workdir) -> None:
    result = run_publish_gate(built_lake, k=K, enforce=True)
    assert result.success, result.message()
    assert len(result.outcomes) >= 15
    record = json.loads(result.result_path.read_text())
    assert record["success"] is True and record["gate"] == "publish"
    assert {o["expectation_type"] for o in record["outcomes"]} >= {
        "expect_table_row_count_to_equal",
        "expect_column_values_to_not_be_in_set",
    }
    assert (built_lake.gates / "data_docs" / "index.html").exists()


def test_missing_neighborhood_fails(built_lake: Workdir, clean) -> None:
    frames, ids = clean
    frames = _copy(frames)
    nd = frames[NEIGHBORHOOD_DAY]
    frames[NEIGHBORHOOD_DAY] = nd[~((nd.neighborhood_id == 3) & (nd.trip_date == nd.trip_date.min()))]
    with pytest.raises(GateFailed, match="expect_table_row_count_to_equal on mart_trips_per_neighborhood_day"):
        run_publish_gate(built_lake, k=K, frames=frames, neighborhood_ids=ids)


def test_negative_count_fails(built_lake: Workdir, clean) -> None:
    frames, ids = _copy(clean[0]), clean[1]
    frames[NEIGHBORHOOD_DAY].loc[0, "trips_started"] = -1
    with pytest.raises(GateFailed) as err:
        run_publish_gate(built_lake, k=K, frames=frames, neighborhood_ids=ids)
    assert (NEIGHBORHOOD_DAY, "expect_column_values_to_be_between", "trips_started") in _failed_types(err.value)
    assert "expect_column_values_to_be_between on mart_trips_per_neighborhood_day.trips_started" in str(err.value)


@pytest.mark.parametrize(
    ("bad", "expectation"),
    [(math.inf, "expect_column_values_to_be_between"), (math.nan, "expect_column_values_to_not_be_null")],
)
def test_non_finite_rate_fails(built_lake: Workdir, clean, bad: float, expectation: str) -> None:
    frames, ids = _copy(clean[0]), clean[1]
    frames[EQUITY_DAILY].loc[0, "equity_ratio" if math.isinf(bad) else "other_trips_per_1000_residents"] = bad
    frames[NEIGHBORHOOD_DAY].loc[0, "trips_per_1000_residents"] = bad
    with pytest.raises(GateFailed) as err:
        run_publish_gate(built_lake, k=K, frames=frames, neighborhood_ids=ids)
    failed = _failed_types(err.value)
    assert (NEIGHBORHOOD_DAY, expectation, "trips_per_1000_residents") in failed
    assert any(frame == EQUITY_DAILY and kind == expectation for frame, kind, _ in failed)


def test_unsuppressed_small_count_fails(built_lake: Workdir, clean) -> None:
    frames, ids = _copy(clean[0]), clean[1]
    # suppression forgotten: what would be published is the raw mart, with its counts of 1, 3 and 9
    frames[f"{NEIGHBORHOOD_DAY}__published"] = frames[NEIGHBORHOOD_DAY].copy()
    with pytest.raises(GateFailed) as err:
        run_publish_gate(built_lake, k=K, frames=frames, neighborhood_ids=ids)
    # the raw day totals also give back hidden hours and flows (checked by the residual frames)
    (outcome,) = [o for o in err.value.result.failed if o.frame == f"{NEIGHBORHOOD_DAY}__published"]
    assert (outcome.expectation_type, outcome.column) == ("expect_column_values_to_not_be_in_set", "trips_started")
    assert sorted(outcome.unexpected_examples) == [1, 3, 9]


def test_gx_error_in_an_expectation_is_a_failure(built_lake: Workdir, clean) -> None:
    frames, ids = _copy(clean[0]), clean[1]
    frames[NEIGHBORHOOD_DAY] = frames[NEIGHBORHOOD_DAY].drop(columns=["trips_per_1000_residents"])
    result = run_publish_gate(built_lake, k=K, frames=frames, neighborhood_ids=ids, enforce=False)
    assert not result.success
    errored = [o for o in result.failed if o.exception]
    assert errored and all(o.column == "trips_per_1000_residents" for o in errored)
    assert "GX error" in result.message()


def test_gate_that_cannot_run_is_a_failure(built_lake: Workdir, clean) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("GX blew up")

    with pytest.raises(GateFailed, match="gate_run.*GX blew up"):
        run_publish_gate(built_lake, k=K, frames=clean[0], neighborhood_ids=clean[1], validate=broken)


OTHER_RESIDUALS = f"{EQUITY_DAILY}__other_trips_started__residuals"
EQUITY_RESIDUALS = f"{EQUITY_DAILY}__equity_zone_trips_started__residuals"


def test_total_revealing_a_suppressed_cell_fails(built_lake: Workdir, clean) -> None:
    frames, ids = _copy(clean[0]), clean[1]
    published = frames[f"{NEIGHBORHOOD_DAY}__published"]
    # day 1, rest of the city: Hilltop 3 is hidden and Lakeshore 10 is its complement
    lakeshore = (published.neighborhood_id == 4) & (published.trip_date == pd.Timestamp(DAY1))
    assert published.loc[lakeshore, "trips_started"].isna().all()
    # complement forgotten: Lakeshore published, so the total 13 - 10 gives Hilltop's 3 back
    published.loc[lakeshore, "trips_started"] = 10
    with pytest.raises(GateFailed) as err:
        run_publish_gate(built_lake, k=K, frames=frames, neighborhood_ids=ids)
    failed = _failed_types(err.value)
    assert (OTHER_RESIDUALS, "expect_column_values_to_not_be_in_set", "hidden_cells") in failed
    assert (OTHER_RESIDUALS, "expect_column_values_to_not_be_in_set", "residual") in failed
    assert f"expect_column_values_to_not_be_in_set on {OTHER_RESIDUALS}.residual" in str(err.value)


# hand-made marts with every case of complementary suppression (see test_warehouse.CELLS)
MART_CELLS = {
    (1, "2026-07-01", "scooter"): 3, (3, "2026-07-01", "scooter"): 11, (4, "2026-07-01", "scooter"): 11,
    (5, "2026-07-01", "scooter"): 40, (6, "2026-07-01", "scooter"): 12, (8, "2026-07-01", "scooter"): 30,
    (1, "2026-07-02", "scooter"): 2, (2, "2026-07-02", "scooter"): 4, (3, "2026-07-02", "scooter"): 30,
    (4, "2026-07-02", "scooter"): 12, (5, "2026-07-02", "scooter"): 1, (6, "2026-07-02", "scooter"): 9,
    (7, "2026-07-02", "scooter"): 50, (1, "2026-07-03", "scooter"): 3, (5, "2026-07-03", "scooter"): 20,
    (6, "2026-07-03", "scooter"): 25, (7, "2026-07-03", "scooter"): 10,
    (1, "2026-07-01", "bike"): 5, (2, "2026-07-01", "bike"): 20,
}


@pytest.fixture()
def mart_frames() -> tuple[dict[str, pd.DataFrame], list[int]]:
    con = mart_connection(MART_CELLS)
    frames: dict[str, pd.DataFrame] = {}
    for table in (NEIGHBORHOOD_DAY, EQUITY_DAILY):  # the marts mart_connection holds
        frames[table] = con.execute(f'select * from "{table}"').df()
        columns = list(frames[table].columns)
        frames[f"{table}__published"] = con.execute(suppressed_select(table, columns, K)).df()
    con.close()
    return frames, [n[0] for n in MART_NEIGHBORHOODS]


def test_gate_passes_on_complementary_cell_suppression(tmp_path, mart_frames) -> None:
    frames, ids = mart_frames
    published = frames[f"{NEIGHBORHOOD_DAY}__published"]
    assert published.trips_started.isna().sum() == 10  # 6 small cells + 4 complements
    totals = frames[f"{EQUITY_DAILY}__published"]
    assert totals.equity_zone_trips_started.isna().sum() == 1  # only the group with no complement left
    result = run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    assert result.success, result.message()


@pytest.mark.parametrize(
    "cell",
    [
        # one small cell (3) with its complement (11) published again: 25 - 22 = 3, one hidden cell
        (3, "2026-07-01", "scooter"),
        # two small cells (2 + 4) without their complement (12): 48 - 42 = 6 over two hidden cells
        (4, "2026-07-02", "scooter"),
    ],
)
def test_gate_fails_when_a_complement_is_missing(tmp_path, mart_frames, cell) -> None:
    frames, ids = mart_frames
    frames = _copy(frames)
    published = frames[f"{NEIGHBORHOOD_DAY}__published"]
    nid, day, mode = cell
    where = published.neighborhood_id.eq(nid) & published.trip_date.eq(pd.Timestamp(day)) & published["mode"].eq(mode)
    assert where.sum() == 1 and published.loc[where, "trips_started"].isna().all()
    published.loc[where, "trips_started"] = MART_CELLS[cell]
    with pytest.raises(GateFailed) as err:
        run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    failed = _failed_types(err.value)
    assert (EQUITY_RESIDUALS, "expect_column_values_to_not_be_in_set", "residual") in failed
    if nid == 4:  # two hidden cells remain, adding up to 6 < k
        assert (EQUITY_RESIDUALS, "expect_column_values_to_be_between", "residual") in failed
    else:  # a lone hidden cell
        assert (EQUITY_RESIDUALS, "expect_column_values_to_not_be_in_set", "hidden_cells") in failed


def test_gate_fails_when_a_total_without_complements_is_published(tmp_path, mart_frames) -> None:
    frames, ids = mart_frames
    frames = _copy(frames)
    # day 3, equity zones: 3 and zeros; publishing the total (3) gives the cell back
    frames[f"{EQUITY_DAILY}__published"] = frames[EQUITY_DAILY].copy()
    with pytest.raises(GateFailed) as err:
        run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    failed = _failed_types(err.value)
    assert (EQUITY_RESIDUALS, "expect_column_values_to_not_be_in_set", "hidden_cells") in failed
    assert (EQUITY_RESIDUALS, "expect_column_values_to_not_be_in_set", "residual") in failed


def test_gate_fails_when_hidden_cells_are_zeros(tmp_path, mart_frames) -> None:
    frames, ids = mart_frames
    frames = _copy(frames)
    published = frames[f"{NEIGHBORHOOD_DAY}__published"]
    # day 1 (bike), the rest of the city has only zeros: hiding two of them gives a total of 0 back,
    # which tells that both hidden cells are 0 (no small count here, only the residual check sees it)
    where = (
        published.trip_date.eq(pd.Timestamp("2026-07-01"))
        & published["mode"].eq("bike")
        & published.neighborhood_id.isin([5, 6])
    )
    published.loc[where, "trips_started"] = None
    with pytest.raises(GateFailed) as err:
        run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    failed = _failed_types(err.value)
    assert failed == {(OTHER_RESIDUALS, "expect_column_values_to_be_between", "residual")}


# ---------------------------------------------------------------------------- volume against recent days

VOLUME = f"{NEIGHBORHOOD_DAY}__volume"


def _volume_frames(last_day_per_cell: int, days: int = 10) -> tuple[dict[str, pd.DataFrame], list[int]]:
    """Marts of `days` days, 20-22 trips per neighborhood a day (none suppressed); the last day set apart."""
    cells = {}
    for d in range(1, days + 1):
        per_cell = last_day_per_cell if d == days else 20 + d % 3
        for nid, _, _ in MART_NEIGHBORHOODS:
            cells[(nid, f"2026-07-{d:02d}", "scooter")] = per_cell
    if last_day_per_cell < K:  # a drop: put the day's trips in one cell so nothing needs suppressing
        for nid, _, _ in MART_NEIGHBORHOODS:
            cells[(nid, f"2026-07-{days:02d}", "scooter")] = 0
        cells[(1, f"2026-07-{days:02d}", "scooter")] = last_day_per_cell * len(MART_NEIGHBORHOODS)
    con = mart_connection(cells)
    frames: dict[str, pd.DataFrame] = {}
    for table in (NEIGHBORHOOD_DAY, EQUITY_DAILY):  # the marts mart_connection holds
        frames[table] = con.execute(f'select * from "{table}"').df()
        frames[f"{table}__published"] = con.execute(suppressed_select(table, list(frames[table].columns), K)).df()
    con.close()
    return frames, [n[0] for n in MART_NEIGHBORHOODS]


def test_volume_normal_day_passes(tmp_path) -> None:
    frames, ids = _volume_frames(21)
    result = run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    assert result.success, result.message()
    assert any(o.frame == VOLUME and o.column == "ratio" for o in result.outcomes)
    assert any("volume: 2026-07-10" in n and "over 7 prior day(s)" in n for n in result.notes)


@pytest.mark.parametrize(("per_cell", "kind"), [(2, "drop"), (60, "spike")])
def test_volume_drop_or_spike_fails_on_the_named_expectation(tmp_path, per_cell: int, kind: str) -> None:
    frames, ids = _volume_frames(per_cell)  # 2 vs ~21 per cell is a 90% drop; 60 is ~2.9x
    with pytest.raises(GateFailed) as err:
        run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    assert (VOLUME, "expect_column_values_to_be_between", "ratio") in _failed_types(err.value)
    assert f"expect_column_values_to_be_between on {VOLUME}.ratio" in str(err.value)
    (outcome,) = [o for o in err.value.result.failed if o.frame == VOLUME]
    ratio = outcome.unexpected_examples[0]
    assert ratio < 0.5 if kind == "drop" else ratio > 2


def test_volume_with_too_little_history_passes_with_a_note(tmp_path) -> None:
    frames, ids = _volume_frames(2, days=3)  # a 90% drop, but only 2 prior days
    result = run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids, enforce=False)
    assert result.success, result.message()
    assert not any(o.frame == VOLUME for o in result.outcomes)
    assert any("not judged: fewer than 3 prior days" in n for n in result.notes)
    assert json.loads(result.result_path.read_text())["notes"] == result.notes
