"""The publish gate: clean marts pass; each planted defect fails on the named expectation."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from fixtures_lake import built_lake  # noqa: F401  (session fixture)
from mobility.gates.publish_gate import (
    EQUITY_DAILY,
    NEIGHBORHOOD_DAY,
    GateFailed,
    read_frames,
    run_publish_gate,
)
from mobility.settings import Workdir

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
    (outcome,) = err.value.result.failed
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


def test_total_revealing_a_suppressed_cell_fails(built_lake: Workdir, clean) -> None:
    frames, ids = _copy(clean[0]), clean[1]
    # complementary suppression forgotten: the published totals are the raw ones
    frames[f"{EQUITY_DAILY}__published"] = frames[EQUITY_DAILY].copy()
    with pytest.raises(GateFailed) as err:
        run_publish_gate(built_lake, k=K, frames=frames, neighborhood_ids=ids)
    failed = _failed_types(err.value)
    assert (f"{EQUITY_DAILY}__other_trips_started__residuals", "expect_column_values_to_not_be_in_set", "hidden_cells") in failed
    assert (f"{EQUITY_DAILY}__other_trips_started__residuals", "expect_column_values_to_not_be_in_set", "residual") in failed
