"""Publication of the trip marts: hours and origin-destination flows under their day totals.

Small hand-made marts (fixtures_lake.mart_connection, shaped as dbt builds them) with known
answers: a neighborhood-day hidden as a complement hides its hours and flows too; a flow hidden
as small gets complements among the same origin's flows; the publish gate passes on the result
and fails, naming the check, when either protection is undone.
"""

from __future__ import annotations

import pandas as pd
import pytest

from fixtures_lake import MART_NEIGHBORHOODS, mart_connection
from mobility.gates.publish_gate import GateFailed, run_publish_gate
from mobility.warehouse.suppression import SUPPRESSION, suppressed_select

K = 10
D1 = "2026-07-01"
DAY = "mart_trips_per_neighborhood_day"
HOUR = "mart_trips_per_neighborhood_mode_hour"
OD = "mart_od_flows"
HOUR_RESIDUALS = f"{DAY}__trips_started__{HOUR}__residuals"
OD_RESIDUALS = f"{DAY}__trips_started__{OD}__residuals"

# equity zones 1-4: the 3 is hidden and the smallest positive cell, neighborhood 3's 11, is its
# complement; the rest of the city (5-8) has nothing small
CELLS = {
    (1, D1, "scooter"): 3, (2, D1, "scooter"): 0, (3, D1, "scooter"): 11, (4, D1, "scooter"): 12,
    (5, D1, "scooter"): 40, (6, D1, "scooter"): 12, (7, D1, "scooter"): 0, (8, D1, "scooter"): 30,
}
# neighborhood 5's 40 trips go to three destinations: 3 and 4 are small (7 < k together), so the
# 33 is hidden as their complement; the day total 40 stays published
FLOWS_FROM_5 = {5: 33, 6: 3, 7: 4}


@pytest.fixture()
def con():
    con = mart_connection(CELLS)
    con.execute(f"delete from {OD} where origin_neighborhood_id = 5")
    for dest, n in FLOWS_FROM_5.items():
        con.execute(
            f"insert into {OD} values (5, 'N5', {dest}, 'N{dest}', date '{D1}', 'scooter', {n})"
        )
    yield con
    con.close()


def _published(con, table: str) -> pd.DataFrame:
    columns = [r[0] for r in con.execute(f'describe "{table}"').fetchall()]
    return con.execute(suppressed_select(table, columns, K)).df()


def _frames(con) -> tuple[dict[str, pd.DataFrame], list[int]]:
    frames: dict[str, pd.DataFrame] = {}
    held = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
    for table in (t for t in SUPPRESSION if t in held):  # the trip marts mart_connection holds
        frames[table] = con.execute(f'select * from "{table}"').df()
        frames[f"{table}__published"] = _published(con, table)
    return frames, [n[0] for n in MART_NEIGHBORHOODS]


def _cell(df: pd.DataFrame, column: str, **where) -> object:
    mask = pd.Series(True, index=df.index)
    for key, value in where.items():
        mask &= df[key] == (pd.Timestamp(value) if key == "trip_date" else value)
    assert mask.sum() == 1, where
    value = df.loc[mask, column].iloc[0]
    return None if pd.isna(value) else int(value)


def test_a_hidden_day_hides_its_hours_and_flows(con) -> None:
    day = _published(con, DAY)
    assert _cell(day, "trips_started", neighborhood_id=3, trip_date=D1, mode="scooter") is None  # complement
    hours = _published(con, HOUR)
    # its 11 trips are all at noon: published, the hour would give the hidden day back
    assert _cell(hours, "trips_started", neighborhood_id=3, trip_date=D1, local_hour=12, mode="scooter") is None
    assert _cell(hours, "trips_started_per_1000_residents", neighborhood_id=3, trip_date=D1, local_hour=12,
                 mode="scooter") is None
    # zeros stay published, and hours of visible days are untouched
    assert _cell(hours, "trips_started", neighborhood_id=3, trip_date=D1, local_hour=11, mode="scooter") == 0
    assert _cell(hours, "trips_started", neighborhood_id=4, trip_date=D1, local_hour=12, mode="scooter") == 12
    flows = _published(con, OD)
    assert _cell(flows, "trips", origin_neighborhood_id=3, destination_neighborhood_id=3) is None
    assert _cell(flows, "trips", origin_neighborhood_id=4, destination_neighborhood_id=4) == 12


def test_small_flows_get_complements_within_their_origin(con) -> None:
    flows = _published(con, OD)
    from5 = {d: _cell(flows, "trips", origin_neighborhood_id=5, destination_neighborhood_id=d) for d in FLOWS_FROM_5}
    assert from5 == {5: None, 6: None, 7: None}
    day = _published(con, DAY)
    assert _cell(day, "trips_started", neighborhood_id=5, trip_date=D1, mode="scooter") == 40  # total stays
    assert _cell(flows, "trips", origin_neighborhood_id=8, destination_neighborhood_id=8) == 30


def test_gate_passes_on_hours_and_flows_suppressed_under_their_days(tmp_path, con) -> None:
    frames, ids = _frames(con)
    result = run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    assert result.success, result.message()
    checked = {o.frame for o in result.outcomes}
    assert {HOUR, OD, "mart_feed_health", HOUR_RESIDUALS, OD_RESIDUALS} <= checked


def test_gate_fails_when_a_hidden_day_is_given_back_by_its_hours(tmp_path, con) -> None:
    frames, ids = _frames(con)
    hours = frames[f"{HOUR}__published"]
    where = hours.neighborhood_id.eq(3) & hours.trip_date.eq(pd.Timestamp(D1)) & hours.local_hour.eq(12)
    hours.loc[where, "trips_started"] = 11
    with pytest.raises(GateFailed) as err:
        run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    failed = {(o.frame, o.expectation_type, o.column) for o in err.value.result.failed}
    assert failed == {(HOUR_RESIDUALS, "expect_column_values_to_be_between", "hidden_cells_under_hidden_total")}


def test_gate_fails_when_a_flow_complement_is_missing(tmp_path, con) -> None:
    frames, ids = _frames(con)
    flows = frames[f"{OD}__published"]
    where = flows.origin_neighborhood_id.eq(5) & flows.destination_neighborhood_id.eq(5)
    flows.loc[where, "trips"] = 33  # 40 - 33 = 7 over the two small flows
    with pytest.raises(GateFailed) as err:
        run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    failed = {(o.frame, o.expectation_type, o.column) for o in err.value.result.failed}
    assert (OD_RESIDUALS, "expect_column_values_to_not_be_in_set", "residual") in failed
    assert (OD_RESIDUALS, "expect_column_values_to_be_between", "residual") in failed


@pytest.mark.parametrize(
    "table, change, expectation",
    [
        # a neighborhood's hour missing: not every neighborhood x day x hour x mode is there
        (HOUR, lambda df: df.iloc[1:], "expect_table_row_count_to_equal"),
        (HOUR, lambda df: df.assign(trips_ended=df.trips_ended - 100), "expect_column_values_to_be_between"),
        (OD, lambda df: df.assign(trips=df.trips.where(df.origin_neighborhood_id != 8, 0)),
         "expect_column_values_to_be_between"),
        (OD, lambda df: df.assign(destination_neighborhood_id=df.destination_neighborhood_id + 100),
         "expect_column_values_to_be_in_set"),
    ],
)
def test_gate_fails_on_a_defect_in_the_trip_marts(tmp_path, con, table, change, expectation) -> None:
    frames, ids = _frames(con)
    frames[table] = change(frames[table])
    with pytest.raises(GateFailed) as err:
        run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    assert (table, expectation) in {(o.frame, o.expectation_type) for o in err.value.result.failed}


def test_gate_fails_on_negative_feed_health_counts(tmp_path, con) -> None:
    con.execute(
        "insert into mart_feed_health values ('p', 'mds_trips', date '2026-07-01', 2, 2, 1, 0, 1, 0, 0, "
        "20, 10, -10, 2.0, 1.5, 0)"
    )
    frames, ids = _frames(con)
    with pytest.raises(GateFailed) as err:
        run_publish_gate(tmp_path, k=K, frames=frames, neighborhood_ids=ids)
    failed = {(o.frame, o.expectation_type, o.column) for o in err.value.result.failed}
    assert failed == {("mart_feed_health", "expect_column_values_to_be_between", "rows_quarantined")}
