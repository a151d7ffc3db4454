"""The landing gate: clean batches pass; each planted defect fails on the named expectation;
a failed batch loads nothing; a gate that raises is a failure."""

from __future__ import annotations

import gc
import json
import os
import uuid
import weakref
from dataclasses import asdict
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.contracts import load_contract
from ingest.landing import Lake, land_batch
from mobility.gates import _gx, landing_gate
from mobility.gates.landing_gate import landing_suite, run_landing_gate
from mobility.registry import load_registry
from mobility.settings import Workdir
from mds_records import HOUR, T0
from mds_records import trip as mds_trip

CONTRACT = load_contract("mds_trips@2.0.0")
BBOX = [-87.94, 41.64, -87.52, 42.02]  # [minlon, minlat, maxlon, maxlat]


@pytest.fixture()
def wd(tmp_path, monkeypatch) -> Workdir:
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    wd = Workdir.resolve(tmp_path)
    wd.city.mkdir(parents=True)
    wd.city_meta.write_text(json.dumps({"name": "Testville", "timezone": "America/Chicago", "bbox": BBOX}))
    return wd


def trip(n: int = 0, **over) -> dict:
    return mds_trip(load_registry().partner("scootco").mds_provider_id, n,
                    **{"propulsion_types": ["electric"], **over})


def typed(n: int = 8) -> pa.Table:
    """A clean batch, typed by the contract's own row check."""
    result = CONTRACT.check([trip(i) for i in range(n)], window=(HOUR.start, HOUR.end))
    assert result.rows_rejected == 0
    return result.accepted


def plant(table: pa.Table, column: str, row: int, value) -> pa.Table:
    """Put a value straight into the typed table, where the row check cannot catch it first."""
    values = table.column(column).to_pylist()
    values[row] = value
    idx = table.schema.get_field_index(column)
    return table.set_column(idx, table.schema.field(idx), pa.array(values, table.schema.field(idx).type))


def gate(wd: Workdir, table: pa.Table, **kw):
    return run_landing_gate(wd, CONTRACT, table, window=(HOUR.start, HOUR.end), partner_id="scootco",
                            feed="mds_trips", batch=f"{HOUR.label}__test", **kw)


def failed(result) -> set[tuple[str, str | None, str | None]]:
    return {(o.expectation_type, o.column, o.rule) for o in result.failed}


def test_clean_batch_passes_and_records_its_result(wd) -> None:
    result = gate(wd, typed())
    assert result.success, result.message()
    assert len(result.outcomes) >= 20
    assert result.result_path == wd.gates / "landing" / "mds_trips" / "scootco" / f"{HOUR.label}__test.json"
    record = json.loads(result.result_path.read_text())
    assert record["success"] is True and record["gate"] == "landing"
    rules = {o["rule"] for o in record["outcomes"]}
    # derived from the contract: fields, its custom rules, and the quality entries by name
    assert {"trip_id: unique", "device_id: required", "vehicle_type: enum", "logical types",
            "end_not_before_start", "end_time_in_window", "plausible_speed", "locations_in_city"} <= rules


def test_suite_is_built_once_per_contract() -> None:
    assert landing_suite(CONTRACT) is landing_suite(load_contract("mds_trips@2.0.0"))


def test_each_expectation_is_configured_once_per_validation_and_parameters_follow_the_batch(wd, monkeypatch) -> None:
    """GX would build an expectation's configuration about 110 times per validation (once per
    keyword it reads); the gates build each about once there (`_gx`). What changes per batch, the
    suite parameters, still follows the batch: a window the rows are not in fails them."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    built, init = [0], ExpectationConfiguration.__init__

    def counted(self, *args, **kwargs):
        built[0] += 1
        init(self, *args, **kwargs)

    table = typed()
    assert gate(wd, table).success  # GX's caches warm
    monkeypatch.setattr(ExpectationConfiguration, "__init__", counted)
    assert gate(wd, table).success
    expectations = len(landing_suite(CONTRACT).suite.expectations) + 1  # and the schema suite's one
    assert 0 < built[0] < 20 * expectations, built[0]

    later = (HOUR.end, HOUR.end + (HOUR.end - HOUR.start))  # the next hour
    moved = run_landing_gate(wd, CONTRACT, table, window=later, partner_id="scootco", feed="mds_trips",
                             batch="later__test")
    assert {o.rule for o in moved.failed} == {"end_time_in_window"}
    assert gate(wd, table).success  # and back


H = 3_600_000
DEFECTS = {
    "null_required": ("device_id", None, ("expect_column_values_to_not_be_null", "device_id", "device_id: required")),
    "out_of_range": ("duration", -5, ("expect_column_values_to_be_between", "duration", "duration: range")),
    "not_in_enum": ("vehicle_type", "hovercraft", ("expect_column_values_to_be_in_set", "vehicle_type", "vehicle_type: enum")),
    "duplicate_key": ("trip_id", str(uuid.UUID(int=1)), ("expect_column_values_to_be_unique", "trip_id", "trip_id: unique")),
    "outside_city": ("start_lon", -80.0, ("expect_column_values_to_be_between", "start_lon", "locations_in_city")),
    "end_before_start": ("end_time", T0 + 60_000, ("expect_column_pair_values_a_to_be_greater_than_b", "end_time", "end_not_before_start")),
    "implausible_speed": ("distance", 50_000.0, ("expect_column_values_to_be_between", "speed_kmh", "plausible_speed")),
    "outside_window": ("end_time", T0 + 2 * H, ("expect_column_values_to_be_between", "end_time", "end_time_in_window")),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_planted_defect_fails_on_the_named_expectation(wd, defect) -> None:
    column, value, expected = DEFECTS[defect]
    table = typed()
    if column.endswith("_time") and value is not None:
        value = datetime.fromtimestamp(value / 1000, timezone.utc)
    result = gate(wd, plant(table, column, 3, value), quarantine_dir=wd.root / "q")
    assert failed(result) == {expected}, result.message()
    report = json.loads((wd.root / "q" / "landing_gate.json").read_text())
    (entry,) = report["failed_expectations"]
    assert (entry["expectation"], entry["column"], entry["rule"]) == expected
    assert entry["unexpected_rows"] == (2 if defect == "duplicate_key" else 1)
    if defect != "duplicate_key":  # the partner sees the offending row itself
        assert entry["example_rows"][0]["trip_id"] == str(uuid.UUID(int=4))


def test_zero_duration_with_distance_is_implausible(wd) -> None:
    result = gate(wd, plant(typed(), "duration", 2, 0))
    assert ("expect_column_values_to_be_between", "speed_kmh", "plausible_speed") in failed(result)


def test_without_a_city_points_are_checked_against_the_earth_only(tmp_path) -> None:
    result = gate(Workdir.resolve(tmp_path), typed())
    assert result.success and any("no city bbox" in n for n in result.notes)


def test_gx_error_inside_an_expectation_is_a_failure(wd) -> None:
    result = gate(wd, typed().drop_columns(["distance"]))
    assert not result.success
    errored = {o.column for o in result.failed if o.exception}
    assert "distance" in errored and "GX error" in result.message()
    assert ("expect_column_pair_values_to_be_equal", "batch_type", "logical types") in failed(result)


def test_gate_that_raises_is_a_failure(wd, monkeypatch) -> None:
    def broken(*_a, **_kw):
        raise RuntimeError("GX blew up")

    monkeypatch.setattr(landing_gate, "validate_frame", broken)
    result = gate(wd, typed())
    assert not result.success
    assert [o.expectation_type for o in result.outcomes] == ["gate_run"]
    assert "GX blew up" in result.message()


GATE_IN_A_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from mobility.settings import Workdir
sys.path.insert(0, sys.argv[2])
import test_landing_gate as t

wd = Workdir.resolve(Path(sys.argv[1]))
passed = t.gate(wd, t.typed(), docs="always")
failed = t.gate(wd, t.plant(t.typed(), "duration", 2, -5), docs="always")
after_gates = {name: type(sys.modules[name]).__name__ for name in ("altair", "scipy.stats")}
from scipy import stats
import altair
print(json.dumps({"passed": passed.success, "failed": failed.success, "docs": bool(failed.data_docs),
                  "after_gates": after_gates, "entropy": float(stats.entropy([1, 1], [1, 3])),
                  "chart": altair.Chart.__name__,
                  "after_use": {name: type(sys.modules[name]).__name__ for name in ("altair", "scipy.stats")}}))
"""


def test_gx_distribution_modules_load_only_when_used(wd) -> None:
    """GX imports altair and scipy.stats for expectations the gates never use: a fresh process runs
    a passing and a failing landing gate, Data Docs included, without loading them, and they work
    once used."""
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run([sys.executable, "-c", GATE_IN_A_FRESH_PROCESS, str(wd.root), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "MOBILITY_PSEUDONYM_KEY": "k"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (seen["passed"], seen["failed"], seen["docs"]) == (True, False, True)
    assert seen["after_gates"] == {"altair": "DeferredModule", "scipy.stats": "DeferredModule"}
    assert abs(seen["entropy"] - 0.1438410362) < 1e-9 and seen["chart"] == "Chart"
    assert seen["after_use"] == {"altair": "module", "scipy.stats": "module"}


def _land(wd: Workdir, records: list[dict]) -> dict:
    partner = load_registry().partner("scootco")
    raw = json.dumps({"version": "2.0.0", "trips": records}).encode()
    return land_batch(wd, partner=partner, feed=partner.feed("mds_trips"), contract=CONTRACT, window=HOUR,
                      raw=raw, source="test")


def test_failed_batch_is_quarantined_whole_and_the_good_batch_stays(wd) -> None:
    lake = Lake(wd, "scootco", "mds_trips")
    good = _land(wd, [trip(i) for i in range(3)])
    assert good["outcome"] == "accepted"
    # every row passes the row check, but one trip covers 50 km in 10 minutes
    bad = _land(wd, [trip(i) for i in range(3)] + [trip(3, distance=50_000)])
    assert bad["outcome"] == "rejected" and (bad["rows_accepted"], bad["rows_rejected"]) == (0, 4)
    assert "expect_column_values_to_be_between(speed_kmh)" in bad["error"]
    assert pq.read_table(lake.bronze(HOUR)).column("batch_id").to_pylist() == [good["batch_id"]] * 3
    report = json.loads((lake.quarantine(HOUR, bad["raw_sha256"]) / "landing_gate.json").read_text())
    assert report["batch_id"] == bad["batch_id"]
    assert report["failed_expectations"][0]["example_rows"][0]["distance"] == 50_000
    assert (wd.gates / "data_docs" / "index.html").exists()
    assert (wd.gates / "landing" / "mds_trips" / "scootco" / f"{lake.manifest(HOUR, bad['raw_sha256']).stem}.json").exists()


def test_gate_that_raises_rejects_the_batch(wd, monkeypatch) -> None:
    monkeypatch.setattr(landing_gate, "validate_frame", lambda *a, **k: 1 / 0)
    m = _land(wd, [trip(0)])
    assert m["outcome"] == "rejected" and "gate_run" in m["error"]
    assert not Lake(wd, "scootco", "mds_trips").bronze(HOUR).exists()


def _sliced(wd: Workdir, table: pa.Table, monkeypatch, size: int = 4, **kw):
    """The gate fed `size` rows at a time, as land_batch feeds a big batch."""
    monkeypatch.setattr(landing_gate, "GATE_ROWS", size)
    g = landing_gate.LandingGate(wd, CONTRACT, window=(HOUR.start, HOUR.end), partner_id="scootco",
                                 feed="mds_trips", batch=f"{HOUR.label}__sliced", **kw)
    for start in range(0, table.num_rows, size):
        g.add(table.slice(start, size))
    return g.finish()


@pytest.mark.parametrize("defect", ["duplicate_key", "out_of_range", "outside_window"])
def test_sliced_batch_fails_as_the_whole_batch_does(wd, defect, monkeypatch) -> None:
    """A defect in a later slice (a trip id that an earlier slice already had) fails the batch on
    the same expectation, with the same counts, rows and report, as the batch validated whole."""
    column, value, expected = DEFECTS[defect]
    if column.endswith("_time"):
        value = datetime.fromtimestamp(value / 1000, timezone.utc)
    table = plant(typed(12), column, 9, value)  # row 9 is in the third slice; uuid 1 is row 0's id
    whole = gate(wd, table, quarantine_dir=wd.root / "whole")
    sliced = _sliced(wd, table, monkeypatch, quarantine_dir=wd.root / "sliced")
    assert failed(sliced) == failed(whole) == {expected}, sliced.message()
    (a,), (b,) = whole.failed, sliced.failed
    assert (b.unexpected_count, b.unexpected_index, b.unexpected_examples) == \
        (a.unexpected_count, a.unexpected_index, a.unexpected_examples)
    reports = [json.loads((wd.root / q / "landing_gate.json").read_text())["failed_expectations"]
               for q in ("whole", "sliced")]
    if defect == "duplicate_key":  # the first of the two rows went by in an earlier slice
        for r in reports:
            r[0]["example_rows"] = []
    assert reports[0] == reports[1]
    assert [o.describe() for o in sliced.outcomes] == [o.describe() for o in whole.outcomes]


def test_sliced_clean_batch_passes_with_the_whole_batch_outcomes(wd, monkeypatch) -> None:
    table = typed(12)
    whole, sliced = gate(wd, table), _sliced(wd, table, monkeypatch)
    assert sliced.success and [asdict(o) for o in sliced.outcomes] == [asdict(o) for o in whole.outcomes]


def test_a_validated_slice_leaves_no_cycles_holding_its_callers_data(wd, monkeypatch) -> None:
    """GX's parse of the suite parameters (the window, the bbox) raises and catches exceptions whose
    tracebacks hold the callers' frames: the gate frees those cycles itself, so what its callers
    held (land_batch's bytes and tables) goes when they return, not at Python's next full collection."""

    class Held:  # stands for a caller's bytes or tables
        pass

    def caller() -> weakref.ref:
        held = Held()
        _sliced(wd, typed(8), monkeypatch)
        return weakref.ref(held)

    was_enabled = gc.isenabled()
    gc.disable()  # no collection of Python's own in between: only the gate's
    try:
        refs = [caller(), caller()]
        kept = [r() is not None for r in refs]
    finally:
        if was_enabled:
            gc.enable()
    assert kept == [False, False]


def test_gate_record_is_written_only_when_the_batch_is_decided(wd, monkeypatch) -> None:
    """Rows fed to the gate leave nothing on disk until `finish` (the batch may be refused first)."""
    monkeypatch.setattr(landing_gate, "GATE_ROWS", 4)
    g = landing_gate.LandingGate(wd, CONTRACT, window=(HOUR.start, HOUR.end), partner_id="scootco",
                                 feed="mds_trips", batch="unfinished", quarantine_dir=wd.root / "q")
    g.add(plant(typed(8), "duration", 1, -5))
    assert not (wd.gates / "landing").exists() and not (wd.root / "q").exists()


def test_workdirs_landed_in_turn_keep_their_gate_records_apart(tmp_path, monkeypatch) -> None:
    """A process keeps one GX context per gates folder across batches: each workdir's Data Docs
    and stored results hold its own batches only, also when a context dropped from the few kept
    is made again."""
    monkeypatch.setattr(_gx, "KEPT_CONTEXTS", 1)  # each turn from one workdir to the other drops one
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    dirs = {name: Workdir.resolve(tmp_path / name) for name in ("a", "b")}
    for wd in dirs.values():
        wd.city.mkdir(parents=True)
        wd.city_meta.write_text(json.dumps({"name": "Testville", "timezone": "America/Chicago", "bbox": BBOX}))
    landed: dict[str, list[dict]] = {"a": [], "b": []}
    for turn, name in enumerate(("a", "b", "a", "b")):  # each batch has one trip too fast to be true
        records = [trip(i) for i in range(3 + turn)] + [trip(3 + turn, distance=50_000)]
        landed[name].append(_land(dirs[name], records))
    for name, wd in dirs.items():
        stored = "\n".join(str(p) for p in (wd.gates / "gx" / "validations").rglob("*.json"))
        assert (wd.gates / "data_docs" / "index.html").exists()
        for other, batches in landed.items():
            for m in batches:
                assert m["outcome"] == "rejected"
                assert (Lake(wd, "scootco", "mds_trips").manifest(HOUR, m["raw_sha256"]).stem in stored) is (other == name)
