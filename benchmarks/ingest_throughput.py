"""Ingest throughput: rows per second and peak memory to validate, and to validate and land,
1M ride-hail CSV rows and 1M MDS trips served as JSON pages (not a test: run it by hand).

    .venv/bin/python benchmarks/ingest_throughput.py [--rows 1000000] [--page-rows 100000]
        [--fault-rate 0.001] [--json out.json] [--reference] [--repeat 1] [--scratch DIR]

The data is generated once into a scratch folder: one ride-hail file (ridehail_trips@1.0.0, one
local day, as a firm drops it) and MDS pages (mds_trips@2.0.0, one UTC hour of trips per page, as
`GET /trips` serves them), with `--fault-rate` of the rows broken (a value that breaks a field or
rule, as partners' files do); a `--scratch` folder keeps it for later runs with the same sizes (it
is generated from fixed seeds). Each case then runs in its own child process, so one case's memory
does not count against another:

- validate: `ingest.columnar.check_payload` on the bytes (parse + contract check, typed rows)
- land: `ingest.landing.land_batch` (raw archive, check, landing gate, pseudonymised bronze,
  quarantine report, manifest), the CSV from its path as the file-drop step lands it; the time
  land_batch spends in the landing gate's `add`, `flush` and `finish` is timed too (the gate
  validates on its own thread: that is the time spent waiting for it)
- mds_land_parallel: mds_land with the pages shared among one landing process per CPU, started
  together (as Airflow task slots land hours side by side), each with the Arrow threads of an
  Airflow ingest task (`mobility.settings.task_arrow_threads`); CPU and peak RSS summed over them
- csv_floor: the steps no landing of the ride-hail file can skip, each alone on one thread, with
  the landing's own code where it has one: the file's SHA-256, its copy into the raw archive,
  parsing it into the contract's types (pyarrow, no rule checked), the keyed hash of its
  pseudonymised ids, the zstd Parquet write. No contract rule, uniqueness, landing gate, manifest
  or second process: the sum of their CPU seconds bounds any landing from below, so
  `ceiling_rows_per_s` (rows x CPUs / that sum) is the most a landing could reach with every core
  busy, and `budget_cpu_s` what the 500,000 rows/s target allows on this machine's cores
- with `--reference`, validate-rows: `parse_records` + `Contract.check` (the row-by-row check)

Figures per case: wall seconds (the work, reading each batch's file included; imports and a warm-up come first),
(process CPU seconds too, all threads: steadier than wall seconds on a shared machine),
rows/s, peak RSS of the child (VmHWM: process-wide, imports included) and its RSS before
the work started. With `--repeat N` the cases run N times in turn (all cases, then all again), so
that a shared machine's drift in speed falls on every case alike; the summary gives each case's
median and range of rows/s. A big CSV batch is checked in a check worker process (`ingest.check_worker`),
which the warm-up starts, as a long-running ingest process keeps it: its CPU seconds are added
to the case's and its peak RSS is reported beside the child's. A case's footprint is the memory
its processes take together (`Footprint`: their private memory summed, the shared libraries'
pages once), sampled every 20 ms. The machine's load average is recorded at the start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAY = datetime(2026, 11, 2, tzinfo=timezone.utc)
BBOX = [-87.94, 41.64, -87.52, 42.02]  # [minlon, minlat, maxlon, maxlat]
NEIGHBORHOODS = range(1, 78)
CASES = ("csv_validate", "csv_land", "csv_floor", "mds_validate", "mds_land", "mds_land_parallel")
TARGET_CSV_ROWS_PER_S = 500_000  # the CSV target of the ingest issue (#3), on the project's 2-core machines
PARALLEL_CASE = "mds_land_parallel"  # mds_land in one process per CPU, side by side
REFERENCE_CASES = ("csv_validate_rows", "mds_validate_rows")


# ---------------------------------------------------------------------------- data

def ridehail_csv(rows: int, fault_rate: float, seed: int = 7) -> bytes:
    """One local day of ride-hail trips as the firm's CSV (built column-wise: fast for 1M rows)."""
    rng = np.random.default_rng(seed)
    start = (DAY.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds() + rng.integers(0, 86_000, rows)
    seconds = rng.integers(120, 3600, rows)
    fare = np.round(rng.uniform(5, 60, rows), 2)
    tip = np.where(rng.random(rows) < 0.3, np.round(rng.uniform(1, 8, rows)), 0.0)
    other = np.round(rng.uniform(0, 3, rows), 2)
    ts = lambda s: pc.strftime(pa.array(s.astype("datetime64[s]")), format="%Y-%m-%d %H:%M:%S")  # noqa: E731
    money = lambda v: pa.array(np.char.mod("%.2f", v))  # noqa: E731
    ids = pa.array(np.char.mod("%040x", rng.permutation(rows).astype(np.int64) * 7_919 + 104_729))
    table = pa.table({
        "trip_id": ids,
        "trip_start_timestamp": ts(start), "trip_end_timestamp": ts(start + seconds),
        "trip_seconds": pa.array(seconds).cast(pa.string()),
        "trip_miles": money(seconds / 3600 * rng.uniform(8, 25, rows)),
        "pickup_community_area": pa.array(rng.integers(1, 78, rows)).cast(pa.string()),
        "dropoff_community_area": pa.array(rng.integers(1, 78, rows)).cast(pa.string()),
        "fare": money(fare), "tip": money(tip), "additional_charges": money(other),
        "trip_total": money(fare + tip + other),
        "shared_trip_authorized": pa.array(np.where(rng.random(rows) < 0.1, "true", "false")),
        "trips_pooled": pa.array(np.ones(rows, int)).cast(pa.string()),
        "pickup_centroid_latitude": money(rng.uniform(41.7, 41.98, rows)),
        "pickup_centroid_longitude": money(rng.uniform(-87.85, -87.55, rows)),
        "dropoff_centroid_latitude": money(rng.uniform(41.7, 41.98, rows)),
        "dropoff_centroid_longitude": money(rng.uniform(-87.85, -87.55, rows)),
    })
    bad = np.flatnonzero(rng.random(rows) < fault_rate)
    if len(bad):  # a negative fare, a total that does not add up, a trip of the next day, an unknown area
        columns = {name: table.column(name).to_pylist() for name in ("fare", "trip_total", "trip_start_timestamp",
                                                                       "pickup_community_area")}
        for k, i in enumerate(bad.tolist()):
            name = list(columns)[k % 4]
            columns[name][i] = {"fare": "-1.00", "trip_total": "0.01", "trip_start_timestamp": "2026-11-03 00:30:00",
                                "pickup_community_area": "99"}[name]
        for name, values in columns.items():
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed"))
    return sink.getvalue().to_pybytes()


def mds_page(rows: int, hour: datetime, provider_id: str, fault_rate: float, seed: int) -> bytes:
    """One hour of MDS 2.0 trips, as `GET /trips?end_time=...` serves it."""
    import orjson

    rng = np.random.default_rng(seed)
    t0 = int(hour.timestamp() * 1000)
    end = t0 + rng.integers(0, 3_600_000, rows)
    distance = rng.integers(200, 6000, rows)
    duration = np.clip(distance / (rng.uniform(8, 20, rows) / 3.6) + rng.integers(20, 90, rows), 60, 3540).astype(int)
    lat, lon = rng.uniform(41.70, 41.98, (rows, 2)), rng.uniform(-87.85, -87.55, (rows, 2))
    hexes = np.char.mod("%032x", rng.integers(1, 2**62, 2 * rows, dtype=np.int64)).tolist()
    ids = [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexes]
    devices = [ids[i] for i in rng.integers(0, rows // 4 + 1, rows)]  # a device makes several trips
    bad = set(np.flatnonzero(rng.random(rows) < fault_rate).tolist())
    trips = []
    for i in range(rows):
        trip = {
            "provider_id": provider_id, "device_id": devices[i], "trip_id": ids[rows + i],
            "vehicle_type": "scooter", "propulsion_types": ["electric"], "trip_type": ["rider"],
            "start_time": int(end[i] - duration[i] * 1000), "end_time": int(end[i]),
            "start_location": {"lat": float(lat[i, 0]), "lng": float(lon[i, 0])},
            "end_location": {"lat": float(lat[i, 1]), "lng": float(lon[i, 1])},
            "duration": int(duration[i]), "distance": int(distance[i]),
        }
        if i in bad:  # a negative duration, a repeated trip id, an end outside the hour
            trip.update([{"duration": -5}, {"trip_id": ids[rows]}, {"end_time": t0 - 1}][i % 3])
        trips.append(trip)
    return orjson.dumps({"version": "2.0.0", "trips": trips})


def generate(folder: Path, rows: int, page_rows: int, fault_rate: float) -> dict:
    from mobility.registry import load_registry

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ridehail.csv").write_bytes(ridehail_csv(rows, fault_rate))
    provider = load_registry().partner("scootco").mds_provider_id
    pages = []
    for k, start in enumerate(range(0, rows, page_rows)):
        hour = DAY + timedelta(hours=k)
        path = folder / f"mds-{hour:%Y-%m-%dT%H}.json"
        path.write_bytes(mds_page(min(page_rows, rows - start), hour, provider, fault_rate, seed=100 + k))
        pages.append({"path": path.name, "hour": hour.isoformat()})
    meta = {"rows": rows, "page_rows": page_rows, "fault_rate": fault_rate, "mds_pages": pages,
            "csv_bytes": (folder / "ridehail.csv").stat().st_size,
            "mds_bytes": sum((folder / p["path"]).stat().st_size for p in pages)}
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


# ---------------------------------------------------------------------------- one case (child process)

def _rss_mb(key: str = "VmRSS", pid: int | str = "self") -> float:
    """A process's resident memory (VmHWM: its peak) in MB. Unlike ru_maxrss, which Linux carries
    over from the parent through fork and exec, VmHWM starts afresh in the child."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _workers() -> dict[int, tuple[float, float]]:
    """The check workers this process keeps: pid -> (CPU seconds so far, peak RSS MB)."""
    from ingest.check_worker import worker_pids

    out = {}
    for pid in worker_pids():
        # /proc/<pid>/stat: utime and stime (fields 14 and 15) in clock ticks, after the command's ")"
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[pid] = ((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), _rss_mb("VmHWM", pid))
    return out


def run_case(case: str, data: Path, workdir: Path, share: tuple[int, int] = (0, 1), go: Path | None = None) -> dict:
    from ingest.columnar import check_payload
    from ingest.contracts import load_contract
    from ingest.landing import Window, land_batch
    from ingest.payloads import parse_records
    from mobility.registry import load_registry
    from mobility.settings import Workdir

    meta = json.loads((data / "meta.json").read_text())
    if case == "csv_floor":
        return csv_floor(data / "ridehail.csv", Workdir.resolve(workdir))
    kind = case.split("_")[0]
    if kind == "csv":
        contract = load_contract("ridehail_trips@1.0.0").with_codes({"neighborhood_id": NEIGHBORHOODS})
        partner = next(p for p in load_registry().partners if any(f.contract == contract.ref for f in p.feeds))
        feed = next(f for f in partner.feeds if f.contract == contract.ref)
        batches = [(Window(DAY, DAY + timedelta(days=1)), data / "ridehail.csv")]
    else:
        contract = load_contract("mds_trips@2.0.0")
        partner = load_registry().partner("scootco")
        feed = partner.feed("mds_trips")
        batches = [(Window.hour(datetime.fromisoformat(p["hour"])), data / p["path"]) for p in meta["mds_pages"]]
    batches = batches[share[0]::share[1]]  # this process's share of the pages (parallel landing)
    if go is not None:  # one of several landing processes side by side: as an Airflow ingest task
        from mobility.settings import task_arrow_threads

        pa.set_cpu_count(task_arrow_threads())
    gate_s = 0.0
    wd = Workdir.resolve(workdir)
    if case.endswith("_land"):
        from mobility.gates.landing_gate import LandingGate

        inside = [0]  # `add` calls `flush`: only the outermost call is timed

        def timed(method):
            def run(*args, **kwargs):
                nonlocal gate_s
                t = time.perf_counter()
                inside[0] += 1
                try:
                    return method(*args, **kwargs)
                finally:
                    inside[0] -= 1
                    if not inside[0]:
                        gate_s += time.perf_counter() - t
            return run

        # land_batch feeds the gate chunk by chunk: its share is the time in `add`, `flush` and `finish`
        LandingGate.add, LandingGate.flush, LandingGate.finish = (
            timed(LandingGate.add), timed(LandingGate.flush), timed(LandingGate.finish))

    def one(wd: Workdir, window: Window, raw: bytes) -> tuple[int, int, int, str]:
        if case.endswith("_land"):
            m = land_batch(wd, partner=partner, feed=feed, contract=contract, window=window, raw=raw,
                           source="benchmark")
            return m["rows_received"], m["rows_accepted"], m["rows_rejected"], m["outcome"]
        if case.endswith("_rows"):
            result, path = contract.check(parse_records(contract, raw), window=(window.start, window.end)), "rows"
        else:
            checked = check_payload(contract, raw, window=(window.start, window.end))
            result, path = checked.result, checked.path
        return result.rows_received, result.rows_accepted, result.rows_rejected, path

    for folder in (wd, Workdir.resolve(workdir / "warm-up")):
        folder.city.mkdir(parents=True, exist_ok=True)
        folder.city_meta.write_text(json.dumps({"name": "Bench", "timezone": "America/Chicago", "bbox": BBOX}))
    # warm-up on a small batch: first calls build GX's caches and pyarrow's kernels once per process
    window = batches[0][0]
    warm_raw = ridehail_csv(50, 0.0) if kind == "csv" else mds_page(50, window.start, partner.mds_provider_id, 0.0, 1)
    one(Workdir.resolve(workdir / "warm-up"), window, warm_raw)
    if case.endswith("_land"):  # and through a check worker, which a long-running ingest process keeps
        from ingest import check_worker

        size, check_worker.WORKER_MIN_BYTES = check_worker.WORKER_MIN_BYTES, 0
        one(Workdir.resolve(workdir / "warm-up"), window, warm_raw)
        check_worker.WORKER_MIN_BYTES = size
    gate_s = 0.0

    if go is not None:  # parallel landing: ready once warm, then start with the other processes
        go.with_name(f"{go.name}.ready.{share[0]}").touch()
        while not go.exists():
            time.sleep(0.005)
    rss_before = _rss_mb()
    received = accepted = rejected = 0
    seen: set[str] = set()
    workers_before = _workers() if case.endswith("_land") else {}
    start, cpu, started_at = time.perf_counter(), time.process_time(), time.time()
    for window, path in batches:
        # a day file lands from its path, as the file-drop step lands it; a page's bytes are read
        # first, one page in memory at a time, as an ingest task receives them
        raw = path if kind == "csv" and case.endswith("_land") else path.read_bytes()
        n, ok, bad, how = one(wd, window, raw)
        received, accepted, rejected = received + n, accepted + ok, rejected + bad
        seen.add(how)
        del raw
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    workers = _workers() if case.endswith("_land") else {}
    worker_cpu = sum(t - workers_before.get(pid, (0.0, 0.0))[0] for pid, (t, _) in workers.items())
    cpu += worker_cpu
    return {
        "case": case, "rows": received, "rows_accepted": accepted, "rows_rejected": rejected,
        "batches": len(batches), "started_at": started_at, "wall_s": round(wall, 3), "rows_per_s": round(received / wall) if wall else None,
        # CPU seconds of the whole process (all threads): steadier than wall time on a shared machine
        "cpu_s": round(cpu, 3), "rows_per_cpu_s": round(received / cpu) if cpu else None,
        "gate_s": round(gate_s, 3) if case.endswith("_land") else None,
        "peak_rss_mb": round(_rss_mb("VmHWM"), 1),
        # big CSV batches are checked by a worker process (ingest.check_worker): its share of
        # `cpu_s`, and its own peak memory (warm-up included), beside this process's
        "worker_cpu_s": round(worker_cpu, 3) if workers else None,
        "worker_peak_rss_mb": round(max(rss for _, rss in workers.values()), 1) if workers else None,
        "rss_before_mb": round(rss_before, 1),
        # validate cases: the check's path (columnar, rows); land cases: the batches' outcomes
        "path_or_outcome": sorted(seen),
    }


def csv_floor(path: Path, wd: "Workdir") -> dict:
    """The CPU seconds of the steps every landing of `path` must take, each alone (see `csv_floor`
    in the module's docstring), and the highest rate they leave room for on this machine's cores."""
    import pyarrow.parquet as pq

    from ingest.contracts import load_contract
    from ingest.landing import StagedParquet, _bronze_schema, _sha256, atomic_write, pseudonymise

    contract = load_contract("ridehail_trips@1.0.0")
    pa.set_cpu_count(1)  # CPU time is the measure: threads would only add their coordination
    pa.set_io_thread_count(1)
    key = b"benchmark-key"
    steps: dict[str, float] = {}
    walls: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        steps[name], walls[name] = time.process_time() - cpu, time.perf_counter() - wall
        return out

    rss_before = _rss_mb()
    started_at = time.time()
    timed("checksum", _sha256, path)
    timed("raw_archive", atomic_write, wd.raw / "floor" / path.name, path, cached=False)
    schema = contract.arrow_schema()
    table = timed("parse_typed", pacsv.read_csv, path,
                  read_options=pacsv.ReadOptions(use_threads=False, block_size=16 << 20),
                  convert_options=pacsv.ConvertOptions(column_types=schema, include_columns=schema.names))

    def hash_ids(table: pa.Table) -> pa.Table:
        for f in contract.fields:
            if f.pseudonymise:
                i = table.schema.get_field_index(f.column)
                table = table.set_column(i, f.column, pseudonymise(table.column(i).combine_chunks(), key,
                                                                   distinct=f.unique))
        return table

    table = timed("keyed_hash", hash_ids, table)
    bronze_schema = _bronze_schema(contract)
    distinct = tuple(f.column for f in contract.fields if f.unique and f.pseudonymise)

    def write(table: pa.Table) -> None:
        n = table.num_rows
        table = table.add_column(0, "batch_id", pa.repeat(pa.scalar("floor", pa.string()), n))
        table = table.add_column(0, "partner_id", pa.repeat(pa.scalar("floor", pa.string()), n))
        with StagedParquet(wd.bronze / "floor.parquet", bronze_schema, distinct=distinct) as bronze:
            bronze.write(table.cast(bronze_schema))
            bronze.publish()

    timed("parquet_write", write, table)
    rows = table.num_rows
    if pq.read_metadata(wd.bronze / "floor.parquet").num_rows != rows:
        raise RuntimeError("the floor's Parquet file does not hold every row it parsed")
    cpu, wall = round(sum(steps.values()), 3), sum(walls.values())  # the ceiling from the figure reported
    cpus = os.cpu_count() or 1
    return {
        "case": "csv_floor", "rows": rows, "rows_accepted": rows, "rows_rejected": 0, "batches": 1,
        "started_at": started_at, "wall_s": round(wall, 3), "rows_per_s": round(rows / wall),
        "cpu_s": cpu, "rows_per_cpu_s": round(rows / cpu),
        "steps_cpu_s": {k: round(v, 3) for k, v in steps.items()},
        "ceiling_rows_per_s": round(rows * cpus / cpu),
        "cpus": cpus, "budget_cpu_s": round(rows * cpus / TARGET_CSV_ROWS_PER_S, 3),
        "gate_s": None, "peak_rss_mb": round(_rss_mb("VmHWM"), 1), "worker_cpu_s": None, "worker_peak_rss_mb": None,
        "rss_before_mb": round(rss_before, 1), "path_or_outcome": ["floor"],
    }


# ---------------------------------------------------------------------------- parent

class Footprint(threading.Thread):
    """The memory a case's processes take together (its children and their check workers), sampled
    every 20 ms while they run: their private memory (RssAnon, RssShmem) summed, and the pages of
    the files they map (shared libraries: RssFile) counted once, as the largest of theirs. Summed
    peak RSS counts those library pages once per process, and how many of them are resident
    depends on the page cache (the same import of Great Expectations mapped 83 to 116 MB of them)."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.pids, self.peak_mb, self.done = pids, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            tree = self.pids + [int(c) for pid in self.pids  # with their children (check workers)
                                for task in Path(f"/proc/{pid}/task").glob("*/children") for c in _read(task).split()]
            private = files = 0.0
            for pid in tree:
                status = dict(line.split(":", 1) for line in _read(f"/proc/{pid}/status").splitlines())
                kb = lambda key: int(status.get(key, "0 kB").split()[0]) / 1024  # noqa: E731
                private, files = private + kb("RssAnon") + kb("RssShmem"), max(files, kb("RssFile"))
            self.peak_mb = max(self.peak_mb, private + files)
            self.done.wait(0.02)  # a sample costs this process about 0.5 ms

    def stop(self) -> float:
        self.done.set()
        self.join()
        return round(self.peak_mb, 1)


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:  # the process has ended
        return ""


def _spawn(args: list[str]) -> subprocess.Popen:
    """This script as a child process running one case (`--case ...`)."""
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=os.environ.copy())


def _run_child(args: list[str]) -> tuple[str, float]:
    """A child's stdout (it exits 0 or the benchmark stops) and its memory footprint."""
    proc = _spawn(args)
    footprint = Footprint([proc.pid])
    footprint.start()
    out, err = proc.communicate()
    peak = footprint.stop()
    if proc.returncode:
        raise SystemExit(f"case {args[1]} failed:\n{err[-4000:]}")
    return out, peak


def _parallel(data: Path, workdir: Path, processes: int) -> dict:
    """mds_land with the pages shared among `processes` landing processes started together, as
    that many Airflow task slots land hours side by side: wall time from the first start to the
    last end; CPU seconds and peak RSS summed over the processes (their peaks may not coincide)."""
    workdir.mkdir(parents=True)
    go = workdir / "go"
    procs = [_spawn(["--case", "mds_land", "--data", str(data), "--workdir", str(workdir / f"p{k}"),
                     "--share", f"{k}/{processes}", "--go", str(go)])
             for k in range(processes)]
    footprint = Footprint([p.pid for p in procs])
    footprint.start()
    while not all((workdir / f"go.ready.{k}").exists() for k in range(processes)):
        if any(p.poll() for p in procs):
            break
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate() for p in procs]
    peak_footprint = footprint.stop()
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"case {PARALLEL_CASE} failed:\n{err[-4000:]}")
    parts = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    start = min(r["started_at"] for r in parts)
    wall = max(r["started_at"] + r["wall_s"] for r in parts) - start
    total = lambda key: sum(r[key] for r in parts)  # noqa: E731
    rows, cpu = total("rows"), total("cpu_s")
    return {
        "case": PARALLEL_CASE, "processes": processes, "rows": rows, "rows_accepted": total("rows_accepted"),
        "rows_rejected": total("rows_rejected"), "batches": total("batches"), "started_at": start,
        "wall_s": round(wall, 3), "rows_per_s": round(rows / wall), "cpu_s": round(cpu, 3),
        "rows_per_cpu_s": round(rows / cpu), "gate_s": round(total("gate_s"), 3),
        "peak_rss_mb": round(total("peak_rss_mb"), 1), "peak_rss_mb_each": [r["peak_rss_mb"] for r in parts],
        "peak_footprint_mb": peak_footprint,
        "rss_before_mb": round(total("rss_before_mb"), 1), "worker_cpu_s": None, "worker_peak_rss_mb": None,
        "path_or_outcome": sorted({o for r in parts for o in r["path_or_outcome"]}),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page-rows", type=int, default=100_000, help="MDS trips per page (one hour each)")
    parser.add_argument("--fault-rate", type=float, default=0.001)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--reference", action="store_true", help="also time the row-by-row check (slow)")
    parser.add_argument("--cases", help=f"comma-separated subset of {', '.join(CASES + REFERENCE_CASES)}")
    parser.add_argument("--scratch", type=Path, help="folder for the data and workdirs, kept (default: a temp folder)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case, in turn (default: 1)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--share", help=argparse.SUPPRESS)
    parser.add_argument("--go", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOBILITY_PSEUDONYM_KEY", "benchmark-key")

    if args.case:  # a child: one case, figures as JSON on stdout
        share = tuple(int(x) for x in args.share.split("/")) if args.share else (0, 1)
        print(json.dumps(run_case(args.case, args.data, args.workdir, share, args.go)))
        return {}

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    started = datetime.now(timezone.utc)
    load_start = _load()
    t = time.perf_counter()
    meta, generated = _data(scratch / "data", args.rows, args.page_rows, args.fault_rate)
    how = f"generated in {time.perf_counter() - t:.0f} s" if generated else "kept from an earlier run"
    print(f"data: {args.rows:,} ride-hail rows ({meta['csv_bytes'] / 1e6:,.0f} MB CSV), {args.rows:,} MDS trips in "
          f"{len(meta['mds_pages'])} pages ({meta['mds_bytes'] / 1e6:,.0f} MB JSON), fault rate {args.fault_rate}; "
          f"{how}", flush=True)
    results = []
    cases = args.cases.split(",") if args.cases else CASES + (REFERENCE_CASES if args.reference else ())
    for run, case in ((run, case) for run in range(1, args.repeat + 1) for case in cases):
        workdir = scratch / f"wd-{case}"
        shutil.rmtree(workdir, ignore_errors=True)
        if case == PARALLEL_CASE:
            results.append(_parallel(scratch / "data", workdir, os.cpu_count() or 1))
        else:
            out, peak_footprint = _run_child(["--case", case, "--data", str(scratch / "data"), "--workdir", str(workdir)])
            results.append(json.loads(out.strip().splitlines()[-1]) | {"peak_footprint_mb": peak_footprint})
        r = results[-1]
        r["run"] = run
        print(f"{case}{f' (run {run})' if args.repeat > 1 else ''}: {r['rows_per_s']:,} rows/s ({r['rows_per_cpu_s']:,} "
              f"per CPU s), peak {r['peak_rss_mb']:,.0f} MB, footprint {r['peak_footprint_mb']:,.0f} MB", flush=True)
        if case == "csv_floor":
            print(f"  {_floor_line(r)}", flush=True)
    report = {
        "started_at": started.isoformat(), "rows": args.rows, "page_rows": args.page_rows,
        "fault_rate": args.fault_rate, "csv_bytes": meta["csv_bytes"], "mds_bytes": meta["mds_bytes"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "pyarrow": pa.__version__,
                    "load_average_start": load_start, "load_average_end": _load()},
        "cases": results,
        "summary": summary(results),
    }
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _floor_line(r: dict) -> str:
    steps = ", ".join(f"{name.replace('_', ' ')} {s:.2f}" for name, s in r["steps_cpu_s"].items())
    return (f"steps no landing can skip {r['cpu_s']:.2f} CPU s ({steps}); the {TARGET_CSV_ROWS_PER_S:,} rows/s "
            f"target allows {r['budget_cpu_s']:.2f} on {r['cpus']} cores; ceiling {r['ceiling_rows_per_s']:,} rows/s")


def _data(folder: Path, rows: int, page_rows: int, fault_rate: float) -> tuple[dict, bool]:
    """The data in `folder` (its meta) and whether it was generated now: data of these sizes already
    there is kept, as the fixed seeds would generate it again."""
    meta_path = folder / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        files = [folder / "ridehail.csv"] + [folder / p["path"] for p in meta["mds_pages"]]
        if (meta["rows"], meta["page_rows"], meta["fault_rate"]) == (rows, page_rows, fault_rate) and all(
                f.exists() for f in files):
            return meta, False
    return generate(folder, rows, page_rows, fault_rate), True


def summary(results: list[dict]) -> list[dict]:
    """Per case over its runs: median, lowest and highest rows/s, median CPU seconds, highest peak."""
    out = []
    for case in dict.fromkeys(r["case"] for r in results):
        runs = [r for r in results if r["case"] == case]
        speeds = [r["rows_per_s"] for r in runs]
        out.append({"case": case, "runs": len(runs), "rows_per_s_median": round(statistics.median(speeds)),
                    "rows_per_s_min": min(speeds), "rows_per_s_max": max(speeds),
                    "cpu_s_median": round(statistics.median(r["cpu_s"] for r in runs), 3),
                    "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
                    "peak_footprint_mb_max": max(r["peak_footprint_mb"] for r in runs)})
    return out


def table(report: dict) -> str:
    lines = ["| case | run | rows | accepted | rejected | wall s | rows/s | CPU s | rows/CPU s | gate s | peak RSS MB "
             "| RSS before MB | worker CPU s | worker peak MB | footprint MB | path / outcome |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["cases"]:
        gate = f"{r['gate_s']:.2f}" if r["gate_s"] is not None else ""
        worker = (f"{r['worker_cpu_s']:.2f} | {r['worker_peak_rss_mb']:,.0f}" if r.get("worker_cpu_s") is not None
                  else " | ")
        name = f"{r['case']} ({r['processes']} processes, memory summed)" if r.get("processes") else r["case"]
        lines.append(f"| {name} | {r.get('run', 1)} | {r['rows']:,} | {r['rows_accepted']:,} | {r['rows_rejected']:,} | {r['wall_s']:.2f} "
                     f"| {r['rows_per_s']:,} | {r['cpu_s']:.2f} | {r['rows_per_cpu_s']:,} | {gate} | {r['peak_rss_mb']:,.0f} | {r['rss_before_mb']:,.0f} "
                     f"| {worker} | {r['peak_footprint_mb']:,.0f} | {', '.join(r['path_or_outcome'])} |")
    if any(s["runs"] > 1 for s in report.get("summary", [])):
        lines += ["", "| case | runs | median rows/s | lowest | highest | median CPU s | highest peak RSS MB "
                  "| highest footprint MB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {s['case']} | {s['runs']} | {s['rows_per_s_median']:,} | {s['rows_per_s_min']:,} "
                  f"| {s['rows_per_s_max']:,} | {s['cpu_s_median']:.2f} | {s['peak_rss_mb_max']:,.0f} "
                  f"| {s['peak_footprint_mb_max']:,.0f} |"
                  for s in report["summary"]]
    lines += [f"\n{r['case']} (run {r.get('run', 1)}): {_floor_line(r)}" for r in report["cases"] if r["case"] == "csv_floor"]
    m = report["machine"]
    lines.append(f"\n{m['cpus']} CPUs; load average {m['load_average_start']} at the start, {m['load_average_end']} at the end")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
