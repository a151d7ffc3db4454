"""Landing under contract: typed bronze, quarantine with reasons, idempotence, identity."""

import ctypes
import hashlib
import hmac
import importlib.util
import json
import mmap
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.contracts import CheckResult, ContractNotFound, load_contract
from ingest.landing import Lake, Window, land_batch, pseudonymise
from mobility.registry import load_registry
from mobility.settings import Workdir
from mds_records import HOUR, T0, payload, trip

_spec = importlib.util.spec_from_file_location(
    "ingest_throughput", Path(__file__).resolve().parents[1] / "benchmarks" / "ingest_throughput.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # the benchmark's ride-hail file generator


@pytest.fixture()
def wd(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    return Workdir.resolve(tmp_path)


@pytest.fixture()
def scootco():
    p = load_registry().partner("scootco")
    return p, p.feed("mds_trips"), load_contract("mds_trips@2.0.0")


def land(wd, scootco, records, raw=None):
    partner, feed, contract = scootco
    return land_batch(wd, partner=partner, feed=feed, contract=contract, window=HOUR,
                      raw=raw if raw is not None else payload(records), source="test")


def test_good_batch_lands_typed_and_pseudonymised(wd, scootco):
    pid = scootco[0].mds_provider_id
    m = land(wd, scootco, [trip(pid, i) for i in range(5)])
    assert m["outcome"] == "accepted" and m["rows_accepted"] == 5
    table = pq.read_table(Lake(wd, "scootco", "mds_trips").bronze(HOUR))
    assert table.num_rows == 5
    assert str(table.schema.field("start_time").type) == "timestamp[ms, tz=UTC]"
    raw_ids = {str(uuid.UUID(int=i + 1)) for i in range(5)}
    assert not raw_ids & set(table.column("trip_id").to_pylist())  # pseudonymised
    assert all(len(t) == 32 for t in table.column("trip_id").to_pylist())
    assert (wd.root / m["raw_path"]).read_bytes() == payload([trip(pid, i) for i in range(5)])


def test_distinct_pseudonyms_are_stored_without_a_dictionary(wd, scootco):
    """Keyed hashes of unique ids never repeat: Parquet would build a dictionary for them in vain.
    Columns with repeats (a device makes many trips) keep theirs."""
    pid = scootco[0].mds_provider_id
    land(wd, scootco, [trip(pid, i) for i in range(50)])
    chunks = pq.ParquetFile(Lake(wd, "scootco", "mds_trips").bronze(HOUR)).metadata.row_group(0)
    dictionary = {chunks.column(i).path_in_schema: chunks.column(i).has_dictionary_page for i in range(chunks.num_columns)}
    assert dictionary["trip_id"] is False
    assert dictionary["device_id"] is True and dictionary["partner_id"] is True


@pytest.mark.parametrize("distinct", [False, True])
@pytest.mark.parametrize("key", [b"k", b"test-key", b"k" * 64, b"k" * 65, "cl\u00e9".encode()])
def test_pseudonyms_are_hmac_sha256_of_the_id(key, distinct):
    """The vectorised keyed hash gives exactly HMAC-SHA256 (hex, 128 bits), so pseudonyms of ids
    already landed stay the same, whether each distinct id is hashed once or each id as it comes."""
    ids = ["a-trip", "", "\u00e9\u2603\U0001f600", "x" * 200, None, "a-trip", "\\x41\\n", *(str(uuid.UUID(int=i)) for i in range(300))]
    expected = [None if v is None else hmac.digest(key, v.encode(), "sha256").hex()[:32] for v in ids]
    assert pseudonymise(pa.array(ids), key, distinct=distinct).to_pylist() == expected
    # a slice of a column (an offset into its buffers), as a chunk of a batch is
    assert pseudonymise(pa.array(["pad", *ids]).slice(1), key, distinct=distinct).to_pylist() == expected


def test_bad_rows_are_quarantined_with_row_field_and_rule(wd, scootco):
    pid = scootco[0].mds_provider_id
    missing = trip(pid, 1)
    del missing["end_location"]
    records = [trip(pid, 0), missing, trip(pid, 2, duration="ten"), trip(pid, 0, device_id=str(uuid.UUID(int=7))),
               trip(pid, 4, end_time=T0 + 3_700_000)]
    m = land(wd, scootco, records)
    assert m["outcome"] == "partial"
    assert (m["rows_accepted"], m["rows_rejected"]) == (1, 4)
    folder = Lake(wd, "scootco", "mds_trips").quarantine(HOUR, m["raw_sha256"])
    report = json.loads((folder / "report.json").read_text())
    rules = {(r["field"], r["rule"]) for r in report["failed_rules"]}
    assert ("end_location.lat", "required") in rules
    assert ("duration", "type:integer") in rules
    assert ("trip_id", "unique") in rules
    assert ("end_time", "in_request_window") in rules
    assert "row 2: field 'duration' breaks rule 'type:integer'" in " ".join(report["violations"])
    assert report["file"] == m["raw_path"]


def test_landing_twice_is_idempotent_and_resubmission_replaces(wd, scootco):
    pid = scootco[0].mds_provider_id
    lake = Lake(wd, "scootco", "mds_trips")
    first = [trip(pid, i) for i in range(3)]
    land(wd, scootco, first)
    land(wd, scootco, first)
    assert pq.read_table(lake.bronze(HOUR)).num_rows == 3
    assert len(lake.manifests()) == 1
    corrected = [trip(pid, i) for i in range(4)]
    m = land(wd, scootco, corrected)
    assert pq.read_table(lake.bronze(HOUR)).column("batch_id").to_pylist() == [m["batch_id"]] * 4
    assert len(list((wd.bronze / "mds_trips").rglob("*.parquet"))) == 1


def test_rejected_resubmission_keeps_the_good_batch(wd, scootco):
    pid = scootco[0].mds_provider_id
    lake = Lake(wd, "scootco", "mds_trips")
    good = land(wd, scootco, [trip(pid, i) for i in range(3)])
    bad = land(wd, scootco, None, raw=b'{"version": "2.0.0", "trips": [{"trip_id": ')
    assert bad["outcome"] == "rejected" and "unreadable payload" in bad["error"]
    assert pq.read_table(lake.bronze(HOUR)).column("batch_id").to_pylist() == [good["batch_id"]] * 3


def test_payload_claiming_another_provider_is_refused(wd, scootco):
    other = load_registry().partner("zoomride").mds_provider_id
    m = land(wd, scootco, [trip(scootco[0].mds_provider_id, 0), trip(other, 1)])
    assert m["outcome"] == "rejected"
    assert "provider_id" in m["error"] and "scootco" in m["error"]
    assert not Lake(wd, "scootco", "mds_trips").bronze(HOUR).exists()


def test_extra_field_is_a_warning_not_a_rejection(wd, scootco):
    m = land(wd, scootco, [trip(scootco[0].mds_provider_id, 0, surprise=1)])
    assert m["outcome"] == "accepted"
    assert any("surprise" in w for w in m["warnings"])


def test_empty_hour(wd, scootco):
    m = land(wd, scootco, [])
    assert m["outcome"] == "empty"
    assert pq.read_table(Lake(wd, "scootco", "mds_trips").bronze(HOUR)).num_rows == 0


def test_unknown_contract():
    with pytest.raises(ContractNotFound, match="unknown contract"):
        load_contract("nope@1.0.0")
    with pytest.raises(ContractNotFound, match="no version 9.9.9"):
        load_contract("mds_trips@9.9.9")


def test_contracts_conform_to_the_odcs_schema():
    import jsonschema
    import yaml
    from open_data_contract_standard.model import OpenDataContractStandard

    from mobility.settings import CONTRACTS_DIR

    schema = json.loads(OpenDataContractStandard.json_schema())
    files = sorted(CONTRACTS_DIR.rglob("*.odcs.yaml"))
    assert files
    for path in files:
        errors = list(jsonschema.Draft201909Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path}: {[e.message for e in errors[:3]]}"


# ---------------------------------------------------------------------------- big batches, chunk by chunk

def _ridehail(tmp_path, monkeypatch, csv: bytes | Path, *, chunk_rows: int, gate_rows: int) -> tuple[dict, Workdir]:
    """Land one ride-hail day file (its bytes, or the file) with the check's chunks and the gate's slices this small."""
    import ingest.columnar
    from mobility.gates import landing_gate

    monkeypatch.setattr(ingest.columnar, "CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(landing_gate, "GATE_ROWS", gate_rows)
    wd = Workdir.resolve(tmp_path / f"chunks-{chunk_rows}")
    wd.city.mkdir(parents=True, exist_ok=True)
    wd.city_meta.write_text(json.dumps({"name": "Bench", "bbox": bench.BBOX}))
    contract = load_contract("ridehail_trips@1.0.0").with_codes({"neighborhood_id": bench.NEIGHBORHOODS})
    partner = next(p for p in load_registry().partners if any(f.contract == contract.ref for f in p.feeds))
    feed = next(f for f in partner.feeds if f.contract == contract.ref)
    window = Window(bench.DAY, bench.DAY + timedelta(days=1))
    m = land_batch(wd, partner=partner, feed=feed, contract=contract, window=window, raw=csv, source="test")
    return m, wd


def _same_landing(a: tuple[dict, Workdir], b: tuple[dict, Workdir]) -> None:
    """Two landings of one batch wrote the same manifest, bronze rows, quarantine and gate reports."""
    (ma, wa), (mb, wb) = a, b
    ra, rb = wa.root, wb.root
    timing = ("started_at", "finished_at")
    assert {k: v for k, v in ma.items() if k not in timing} == {k: v for k, v in mb.items() if k not in timing}
    files = lambda root: sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()  # noqa: E731
                                and "gates" not in p.parts)
    assert files(ra) == files(rb)
    for rel in files(ra):
        if rel.suffix == ".parquet":
            assert pq.read_table(ra / rel).equals(pq.read_table(rb / rel), check_metadata=True)
        elif rel.name != ma["raw_path"].rsplit("/", 1)[-1] and "manifests" not in rel.parts:
            assert (ra / rel).read_bytes() == (rb / rel).read_bytes(), rel


def test_a_batch_of_many_chunks_lands_as_one_batch(tmp_path, monkeypatch):
    """Checked, gated and written 7 rows at a time, a file with faults and a trip id repeated far
    from its first row lands exactly as in one piece: same verdict, report, bronze rows, pseudonyms."""
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    lines = bench.ridehail_csv(60, 0.05).decode().splitlines(keepends=True)
    first_id = lines[3].split(",", 1)[0]
    lines[50] = first_id + "," + lines[50].split(",", 1)[1]  # row 49 repeats row 2's trip id
    csv = "".join(lines).encode()
    whole = _ridehail(tmp_path, monkeypatch, csv, chunk_rows=1 << 17, gate_rows=1 << 18)
    chunked = _ridehail(tmp_path, monkeypatch, csv, chunk_rows=7, gate_rows=10)
    m = chunked[0]
    assert m["outcome"] == "partial", m
    report = json.loads(next(chunked[1].quarantine.rglob("report.json")).read_text())
    assert {"row": 49, "value": repr(first_id.strip('"'))} in next(
        r for r in report["failed_rules"] if r["rule"] == "unique")["examples"]
    _same_landing(whole, chunked)


def test_a_gate_rejected_batch_of_many_chunks_loads_nothing(wd, scootco, monkeypatch):
    """The gate fails on a row in a later slice: nothing of the batch reaches bronze, the good
    batch landed before stays, and no staged file is left behind."""
    import ingest.columnar
    from mobility.gates import landing_gate

    monkeypatch.setattr(ingest.columnar, "CHUNK_ROWS", 4)
    monkeypatch.setattr(landing_gate, "GATE_ROWS", 4)
    pid = scootco[0].mds_provider_id
    wd.city.mkdir(parents=True, exist_ok=True)
    wd.city_meta.write_text(json.dumps({"name": "T", "bbox": [-87.94, 41.64, -87.52, 42.02]}))
    lake = Lake(wd, "scootco", "mds_trips")
    good = land(wd, scootco, [trip(pid, i) for i in range(12)])
    assert good["outcome"] == "accepted"
    # every row passes the row check, but one trip in the third slice covers 50 km in 10 minutes
    bad = land(wd, scootco, [trip(pid, i) for i in range(10)] + [trip(pid, 10, distance=50_000), trip(pid, 11)])
    assert bad["outcome"] == "rejected" and (bad["rows_accepted"], bad["rows_rejected"]) == (0, 12)
    assert "expect_column_values_to_be_between(speed_kmh)" in bad["error"]
    assert pq.read_table(lake.bronze(HOUR)).column("batch_id").to_pylist() == [good["batch_id"]] * 12
    assert [p.name for p in lake.bronze(HOUR).parent.iterdir()] == [lake.bronze(HOUR).name]
    report = json.loads((lake.quarantine(HOUR, bad["raw_sha256"]) / "landing_gate.json").read_text())
    (failure,) = report["failed_expectations"]
    assert failure["unexpected_rows"] == 1 and report["rows_checked"] == 12
    assert failure["example_rows"][0]["trip_id"] == str(uuid.UUID(int=11))


@pytest.mark.parametrize("threads", [2, 1], ids=["on the gate's thread", "inline in an ingest task"])
def test_slices_are_validated_one_at_a_time_on_the_gates_thread_or_inline_in_a_task(
        wd, scootco, monkeypatch, arrow_threads, threads):
    """land_batch hands each full slice to the gate's own thread and goes on reading, checking and
    writing the next rows; one slice is validated at a time, and the verdict waits for the last.
    With one Arrow thread (an Airflow ingest task beside others) the slices are validated inline:
    there is no core to spare for a second thread."""
    import threading

    import ingest.columnar
    from mobility.gates import landing_gate

    monkeypatch.setattr(ingest.columnar, "CHUNK_ROWS", 4)
    monkeypatch.setattr(landing_gate, "GATE_ROWS", 4)
    seen, running, lock = [], [0], threading.Lock()
    validate = landing_gate.LandingGate._validate

    def recording(self, table):
        with lock:
            running[0] += 1
            seen.append((threading.current_thread() is threading.main_thread(), running[0], table.num_rows))
        try:
            return validate(self, table)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(landing_gate.LandingGate, "_validate", recording)
    arrow_threads(threads)
    pid = scootco[0].mds_provider_id
    m = land(wd, scootco, [trip(pid, i) for i in range(10)] + [trip(pid, 10, distance=50_000), trip(pid, 11)])
    assert m["outcome"] == "rejected" and "speed_kmh" in m["error"]  # found in the last slice
    assert [rows for *_, rows in seen] == [4, 4, 4]
    assert [on_main for on_main, *_ in seen] == [threads == 1] * 3
    assert max(at_once for _, at_once, _ in seen) == 1


def test_a_batch_of_one_slice_is_validated_while_its_rows_are_written(wd, scootco, monkeypatch, arrow_threads):
    """A batch smaller than a slice (an MDS page is one) goes to the gate's thread before its rows
    are pseudonymised and written, not after them on the landing thread."""
    import threading

    from ingest.landing import StagedParquet
    from mobility.gates import landing_gate

    events = []
    validate, write = landing_gate.LandingGate._validate, StagedParquet.write

    def validating(self, table):
        events.append(("validate", threading.current_thread() is threading.main_thread()))
        return validate(self, table)

    def writing(self, table):
        events.append(("write", threading.current_thread() is threading.main_thread()))
        return write(self, table)

    monkeypatch.setattr(landing_gate.LandingGate, "_validate", validating)
    monkeypatch.setattr(StagedParquet, "write", writing)
    arrow_threads(2)
    pid = scootco[0].mds_provider_id
    m = land(wd, scootco, [trip(pid, i) for i in range(12)])
    assert m["outcome"] == "accepted"
    assert sorted(events) == [("validate", False), ("write", True)]


def test_a_batch_the_row_check_takes_over_midway_lands_once(wd, scootco, monkeypatch):
    """A page the columnar path gives up on after some chunks (a value of the wrong JSON type) is
    checked again by the row check from the start: its rows land once, not twice."""
    import ingest.columnar

    monkeypatch.setattr(ingest.columnar, "CHUNK_ROWS", 4)
    pid = scootco[0].mds_provider_id
    records = [trip(pid, i) for i in range(12)]
    records[9]["vehicle_type"] = 5
    m = land(wd, scootco, records)
    assert (m["outcome"], m["rows_accepted"], m["rows_rejected"]) == ("partial", 11, 1)
    bronze = pq.read_table(Lake(wd, "scootco", "mds_trips").bronze(HOUR))
    assert bronze.num_rows == 11 and len(set(bronze.column("trip_id").to_pylist())) == 11


# ---------------------------------------------------------------------------- big CSV batches, checked in a worker

@pytest.fixture
def in_worker(monkeypatch):
    """Every CSV batch is checked in a check worker process, however small; returns the streams used."""
    from ingest import check_worker

    monkeypatch.setattr(check_worker, "WORKER_MIN_BYTES", 0)
    used = []
    init = check_worker.WorkerCheckStream.__init__

    def recording(self, *args, **kwargs):
        init(self, *args, **kwargs)
        used.append(self)

    monkeypatch.setattr(check_worker.WorkerCheckStream, "__init__", recording)
    return used


@pytest.mark.parametrize("chosen", [None, "system"])
def test_landing_and_check_worker_processes_take_arrows_buffers_from_jemalloc(chosen):
    """A fresh process that lands or checks (the landing module, the check worker's) allocates
    Arrow's buffers from jemalloc, not Arrow's default here (`ingest._arrow_memory_pool`), unless
    the operator chose a pool with Arrow's $ARROW_DEFAULT_MEMORY_POOL."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    for module in ("ingest.landing", "ingest.check_worker"):
        code = f"import {module}, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == (chosen or "jemalloc"), (module, out.stdout, out.stderr)


@pytest.mark.parametrize("kind", ["faults", "unreadable"])
def test_a_csv_batch_checked_in_a_worker_lands_as_in_process(tmp_path, monkeypatch, in_worker, kind):
    """Checked by a worker process, a file with faults and a repeated trip id (or one refused whole)
    lands exactly as when this process checks it: manifest, bronze rows, pseudonyms, quarantine."""
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    lines = bench.ridehail_csv(300, 0.05).decode().splitlines(keepends=True)
    lines[250] = lines[3].split(",", 1)[0] + "," + lines[250].split(",", 1)[1]  # row 249 repeats row 2's id
    if kind == "unreadable":
        lines[0] = lines[0].replace("trip_id", "trip")
    csv = "".join(lines).encode()
    monkeypatch.setenv("MOBILITY_CHECK_WORKERS", "0")
    here = _ridehail(tmp_path / "here", monkeypatch, csv, chunk_rows=1 << 17, gate_rows=1 << 17)
    assert not in_worker
    monkeypatch.setenv("MOBILITY_CHECK_WORKERS", "1")
    worker = _ridehail(tmp_path / "worker", monkeypatch, csv, chunk_rows=1 << 17, gate_rows=1 << 17)
    assert len(in_worker) == 1  # the worker checked it
    assert worker[0]["outcome"] == ("partial" if kind == "faults" else "rejected"), worker[0]
    _same_landing(here, worker)


def test_in_a_task_a_batch_checked_here_is_gated_inline_and_one_a_worker_checks_on_the_gates_thread(
        tmp_path, monkeypatch, in_worker, arrow_threads):
    """With one Arrow thread (an Airflow ingest task) a batch this process checks is gated on the
    landing thread; a batch a check worker checks keeps the gate's thread beside the hash and
    writes. Either way it lands the same."""
    import threading

    from mobility.gates import landing_gate

    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    on_main = []
    validate = landing_gate.LandingGate._validate

    def recording(self, table):
        on_main.append(threading.current_thread() is threading.main_thread())
        return validate(self, table)

    monkeypatch.setattr(landing_gate.LandingGate, "_validate", recording)
    arrow_threads(1)
    csv = bench.ridehail_csv(300, 0.02)
    monkeypatch.setenv("MOBILITY_CHECK_WORKERS", "0")
    here = _ridehail(tmp_path / "here", monkeypatch, csv, chunk_rows=1 << 17, gate_rows=1 << 17)
    checked_here, on_main[:] = on_main[:], []
    monkeypatch.setenv("MOBILITY_CHECK_WORKERS", "1")
    worker = _ridehail(tmp_path / "worker", monkeypatch, csv, chunk_rows=1 << 17, gate_rows=1 << 17)
    assert len(in_worker) == 1 and worker[0]["outcome"] == "partial", worker[0]
    assert checked_here == [True] and on_main == [False]
    _same_landing(here, worker)


def _faulty_ridehail(kind: str) -> bytes:
    """300 ride-hail rows with faults and a repeated trip id, or (unreadable) a header missing trip_id."""
    lines = bench.ridehail_csv(300, 0.05).decode().splitlines(keepends=True)
    lines[250] = lines[3].split(",", 1)[0] + "," + lines[250].split(",", 1)[1]  # row 249 repeats row 2's id
    if kind == "unreadable":
        lines[0] = lines[0].replace("trip_id", "trip")
    return "".join(lines).encode()


@pytest.mark.parametrize("checked_in", ["process", "worker"])
@pytest.mark.parametrize("kind", ["faults", "unreadable"])
def test_a_file_lands_from_its_path_as_from_its_bytes(tmp_path, monkeypatch, in_worker, checked_in, kind):
    """A dropped file landed from its path (hashed, archived and checked in blocks, here in 4 KB
    blocks gathered into 16 KB chunks, or by a check worker; a header the columnar check refuses
    goes to the row check) lands as its bytes do."""
    import ingest.columnar

    monkeypatch.setattr(ingest.columnar, "CSV_FILE_BLOCK_BYTES", 4 << 10)
    monkeypatch.setattr(ingest.columnar, "CSV_BLOCK_BYTES", 16 << 10)
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    csv = _faulty_ridehail(kind)
    monkeypatch.setenv("MOBILITY_CHECK_WORKERS", "0")
    from_bytes = _ridehail(tmp_path / "bytes", monkeypatch, csv, chunk_rows=100, gate_rows=100)
    path = tmp_path / "rideco-trips-2026-11-02.csv"
    path.write_bytes(csv)
    monkeypatch.setenv("MOBILITY_CHECK_WORKERS", "1" if checked_in == "worker" else "0")
    from_file = _ridehail(tmp_path / "file", monkeypatch, path, chunk_rows=100, gate_rows=100)
    assert len(in_worker) == (checked_in == "worker")
    m, w = from_file
    assert m["outcome"] == ("partial" if kind == "faults" else "rejected"), m
    _same_landing(from_bytes, from_file)
    assert m["raw_sha256"] == hashlib.sha256(csv).hexdigest() and (w.root / m["raw_path"]).read_bytes() == csv


def test_a_file_landed_from_its_path_is_never_whole_in_memory(tmp_path, monkeypatch):
    """Landing a 10 MB day file from its path, the peak of this process's Python allocations
    (traced: bytes, numpy, pandas) stays far below its size; landing its bytes read in the same
    span does not."""
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    monkeypatch.setenv("MOBILITY_CHECK_WORKERS", "0")
    path = tmp_path / "rideco-trips-2026-11-02.csv"
    path.write_bytes(bench.ridehail_csv(55_000, 0.001))
    size = path.stat().st_size
    assert size > 10e6
    _ridehail(tmp_path / "warm-up", monkeypatch, bench.ridehail_csv(50, 0.0), chunk_rows=4096, gate_rows=4096)

    def traced_peak(land) -> int:
        tracemalloc.start()
        try:
            m, _ = land()
            assert m["outcome"] == "partial" and m["rows_accepted"] > 54_000, m
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    from_file = traced_peak(lambda: _ridehail(tmp_path / "file", monkeypatch, path, chunk_rows=4096, gate_rows=4096))
    from_bytes = traced_peak(lambda: _ridehail(tmp_path / "bytes", monkeypatch, path.read_bytes(),
                                               chunk_rows=4096, gate_rows=4096))
    assert from_file < size / 2 < size <= from_bytes, (from_file, from_bytes, size)


def test_a_file_is_read_a_few_blocks_ahead_of_its_check(tmp_path, monkeypatch):
    """pyarrow reads a CSV up to 32 blocks ahead of its consumer, so a file is read in blocks much
    smaller than a chunk: once the first chunk of a 10 MB file is out (32 KB blocks, 512 KB
    chunks), this process has read a fraction of it (its read bytes, /proc/self/io), not all."""
    import ingest.columnar
    from ingest.columnar import CheckStream

    monkeypatch.setattr(ingest.columnar, "CSV_FILE_BLOCK_BYTES", 32 << 10)
    monkeypatch.setattr(ingest.columnar, "CSV_BLOCK_BYTES", 512 << 10)
    path = tmp_path / "rideco-trips-2026-11-02.csv"
    path.write_bytes(bench.ridehail_csv(55_000, 0.001))
    size = path.stat().st_size
    contract = load_contract("ridehail_trips@1.0.0").with_codes({"neighborhood_id": bench.NEIGHBORHOODS})

    def read_bytes_so_far() -> int:
        return int(next(line for line in Path("/proc/self/io").read_text().splitlines()
                        if line.startswith("rchar:")).split()[1])

    stream = iter(CheckStream(contract, path, window=(bench.DAY, bench.DAY + timedelta(days=1)), read_ahead=False))
    before = read_bytes_so_far()
    rows = next(stream).num_rows
    time.sleep(0.3)  # the reader's thread reads ahead as far as it will
    read = read_bytes_so_far() - before
    rows += sum(table.num_rows for table in stream)
    assert read < size / 4 and rows > 54_000, (read, size, rows)


def test_a_check_worker_that_dies_mid_batch_stores_nothing_and_the_rerun_lands_once(tmp_path, monkeypatch, in_worker):
    """The worker is killed while it checks a batch: landing fails with a clear error, no manifest
    or bronze is written, and landing the batch again (in a new worker) stores it exactly once."""
    import signal

    from ingest import check_worker

    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    csv = bench.ridehail_csv(200, 0.0)
    receive = check_worker._receive

    def killed(worker):
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        return receive(worker)

    monkeypatch.setattr(check_worker, "_receive", killed)
    with pytest.raises(check_worker.WorkerDied, match="exited mid-batch"):
        _ridehail(tmp_path, monkeypatch, csv, chunk_rows=1 << 17, gate_rows=1 << 17)
    wd = Workdir.resolve(tmp_path / f"chunks-{1 << 17}")
    assert not list(wd.manifests.rglob("*.json")) and not [p for p in wd.bronze.rglob("*") if p.is_file()]
    monkeypatch.setattr(check_worker, "_receive", receive)
    m, wd = _ridehail(tmp_path, monkeypatch, csv, chunk_rows=1 << 17, gate_rows=1 << 17)
    assert m["outcome"] == "accepted" and m["rows_accepted"] == 200 and len(in_worker) == 2
    (bronze,) = wd.bronze.rglob("*.parquet")
    assert pq.read_table(bronze).num_rows == 200 and len(list(wd.manifests.rglob("*.json"))) == 1


def test_the_worker_protocol_passes_chunks_restarts_and_refusals(monkeypatch):
    """Against `serve` on a thread: accepted chunks arrive in order, a restart arrives as None
    (the row check takes over), and a payload the worker refuses is a PayloadError here too."""
    import threading
    from multiprocessing import Pipe

    import pyarrow as pa

    from ingest import check_worker
    from ingest.payloads import PayloadError

    class Stream:  # stands in for CheckStream inside the worker
        def __init__(self, contract, raw, **kwargs):
            self.raw = raw

        def __iter__(self):
            if self.raw == b"refused":
                raise PayloadError("row 3: not CSV")
            yield pa.table({"n": [1, 2]})
            yield None
            yield pa.table({"n": [1, 2, 3]})
            checked = CheckResult("c", "1", rows_received=4, accepted=pa.table({"n": [1, 2, 3]}), rejected_rows=[3],
                                  violations=[])
            self.result = check_worker.PayloadCheck(checked, rejected_records={3: {"n": "x"}}, path="rows")

    class Worker:
        def __init__(self):
            self.conn, theirs = Pipe()
            self.thread = threading.Thread(target=check_worker.serve, args=(theirs,), daemon=True)
            self.thread.start()
            self.process = type("P", (), {"pid": 0, "poll": lambda self: None})()

        def close(self):
            self.conn.close()

    monkeypatch.setattr(check_worker, "CheckStream", Stream)
    monkeypatch.setattr(check_worker, "_IDLE", [])
    monkeypatch.setattr(check_worker, "_Worker", Worker)
    contract = load_contract("ridehail_trips@1.0.0")
    stream = check_worker.WorkerCheckStream(contract, b"fine")
    got = [None if t is None else t.column("n").to_pylist() for t in stream]
    assert got == [[1, 2], None, [1, 2, 3]] and stream.result.path == "rows"
    # the row check's accepted rows went out as the last chunk: the result counts them, holds none
    assert stream.result.result.rows_accepted == 3 and stream.result.result.accepted.num_rows == 0
    assert stream.result.rejected_records == {3: {"n": "x"}}
    with pytest.raises(PayloadError, match="row 3: not CSV"):
        list(check_worker.WorkerCheckStream(contract, b"refused"))
    assert len(check_worker._IDLE) == 1  # the same worker served both, and is idle again


def test_a_batch_whose_archive_fails_gives_up_its_worker(tmp_path, monkeypatch, in_worker):
    """The worker gets the bytes before the raw archive is written; if that write fails, the
    worker (mid-batch, unread) is stopped, not kept, and the next landing gets a clean one."""
    import ingest.landing

    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    csv = bench.ridehail_csv(100, 0.0)
    write = ingest.landing.atomic_write

    def full_disk(path, data, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ingest.landing, "atomic_write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _ridehail(tmp_path, monkeypatch, csv, chunk_rows=1 << 17, gate_rows=1 << 17)
    assert in_worker[0].worker is None  # stopped, not handed back busy
    monkeypatch.setattr(ingest.landing, "atomic_write", write)
    m, _ = _ridehail(tmp_path, monkeypatch, csv, chunk_rows=1 << 17, gate_rows=1 << 17)
    assert (m["outcome"], m["rows_accepted"], len(in_worker)) == ("accepted", 100, 2)


def test_the_raw_archive_is_written_beside_the_check_and_before_anything_else(wd, scootco, monkeypatch):
    """The raw bytes are archived on a thread of their own while the batch is checked, and that
    write ends before the bronze file, the quarantine report or the manifest is written."""
    import threading
    import time

    import ingest.landing

    events = []
    write, publish = ingest.landing.atomic_write, ingest.landing.StagedParquet.publish

    def recording_write(path, data, **kwargs):
        raw = "raw" in path.relative_to(wd.root).parts[:2]
        events.append(("start", path.name, raw, threading.current_thread().name))
        if raw:
            time.sleep(0.3)  # a slow disk: the check goes on meanwhile
        write(path, data, **kwargs)
        events.append(("end", path.name, raw, threading.current_thread().name))

    def recording_publish(self):
        events.append(("start", self.path.name, False, threading.current_thread().name))
        publish(self)

    monkeypatch.setattr(ingest.landing, "atomic_write", recording_write)
    monkeypatch.setattr(ingest.landing.StagedParquet, "publish", recording_publish)
    pid = scootco[0].mds_provider_id
    records = [trip(pid, i) for i in range(20)]
    records[3]["duration"] = -1  # a rejected row: a quarantine report too
    m = land(wd, scootco, records)
    assert m["outcome"] == "partial"
    raw_end = next(i for i, e in enumerate(events) if e[0] == "end" and e[2])
    assert events[raw_end][3].startswith("raw-archive")  # not the landing thread
    others = [i for i, e in enumerate(events) if e[0] == "start" and not e[2]]
    assert len(others) >= 3 and min(others) > raw_end  # quarantine, bronze, manifest: all after


def _pages_in_cache(path: Path) -> int:
    """How many of a file's pages the page cache holds (Linux `mincore` on a mapping of it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            pages = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
            assert libc.mincore(address, size, pages) == 0, os.strerror(ctypes.get_errno())
            return sum(p & 1 for p in pages)
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here (Linux only)")
def test_the_raw_archive_leaves_the_page_cache_once_on_disk(wd, scootco):
    """The raw archive is written once and seldom read: it does not stay in the page cache, where
    a day of pages would push out what the warehouse reads. Bronze, read by the next build, does."""
    pid = scootco[0].mds_provider_id
    m = land(wd, scootco, [trip(pid, i) for i in range(3000)])
    raw, bronze = wd.root / m["raw_path"], Lake(wd, "scootco", "mds_trips").bronze(HOUR)
    assert _pages_in_cache(bronze) > 0  # mincore sees this file system's cache
    assert raw.stat().st_size > 1_000_000 and _pages_in_cache(raw) == 0
