"""The columnar check gives exactly the row check's verdicts: accepted rows (typed), rejected rows,
violations (row, field, rule, value) and warnings, on batches with planted faults of every rule kind."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import ingest.columnar
from ingest.columnar import _raw_records, check_payload
from ingest.contracts import load_contract
from ingest.payloads import PayloadError, parse_records
from mds_records import HOUR, T0, trip

PID = "5f7114d1-4091-46ee-b492-e55875f7de00"
MDS = load_contract("mds_trips@2.0.0")
RIDEHAIL = load_contract("ridehail_trips@1.0.0").with_codes({"neighborhood_id": range(1, 78)})
BIKESHARE = load_contract("bikeshare_trips@1.0.0")
DAY = datetime(2026, 11, 2, tzinfo=timezone.utc)
DAY_WINDOW = (DAY, DAY + timedelta(days=1))


def assert_same(contract, raw: bytes, window, path: str = "columnar") -> None:
    fast = check_payload(contract, raw, window=window)
    records = parse_records(contract, raw)
    ref = contract.check(records, window=window)
    assert fast.path == path
    assert fast.result.rows_received == ref.rows_received
    assert fast.result.rejected_rows == ref.rejected_rows
    assert fast.result.violations == ref.violations
    assert fast.result.warnings == ref.warnings
    assert fast.result.accepted.schema == ref.accepted.schema
    assert fast.result.accepted.to_pylist() == ref.accepted.to_pylist()
    # repr: a NaN cell is not equal to itself
    assert repr(fast.rejected_records) == repr({r: records[r] for r in ref.rejected_rows})
    return fast


# ---------------------------------------------------------------- MDS trips (JSON)

def _mds_value_faults(rec: dict, rng: random.Random) -> None:
    """Faults pyarrow still reads with the contract's JSON types: the columnar path decides them."""
    kind = rng.choice([
        "missing", "missing_nested", "null_location", "uuid", "enum", "minimum", "maximum", "ts_range",
        "end_before_start", "outside_window", "duplicate", "extra", "float_ok", "nan",
    ])
    if kind == "missing":
        del rec[rng.choice(["device_id", "start_time", "duration", "distance"])]
    elif kind == "missing_nested":
        del rec["end_location"]["lng"]
    elif kind == "null_location":
        rec["start_location"] = None
    elif kind == "uuid":
        rec[rng.choice(["trip_id", "device_id"])] = "not-a-uuid"
    elif kind == "enum":
        rec["vehicle_type"] = "hovercraft"
    elif kind == "minimum":
        rec[rng.choice(["duration", "distance"])] = -rng.randint(1, 99)
    elif kind == "maximum":
        rec["start_location"]["lat"] = 91.5
    elif kind == "ts_range":
        rec["start_time"] = rec["start_time"] // 1000  # seconds sent as ms
    elif kind == "end_before_start":
        rec["end_time"], rec["start_time"] = rec["start_time"], rec["end_time"]
    elif kind == "outside_window":
        rec["end_time"] += 3_600_000
    elif kind == "duplicate":
        rec["trip_id"] = str(uuid.UUID(int=1))
    elif kind == "extra":
        rec["battery_pct"] = rng.randint(0, 100)
    elif kind == "float_ok":
        rec["distance"] = 1234  # an integer where a number is expected is fine
    elif kind == "nan":
        rec["distance"] = float("nan")


def mds_batch(n: int, seed: int, faults: float = 0.2) -> bytes:
    rng = random.Random(seed)
    recs = [trip(PID, i, propulsion_types=["electric"], trip_type=["rider"]) for i in range(n)]
    for i in range(n):
        recs[i]["end_time"] = T0 + rng.randrange(600_000, 3_600_000)
        recs[i]["start_time"] = recs[i]["end_time"] - 600_000
        if rng.random() < faults:
            _mds_value_faults(recs[i], rng)
    return json.dumps({"version": "2.0.0", "trips": recs}).encode()


@pytest.mark.parametrize("seed", range(6))
def test_mds_value_faults_same_verdicts(seed) -> None:
    fast = assert_same(MDS, mds_batch(400, seed), (HOUR.start, HOUR.end))
    assert fast.result.rows_rejected > 0 and fast.result.rows_accepted > 0


@pytest.mark.parametrize("indent", [None, 2], ids=["one line per record", "records over many lines"])
def test_mds_records_parsed_apart_in_blocks(indent, monkeypatch, arrow_threads) -> None:
    """A page's records are parsed one per line, in blocks on pyarrow's threads: small blocks here,
    faults in each, a field only the last records carry; the verdicts are still the row check's."""
    arrow_threads(2)
    monkeypatch.setattr("ingest.columnar.JSON_BLOCK_BYTES", 4096)
    monkeypatch.setattr("ingest.columnar._records_in_document", lambda *args: pytest.fail("read whole"))
    doc = json.loads(mds_batch(400, 3))
    for rec in doc["trips"]:
        if rec.get("distance") != rec.get("distance"):
            rec["distance"] = 5  # NaN is not JSON as msgspec reads it: such a page is read whole
    doc["trips"][395]["late_extra"] = "x"
    fast = assert_same(MDS, json.dumps(doc, indent=indent).encode(), (HOUR.start, HOUR.end))
    assert fast.result.rows_rejected > 0 and fast.result.rows_accepted > 0


def test_mds_page_is_parsed_whole_with_one_arrow_thread(monkeypatch, arrow_threads) -> None:
    """With one Arrow thread (an Airflow ingest task) lines would parse on that thread alone, after
    a copy: the page is parsed as one document, the records the row check needs still alone."""
    arrow_threads(1)
    monkeypatch.setattr("ingest.columnar._records_apart", lambda *args: pytest.fail("parsed apart"))
    doc = json.loads(mds_batch(400, 3))
    for rec in doc["trips"]:
        if rec.get("distance") != rec.get("distance"):
            rec["distance"] = 5  # NaN is not JSON as msgspec reads it: such a page is parsed by json.loads
    raw, loads, real_loads = json.dumps(doc).encode(), [], json.loads
    monkeypatch.setattr(json, "loads", lambda text, *a, **k: loads.append(len(text)) or real_loads(text, *a, **k))
    fast = check_payload(MDS, raw, window=(HOUR.start, HOUR.end))
    monkeypatch.setattr(json, "loads", real_loads)
    assert fast.path == "columnar" and fast.result.rows_rejected > 0 and fast.result.rows_accepted > 0
    assert loads and max(loads) < 2000  # each record the row check read was parsed alone, never the page
    assert_same(MDS, raw, (HOUR.start, HOUR.end))


def test_mds_null_record_is_read_with_the_document(monkeypatch) -> None:
    """One record per line would read a null record as a row of nulls, not as a missing object."""
    whole = []
    read = ingest.columnar._records_in_document
    monkeypatch.setattr("ingest.columnar._records_in_document", lambda *args: whole.append(1) or read(*args))
    recs = [trip(PID, i) for i in range(3)]
    fast = assert_same(MDS, json.dumps({"trips": [recs[0], recs[1], None]}).encode(), (HOUR.start, HOUR.end))
    assert whole and [(v.row, v.rule) for v in fast.result.violations] == [(2, "type:object")]


def test_mds_clean_batch_across_chunks(monkeypatch) -> None:
    monkeypatch.setattr("ingest.columnar.CHUNK_ROWS", 64)
    raw = mds_batch(300, 1, faults=0.0)
    recs = json.loads(raw)
    recs["trips"][250]["trip_id"] = recs["trips"][10]["trip_id"]  # a repeat in a later chunk
    fast = assert_same(MDS, json.dumps(recs).encode(), (HOUR.start, HOUR.end))
    assert fast.result.rejected_rows == [250]


def test_mds_non_object_record_is_named() -> None:
    recs = [trip(PID, i) for i in range(3)]
    fast = assert_same(MDS, json.dumps({"trips": [recs[0], None, recs[2]]}).encode(), (HOUR.start, HOUR.end))
    assert [(v.row, v.rule) for v in fast.result.violations] == [(1, "type:object")]


@pytest.mark.parametrize("layout", ["plain", "tricky strings", "indented", "read otherwise"])
def test_mds_rejected_records_read_back_exactly(layout, monkeypatch) -> None:
    """Rejected rows are parsed alone from their own bytes (msgspec finds them), or from the whole
    document when msgspec reads it otherwise than pyarrow: either way as json.loads gives them."""
    recs = [trip(PID, i) for i in range(40)]
    for i in range(0, 40, 7):
        recs[i]["duration"] = -1
    if layout == "tricky strings":  # quotes, backslashes and structure inside strings
        for i, text in enumerate(['a"b', "c\\", '[{,}]', '\\"]', "é\u2028x"]):
            recs[3 * i]["note"] = {"text": text, "list": [text, text], "more": [{"x": [1, 2]}]}
    doc = {"version": "2.0.0", "links": [{"trips": [1]}], "trips": recs}
    raw = json.dumps(doc, indent=2 if layout == "indented" else None, ensure_ascii=False).encode()
    if layout == "read otherwise":
        monkeypatch.setattr("ingest.columnar._raw_records", lambda *args: None)
    fast = assert_same(MDS, raw, (HOUR.start, HOUR.end))
    assert fast.result.rows_rejected == 6


@pytest.mark.parametrize("fault", [
    {"duration": "600"}, {"duration": 600.0}, {"duration": True}, {"trip_type": ["rider", 3]},
    {"start_location": [41.8, -87.6]}, {"start_time": 2**64},
])
def test_mds_type_faults_fall_back_to_the_row_check(fault) -> None:
    recs = [trip(PID, i) for i in range(5)]
    recs[3].update(fault)
    assert_same(MDS, json.dumps({"trips": recs}).encode(), (HOUR.start, HOUR.end), path="rows")


def test_mds_unreadable_payload_is_refused_the_same_way() -> None:
    for raw in (b"", b"[1, 2]", b'{"data": []}', b'{"trips": null}', b"{not json"):
        with pytest.raises(PayloadError) as fast:
            check_payload(MDS, raw)
        with pytest.raises(PayloadError) as ref:
            parse_records(MDS, raw)
        assert str(fast.value) == str(ref.value)


# ---------------------------------------------------------------- ride-hail and bike-share (CSV)

def _to_csv(rows: list[dict], columns: list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def ridehail_row(i: int, rng: random.Random) -> dict:
    start = DAY.replace(tzinfo=None) + timedelta(minutes=rng.randrange(0, 1400))
    fare, tip, other = 2.5 * rng.randrange(2, 20), float(rng.randrange(0, 5)), round(rng.uniform(0, 3), 2)
    return {
        "trip_id": f"{i:040x}", "trip_start_timestamp": f"{start:%Y-%m-%d %H:%M:%S}",
        "trip_end_timestamp": f"{start + timedelta(minutes=15):%Y-%m-%d %H:%M:%S}",
        "trip_seconds": str(rng.randrange(60, 3000)), "trip_miles": f"{rng.uniform(0.3, 20):.1f}",
        "pickup_community_area": str(rng.randrange(1, 78)), "dropoff_community_area": rng.choice(["", "12"]),
        "fare": f"{fare:.2f}", "tip": f"{tip:.2f}", "additional_charges": f"{other:.2f}",
        "trip_total": f"{fare + tip + other:.2f}", "shared_trip_authorized": rng.choice(["true", "false", "TRUE", "f"]),
        "trips_pooled": "1", "pickup_centroid_latitude": "41.8", "pickup_centroid_longitude": "-87.6",
        "dropoff_centroid_latitude": "", "dropoff_centroid_longitude": "",
    }


RIDEHAIL_FAULTS = [
    ("trip_id", ""), ("trip_id", "XYZ"), ("trip_id", f"{5:040x}"), ("trip_seconds", "abc"), ("trip_seconds", "1.0"),
    ("trip_seconds", "+5"), ("trip_seconds", " 7"), ("trip_seconds", "-3"), ("trip_seconds", "12.5"),
    ("trip_miles", "x"), ("trip_miles", "nan"), ("trip_miles", "1e3"), ("trip_miles", ".5"), ("fare", "-1.00"),
    ("pickup_community_area", "99"), ("pickup_community_area", "7.0"), ("shared_trip_authorized", "yes"),
    ("shared_trip_authorized", " true"), ("trips_pooled", "0"), ("pickup_centroid_latitude", "95"),
    ("trip_start_timestamp", "2026-11-02T05:00:00"), ("trip_start_timestamp", "2026-11-2 5:00:00"),
    ("trip_start_timestamp", "2026-11-03 00:10:00"), ("trip_start_timestamp", "2026-02-30 01:00:00"),
    ("trip_end_timestamp", "2026-11-01 23:00:00"), ("trip_total", "999.00"), ("tip", ""), ("extra_note", "hi"),
]


# columns whose few values repeat in every chunk (so they are checked as distinct values in each)
REPEATING = {"pickup_centroid_latitude", "trips_pooled", "shared_trip_authorized", "dropoff_community_area"}


@pytest.mark.parametrize("distinct", [False, True, "judged once"],
                         ids=["per row", "per distinct value", "each value judged once per batch"])
@pytest.mark.parametrize("seed", range(4))
def test_ridehail_csv_faults_same_verdicts(seed, distinct, monkeypatch) -> None:
    if distinct:  # columns checked on their distinct values, as big files are
        monkeypatch.setattr("ingest.columnar.DISTINCT_MIN_ROWS", 0)
    judged: list[tuple[str, object]] = []
    if distinct == "judged once":  # and across chunks, a value judged in one is not judged again
        monkeypatch.setattr("ingest.columnar.CHUNK_ROWS", 50)
        monkeypatch.setattr("ingest.columnar.JUDGED_MIN", 0)
        cleared = ingest.columnar.cleared

        def spy(f, values, codes):
            if f.name in REPEATING:
                judged.extend({(f.name, v) for v in values.to_pylist()})  # once per call
            return cleared(f, values, codes)

        monkeypatch.setattr("ingest.columnar.cleared", spy)
    rng = random.Random(seed)
    rows = [ridehail_row(i, rng) for i in range(300)]
    for row in rng.sample(rows, 120):
        for column, value in rng.sample(RIDEHAIL_FAULTS, rng.choice([1, 1, 2])):
            row[column] = value
    columns = [*ridehail_row(0, rng), "extra_note"][: None if seed % 2 else -1]
    fast = assert_same(RIDEHAIL, _to_csv(rows, columns), DAY_WINDOW)
    assert fast.result.rows_rejected > 0 and fast.result.rows_accepted > 0
    if seed % 2:
        assert fast.result.warnings
    if judged:
        # every chunk of 50 rows has the latitude 41.8, yet each value was judged in one chunk only
        assert ("pickup_centroid_latitude", 41.8) in judged
        assert len(judged) == len(set(judged))


def test_ridehail_every_fault_alone() -> None:
    rng = random.Random(9)
    rows = []
    for column, value in RIDEHAIL_FAULTS:
        row = ridehail_row(len(rows), rng)
        row[column] = value
        rows.append(row)
    fast = assert_same(RIDEHAIL, _to_csv(rows, [*rows[0], "extra_note"]), DAY_WINDOW)
    rules = {v.rule for v in fast.result.violations}
    assert {"required", "pattern", "unique", "type:integer", "type:number", "minimum", "maximum",
            "codes:neighborhood_id", "type:boolean", "format:local_datetime", "end_not_before_start",
            "on_window_date", "trip_total_is_sum"} <= rules


def test_ridehail_optional_column_absent_and_chunks(monkeypatch) -> None:
    monkeypatch.setattr("ingest.columnar.CHUNK_ROWS", 50)
    rng = random.Random(3)
    rows = [ridehail_row(i, rng) for i in range(220)]
    rows[170]["trip_id"] = rows[20]["trip_id"]
    columns = [c for c in rows[0] if c not in ("dropoff_community_area", "dropoff_centroid_latitude")]
    fast = assert_same(RIDEHAIL, _to_csv(rows, columns), DAY_WINDOW)
    assert fast.result.rejected_rows == [170]


@pytest.mark.parametrize("raw", [
    b"trip_id,fare\n",  # required columns missing
    b"",  # empty file
    b"\xff\xfe not utf-8",
])
def test_unreadable_csv_is_refused_the_same_way(raw) -> None:
    with pytest.raises(PayloadError) as fast:
        check_payload(RIDEHAIL, raw)
    with pytest.raises(PayloadError) as ref:
        parse_records(RIDEHAIL, raw)
    assert str(fast.value) == str(ref.value)


def test_short_row_falls_back_to_the_row_check() -> None:
    rng = random.Random(2)
    rows = [ridehail_row(i, rng) for i in range(5)]
    raw = _to_csv(rows, list(rows[0])) + b"abc,def\r\n"
    fast = assert_same(RIDEHAIL, raw, DAY_WINDOW, path="rows")
    assert fast.result.violations[-1].rule == "type:object"


def test_short_row_read_after_many_chunks_falls_back_to_the_row_check(monkeypatch) -> None:
    """The reader's thread meets the short row after it handed on many checked chunks: the
    error reaches the check, and the row check decides the whole file."""
    monkeypatch.setattr("ingest.columnar.CHUNK_ROWS", 16)
    monkeypatch.setattr("ingest.columnar.CSV_BLOCK_BYTES", 2048)
    rng = random.Random(5)
    rows = [ridehail_row(i, rng) for i in range(300)]
    raw = _to_csv(rows, list(rows[0])) + b"abc,def\r\n"
    stream = ingest.columnar.CheckStream(RIDEHAIL, raw, window=DAY_WINDOW)
    chunks = list(stream)
    assert None in chunks[1:-1] and stream.result.path == "rows"  # chunks came, then the restart
    assert_same(RIDEHAIL, raw, DAY_WINDOW, path="rows")


def test_items_read_ahead_come_in_order_and_errors_and_early_stops_reach_the_reader() -> None:
    import threading

    from ingest.columnar import _ahead

    assert list(_ahead(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise ValueError("row 2: broken")

    got = []
    with pytest.raises(ValueError, match="row 2: broken"):
        for item in _ahead(failing()):
            got.append(item)
    assert got == [1]

    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    ahead = _ahead(endless())
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()  # the consumer stops: the reader's thread ends too, a few items ahead at most
    assert not any(t.name.startswith("columnar-read") for t in threading.enumerate())
    assert len(produced) <= 6


def test_bikeshare_csv_faults_same_verdicts() -> None:
    rng = random.Random(4)
    rows = []
    for i in range(200):
        start = DAY.replace(tzinfo=None) + timedelta(minutes=rng.randrange(0, 1400))
        rows.append({
            "trip_id": str(1000 + i), "duration": str(rng.randrange(1, 90)),
            "start_time": f"{start:%Y-%m-%d %H:%M:%S}", "end_time": f"{start + timedelta(minutes=20):%Y-%m-%d %H:%M:%S}",
            "start_station": str(rng.randrange(3000, 3100)), "start_lat": "34.05", "start_lon": "-118.25",
            "end_station": str(rng.randrange(3000, 3100)), "end_lat": "", "end_lon": "",
            "bike_id": str(rng.randrange(5000, 9000)), "plan_duration": rng.choice(["30", "365", ""]),
            "trip_route_category": rng.choice(["One Way", "Round Trip"]),
            "passholder_type": rng.choice(["Walk-up", "Monthly Pass"]), "bike_type": rng.choice(["standard", "electric"]),
        })
    faults = [("trip_id", ""), ("trip_id", "1005"), ("duration", "-2"), ("duration", "x"), ("start_lat", "91"),
              ("trip_route_category", "Loop"), ("bike_type", ""), ("end_time", "2026-11-01 10:00:00"),
              ("start_time", "2026-11-05 10:00:00"), ("start_station", "abc"), ("plan_duration", "-1")]
    for row in rng.sample(rows, 60):
        column, value = rng.choice(faults)
        row[column] = value
    fast = assert_same(BIKESHARE, _to_csv(rows, list(rows[0])), DAY_WINDOW)
    assert fast.result.rows_rejected > 0 and fast.result.rows_accepted > 0


# ---------------------------------------------------------------- GBFS and GTFS (real files)

def test_real_gbfs_and_gtfs_files_same_verdicts(shared_data) -> None:
    fixtures = shared_data / "gbfs" / "spec-fixtures" / "testFixtures" / "v2.3"
    status, info = load_contract("gbfs_station_status@2.3.0").tables()
    assert_same(status, (fixtures / "station_status.json").read_bytes(), None)
    assert_same(info, (fixtures / "station_information.json").read_bytes(), None)
    for feed in ("gtfs_kit-data/cairns_gtfs.zip", "google-sample-feed/sample-feed-1.zip"):
        raw = (shared_data / "gtfs" / feed).read_bytes()
        for table in load_contract("gtfs_schedule@1.0.0").tables():
            try:
                parse_records(table, raw)
            except PayloadError:
                with pytest.raises(PayloadError):
                    check_payload(table, raw)
                continue
            assert_same(table, raw, None, path=check_payload(table, raw).path)


def test_raw_records_of_plain_and_other_layouts() -> None:
    raw = b' {"a": "[\\"x", "trips" : [ {"b": [1, {"c": ","}]}, null ,"s\\\\"], "z": {}}'
    assert [json.loads(bytes(r)) for r in _raw_records(raw, ["trips"])] == [{"b": [1, {"c": ","}]}, None, "s\\"]
    assert _raw_records(b'{"trips": []}', ["trips"]) == []
    nested = b'{"data": {"bikes": [{"id": 1}, 2]}, "ttl": 0}'
    assert [json.loads(bytes(r)) for r in _raw_records(nested, ["data", "bikes"])] == [{"id": 1}, 2]
    assert [bytes(r) for r in _raw_records(b'{"trips": [1], "trips": [2]}', ["trips"])] == [b"2"]  # as json.loads
    assert _raw_records(b'{"trips": {"a": 1}}', ["trips"]) is None  # not a list
    assert _raw_records(b'{"trips": [1, NaN]}', ["trips"]) is None  # json.loads reads NaN, msgspec does not


@pytest.mark.parametrize("spill", [False, True], ids=["kept in memory", "kept in files"])
@pytest.mark.parametrize("buckets", [7, 2**63], ids=["colliding hashes", "real hashes"])
def test_seen_keys_finds_every_repeat_across_chunks(buckets, spill, monkeypatch) -> None:
    """SeenKeys keeps the keys of earlier chunks as sorted hashes: the repeats it reports are exactly
    a set's, in row order, even when distinct keys share a hash, and whether their values were kept
    in memory or in memory-mapped files."""
    import numpy as np
    import pyarrow as pa

    if spill:
        monkeypatch.setattr(ingest.columnar, "SPILL_MIN_BYTES", 0)
    real = ingest.columnar._hash64
    monkeypatch.setattr("ingest.columnar._hash64", lambda keys, columns: real(keys, columns) % np.uint64(buckets))
    rng = random.Random(5)
    seen, first, found, expected = ingest.columnar.SeenKeys(["id"]), {}, [], []
    row = 0
    for size in (40, 1, 0, 60, 35):
        chunk = [rng.choice([None, *range(80)]) for _ in range(size)]
        for i, key in enumerate(chunk):
            if key is not None:
                if key in first:
                    expected.append((i, first[key], key))
                else:
                    first[key] = row + i
        found += seen.add(pa.table({"id": pa.array(chunk, pa.int64())}), np.arange(row, row + size))
        row += size
    assert found == expected and len(expected) > 50
    assert (seen.folder is not None) == spill


def test_seen_keys_keep_a_big_batchs_values_out_of_memory() -> None:
    """The values of a million ids are most of what SeenKeys holds: they are kept in memory-mapped
    files, not in Arrow's memory, and their files go with it."""
    import gc

    import numpy as np
    import pyarrow as pa

    seen = ingest.columnar.SeenKeys(["trip_id"])
    before, size, n = pa.total_allocated_bytes(), 0, 131_072
    for start in range(0, 8 * n, n):
        ids = pa.array([f"{i:040x}" for i in range(start, start + n)])
        size += ids.nbytes
        assert seen.add(pa.table({"trip_id": ids}), np.arange(start, start + n)) == []
        del ids
    assert seen.add(pa.table({"trip_id": pa.array([f"{5:040x}", f"{999_999:040x}"])}),
                    np.array([8 * n, 8 * n + 1])) == [(0, 5, f"{5:040x}"), (1, 999_999, f"{999_999:040x}")]
    held = pa.total_allocated_bytes() - before
    assert size > 40_000_000 and held < size // 20, (held, size)
    folder = Path(seen.folder.name)
    assert len(list(folder.iterdir())) == 8
    del seen
    gc.collect()
    assert not folder.exists()
