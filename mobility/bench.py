"""`mobility bench`: the cost of the whole pipeline, stage by stage, against a hand-written floor.

One measured day (all its UTC hours, both MDS scooter operators) goes through the real pipeline:

- fetch and land: `pipeline.ingest_range` pulling every hour over HTTP from the simulator (a child
  process, as in the demo), with the contract check, the landing gate and the bronze write inside
- landing gate: the same batches through `run_landing_gate` again, alone, serially (it is part of
  fetch and land; this row isolates it). Reported as not available if the module does not exist
- dbt build, publish gate, publish: `build_warehouse`, `gate_marts`, `publish_marts`
- floor: one DuckDB query counting trips per neighborhood and day straight from the raw JSON

Each stage runs in its own Python child process (``python -m mobility.bench --stage ...``), so its
peak memory is its own: the child reports ``ru_maxrss`` of itself and of its children (dbt runs
as a grandchild, so the dbt build's peak is dbt's). Heavy imports happen before the stage's clock
starts; interpreter start and imports are counted as orchestration overhead, with dbt's own
start-up (its elapsed time outside the span of its nodes). History days before the measured day
are landed without HTTP, straight from the simulator's world through `land_batch`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time as dtime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mobility.settings import PROJECT_ROOT, Workdir

log = logging.getLogger(__name__)

FEED = "mds_trips"
# The demo's scale=1 is 5,200 + 3,600 trips on a weekday for the two MDS scooter operators.
TRIPS_PER_DAY_AT_SCALE_1 = 8_800
DEFAULT_DAY = "2026-11-18"  # a Wednesday: weekday volume is exactly the configured trips/day on average
PIPELINE_STAGES = ("fetch_land", "dbt_build", "publish_gate", "publish")
ALL_STAGES = ("fetch_land", "landing_gate", "dbt_build", "publish_gate", "publish", "floor")
STAGE_TITLES = {
    "fetch_land": "fetch+land (HTTP)",
    "landing_gate": "landing gate",
    "dbt_build": "dbt build",
    "publish_gate": "publish gate",
    "publish": "publish",
    "floor": "floor query",
    "end_to_end": "whole run",
}
# Imported before a stage's clock starts: import time is orchestration overhead, not stage work.
WARM_IMPORTS = {
    "fetch_land": ("mobility.pipeline", "mobility.gates.landing_gate", "great_expectations"),
    "landing_gate": ("mobility.gates.landing_gate", "great_expectations", "ingest.landing"),
    "dbt_build": ("mobility.pipeline", "mobility.warehouse.build"),
    "publish_gate": ("mobility.pipeline", "mobility.gates.publish_gate", "great_expectations"),
    "publish": ("mobility.pipeline", "mobility.warehouse.publish"),
    # the DuckDB client imports pandas lazily on the first query with a list parameter (seconds)
    "floor": ("duckdb", "pandas", "mobility.spatial"),
}
TARGET_FLOOR_FACTOR = 5.0
TARGET_GROWTH_RATIO = 1.25
TARGET_PEAK_BYTES = 4 * 1024**3


class BenchError(RuntimeError):
    """A stage failed; the message names it and points at its log."""


def landing_gate_available() -> bool:
    """True if the GX landing gate module exists in this tree (it is being added concurrently)."""
    return importlib.util.find_spec("mobility.gates.landing_gate") is not None


def scale_for(trips_per_day: float) -> float:
    """The simulator's `scale` giving `trips_per_day` weekday trips across the MDS operators."""
    return trips_per_day / TRIPS_PER_DAY_AT_SCALE_1


def local_day_bounds(day: date, tz_name: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a local calendar day of the city."""
    tz = ZoneInfo(tz_name)
    start = datetime.combine(day, dtime(0), tzinfo=tz).astimezone(timezone.utc)
    end = datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=tz).astimezone(timezone.utc)
    return start, end


def day_labels(start: datetime, end: datetime) -> list[str]:
    from ingest.landing import Window
    from mobility.pipeline import hours

    return [Window.hour(h).label for h in hours(start, end)]


# ------------------------------------------------------------------------------------ figures

@dataclass
class StageFigure:
    """What one stage cost. `wall_s` is the stage's own work; `process_s` adds its process start."""

    stage: str
    available: bool = True
    wall_s: float | None = None
    process_s: float | None = None
    rows: int | None = None
    rows_per_s: float | None = None
    peak_rss_bytes: int | None = None
    peak_rss_self_bytes: int | None = None
    peak_rss_children_bytes: int | None = None
    ratio_to_floor: float | None = None
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def finish(self, rows: int, floor_s: float | None) -> "StageFigure":
        """Fill the derived figures once the day's rows and the floor are known."""
        self.rows = rows
        if self.wall_s:
            self.rows_per_s = round(rows / self.wall_s, 1)
            if floor_s:
                self.ratio_to_floor = round(self.wall_s / floor_s, 2)
        return self


def _rusage_bytes() -> tuple[int, int]:
    """Peak RSS of this process and of its largest waited-for child (Linux reports KiB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)


# ------------------------------------------------------------------------------------ stages (child side)

class _GateTimer:
    """Sums the seconds spent in the landing gate (`LandingGate.add` and `finish`) during fetch and
    land; a call is one gated batch."""

    def __init__(self) -> None:
        self.seconds, self.calls, self._lock = 0.0, 0, threading.Lock()

    def install(self) -> "_GateTimer":
        from mobility.gates.landing_gate import LandingGate

        for name in ("add", "finish"):
            inner = getattr(LandingGate, name)

            def timed(*args: Any, inner: Any = inner, batch_done: bool = name == "finish", **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return inner(*args, **kwargs)
                finally:
                    with self._lock:
                        self.seconds += time.perf_counter() - t0
                        self.calls += batch_done

            setattr(LandingGate, name, timed)
        return self


def _day_manifests(wd: Workdir, labels: list[str]) -> list[dict]:
    wanted = set(labels)
    out = []
    for path in sorted((wd.manifests / FEED).glob("*/*.json")):
        if path.name.split("__", 1)[0] in wanted:
            out.append(json.loads(path.read_text()))
    return out


def stage_fetch_land(wd: Workdir, start: datetime, end: datetime) -> dict:
    from mobility.pipeline import ingest_range

    timer = _GateTimer().install() if landing_gate_available() else None
    t0 = time.perf_counter()
    result = ingest_range(wd, start, end, feed=FEED, progress=False)
    wall = time.perf_counter() - t0
    if result["failed"]:
        raise BenchError(f"fetch and land failed: {result['failed'][:3]}")
    detail = {k: result[k] for k in ("batches", "outcomes", "rows_received", "rows_accepted", "rows_rejected")}
    if timer:
        detail["landing_gate_inline_s"] = round(timer.seconds, 3)
        detail["landing_gate_inline_calls"] = timer.calls
    return {"wall_s": wall, "rows": result["rows_accepted"], "detail": detail}


def stage_landing_gate(wd: Workdir, start: datetime, end: datetime) -> dict:
    """Re-check the day's landed batches and time only the gate calls (one at a time)."""
    from ingest.contracts import load_contract
    from ingest.payloads import parse_records
    from mobility.gates.landing_gate import run_landing_gate
    from mobility.registry import load_registry

    registry = load_registry()
    wall, rows, failed = 0.0, 0, []
    manifests = [m for m in _day_manifests(wd, day_labels(start, end)) if m["outcome"] in ("accepted", "partial")]
    for m in manifests:
        contract = load_contract(registry.partner(m["partner_id"]).feed(FEED).contract)
        window = (datetime.fromisoformat(m["window_start"]), datetime.fromisoformat(m["window_end"]))
        checked = contract.check(parse_records(contract, (wd.root / m["raw_path"]).read_bytes()), window=window)
        t0 = time.perf_counter()
        result = run_landing_gate(wd, contract, checked.accepted, window=window, partner_id=m["partner_id"],
                                  feed=FEED, batch=Path(m["raw_path"]).parent.name + "__bench",
                                  batch_id=m["batch_id"])
        wall += time.perf_counter() - t0
        rows += checked.accepted.num_rows
        if not result.success:
            failed.append(m["batch_id"])
    return {"wall_s": wall, "rows": rows, "detail": {"batches": len(manifests), "failed_batches": failed}}


def _dbt_node_span(target: Path) -> float | None:
    """Seconds from dbt's first node starting to its last finishing (run_results.json)."""
    path = target / "run_results.json"
    if not path.exists():
        return None
    stamps = [datetime.fromisoformat(t[k].replace("Z", "+00:00"))
              for r in json.loads(path.read_text()).get("results", [])
              for t in r.get("timing", []) for k in ("started_at", "completed_at") if t.get(k)]
    return (max(stamps) - min(stamps)).total_seconds() if stamps else None


def stage_dbt_build(wd: Workdir, start: datetime, end: datetime) -> dict:
    from mobility.pipeline import build_warehouse

    t0 = time.perf_counter()
    summary = build_warehouse(wd)
    wall = time.perf_counter() - t0
    span = _dbt_node_span(wd.dbt_target)
    detail = {k: summary[k] for k in ("success", "nodes", "statuses")}
    detail["dbt_elapsed_s"] = summary["elapsed_s"]
    detail["dbt_node_span_s"] = None if span is None else round(span, 3)
    # dbt's start-up, parse and artifact writing: fixed per build, whatever the data
    detail["dbt_startup_s"] = None if span is None else round(max(summary["elapsed_s"] - span, 0.0), 3)
    return {"wall_s": wall, "detail": detail}


def stage_publish_gate(wd: Workdir, start: datetime, end: datetime) -> dict:
    from mobility.pipeline import gate_marts

    t0 = time.perf_counter()
    summary = gate_marts(wd, enforce=False)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "detail": {"success": summary["success"], "expectations": summary["expectations"],
                                       "failed": summary["failed"][:5]}}


def stage_publish(wd: Workdir, start: datetime, end: datetime) -> dict:
    from mobility.pipeline import publish_marts

    t0 = time.perf_counter()
    summary = publish_marts(wd)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "detail": {"tables": summary["tables"]}}


FLOOR_SQL = """
with trips as (
    select unnest(trips) as t
    from read_json($files, columns = {trips: 'STRUCT(start_time BIGINT, start_location STRUCT(lat DOUBLE, lng DOUBLE))[]'},
                   format = 'auto', maximum_object_size = $max_size)
),
points as (
    select st_point(t.start_location.lng, t.start_location.lat) as point,
           cast(timezone($tz, to_timestamp(t.start_time / 1000.0)) as date) as trip_date
    from trips
),
neighborhoods as (
    select neighborhood_id, st_geomfromtext(geometry_wkt) as geometry from read_parquet($neighborhoods)
)
select neighborhoods.neighborhood_id, points.trip_date, count(*) as trips
from points join neighborhoods on st_contains(neighborhoods.geometry, points.point)
group by all
"""


def raw_files(wd: Workdir, labels: Iterable[str]) -> list[Path]:
    """The raw MDS trip payloads of the given hour windows, every partner."""
    return sorted(p for label in labels for p in wd.raw.glob(f"*/{FEED}/{label}/*.json"))


def stage_floor(wd: Workdir, start: datetime, end: datetime) -> dict:
    """The floor: trips per neighborhood and local day in one query on the raw JSON."""
    from mobility.spatial import connect

    files = [str(p) for p in raw_files(wd, day_labels(start, end))]
    if not files:
        raise BenchError("no raw files for the measured day: fetch and land first")
    tz = json.loads(wd.city_meta.read_text())["timezone"]
    max_size = max(os.path.getsize(f) for f in files) + 1024
    t0 = time.perf_counter()
    con = connect()  # loading the extension is a fixed cost, kept out of the floor (a lower floor is stricter)
    load_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        cells = con.execute(FLOOR_SQL, {"files": files, "max_size": max_size, "tz": tz,
                                        "neighborhoods": str(wd.neighborhoods)}).fetchall()
        wall = time.perf_counter() - t0
    finally:
        con.close()
    return {"wall_s": wall, "rows": sum(c[2] for c in cells),
            "detail": {"files": len(files), "cells": len(cells), "trips_counted": sum(c[2] for c in cells),
                       "load_spatial_s": round(load_s, 3)}}


STAGE_FUNCTIONS: dict[str, Callable[[Workdir, datetime, datetime], dict]] = {
    "fetch_land": stage_fetch_land,
    "landing_gate": stage_landing_gate,
    "dbt_build": stage_dbt_build,
    "publish_gate": stage_publish_gate,
    "publish": stage_publish,
    "floor": stage_floor,
}


def _stage_main(argv: list[str] | None = None) -> int:
    """Child entry point: run one stage, write its figures as JSON to --out."""
    parser = argparse.ArgumentParser(prog="python -m mobility.bench")
    parser.add_argument("--stage", choices=sorted(STAGE_FUNCTIONS), required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t_import = time.perf_counter()
    for module in WARM_IMPORTS[args.stage]:
        importlib.import_module(module)
    import_s = time.perf_counter() - t_import
    wd = Workdir.resolve(args.workdir)
    result = STAGE_FUNCTIONS[args.stage](wd, datetime.fromisoformat(args.start), datetime.fromisoformat(args.end))
    self_rss, children_rss = _rusage_bytes()
    result.update(import_s=import_s, peak_rss_self_bytes=self_rss, peak_rss_children_bytes=children_rss)
    Path(args.out).write_text(json.dumps(result, default=str))
    return 0


# ------------------------------------------------------------------------------------ stages (parent side)

def run_stage(stage: str, wd: Workdir, start: datetime, end: datetime, env: dict[str, str]) -> StageFigure:
    """Run one stage in a child process; its figures, or BenchError with the log's tail."""
    wd.logs.mkdir(parents=True, exist_ok=True)
    out, log_path = wd.logs / f"bench-{stage}.json", wd.logs / f"bench-{stage}.log"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "mobility.bench", "--stage", stage, "--workdir", str(wd.root),
           "--start", start.isoformat(), "--end", end.isoformat(), "--out", str(out)]
    log.info("bench stage %s", stage)
    t0 = time.perf_counter()
    with open(log_path, "wb") as fh:
        proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    process_s = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise BenchError(f"stage {stage} exited with {proc.returncode}; see {log_path}:\n{tail}")
    data = json.loads(out.read_text())
    figure = StageFigure(
        stage=stage, wall_s=round(data["wall_s"], 3), process_s=round(process_s, 3),
        peak_rss_self_bytes=data["peak_rss_self_bytes"], peak_rss_children_bytes=data["peak_rss_children_bytes"],
        peak_rss_bytes=max(data["peak_rss_self_bytes"], data["peak_rss_children_bytes"]),
        detail={**data.get("detail", {}), "import_s": round(data["import_s"], 3)},
    )
    if "rows" in data:
        figure.detail["rows_seen"] = data["rows"]
    return figure


def clear_day(wd: Workdir, labels: list[str]) -> None:
    """Remove everything landed for the measured day, so each run lands it from scratch."""
    wanted = set(labels)
    for label in labels:
        for path in wd.raw.glob(f"*/{FEED}/{label}"):
            shutil.rmtree(path)
        for path in wd.bronze.glob(f"{FEED}/partner=*/{label}.parquet"):
            path.unlink()
    for pattern in (f"{FEED}/*/*.json",):
        for path in wd.manifests.glob(pattern):
            if path.name.split("__", 1)[0] in wanted:
                path.unlink()
    for root in (wd.quarantine.glob(f"*/{FEED}/*"), (wd.gates / "landing" / FEED).glob("*/*")):
        for path in root:
            if path.name.split("__", 1)[0] in wanted:
                shutil.rmtree(path) if path.is_dir() else path.unlink()


# ------------------------------------------------------------------------------------ history (no HTTP)

_WORLD: dict[tuple[str, int, float], Any] = {}


class _PassingGate:
    """Stands in for the landing gate while landing history: land_batch reads only `.success`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add(self, table: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def finish(self) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(success=True)

    def close(self) -> None:
        pass


def _land_history_day(root: str, seed: int, scale: float, partner_id: str, start: str, end: str,
                      gate: bool) -> tuple[int, int]:
    """Land one partner's local day from the world's trips, as the simulator would serve them.

    Runs in a worker process. Without `gate`, the landing gate is replaced by a pass: history
    bytes are identical to what the measured day's gate checks, and GX's fixed cost per batch
    (most of the landing time) would otherwise dominate setting up 60 days.
    """
    from ingest.contracts import load_contract
    from ingest.landing import Window, land_batch
    from mobility.pipeline import hours
    from mobility.registry import load_registry
    from mobility.settings import REGISTRY_PATH
    from mobility.simulator.consortium import load_demo_partners
    from mobility.simulator.server import build_world, mds_hour_body

    wd = Workdir.resolve(root)
    key = (root, seed, scale)
    if key not in _WORLD:
        _WORLD[key] = build_world(wd, seed, load_demo_partners(REGISTRY_PATH), scale)
    world = _WORLD[key]
    if not gate and landing_gate_available():
        import mobility.gates.landing_gate as landing_gate

        landing_gate.LandingGate = _PassingGate  # land_batch imports it at call time
    partner = load_registry().partner(partner_id)
    feed = partner.feed(FEED)
    contract = load_contract(feed.contract)
    rows = batches = 0
    for hour in hours(datetime.fromisoformat(start), datetime.fromisoformat(end)):
        # the simulator's own serialiser, so the bytes equal what GET /trips serves for the hour
        raw = b"".join(mds_hour_body(world, partner_id, hour, "trips"))
        manifest = land_batch(wd, partner=partner, feed=feed, contract=contract, window=Window.hour(hour),
                              raw=raw, source=f"bench-history:{partner_id}:{hour:%Y-%m-%dT%H}")
        if manifest["outcome"] not in ("accepted", "partial", "empty"):
            raise BenchError(f"history batch {manifest['batch_id']} was {manifest['outcome']}: {manifest['error']}")
        rows += manifest["rows_accepted"]
        batches += 1
    return rows, batches


def land_history(wd: Workdir, days: list[date], *, seed: int, scale: float, tz_name: str,
                 gate: bool = False, workers: int = 2) -> dict:
    """Land the given local days for every MDS operator, in worker processes (both cores)."""
    import multiprocessing

    from mobility.registry import load_registry

    partners = [p.id for p, _ in load_registry().feeds(FEED)]
    jobs = [(str(wd.root), seed, scale, pid, *(t.isoformat() for t in local_day_bounds(d, tz_name)), gate)
            for d in days for pid in partners]
    t0 = time.perf_counter()
    rows = batches = 0
    if jobs:
        # spawn, not fork: the parent may hold threads (rich, httpx) that fork would copy mid-state
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for r, b in pool.map(_land_history_day, *zip(*jobs)):
                rows, batches = rows + r, batches + b
    return {"days": len(days), "rows": rows, "batches": batches, "seconds": round(time.perf_counter() - t0, 1),
            "landing_gate": "run" if gate else "skipped (history only)"}


def history_rows(wd: Workdir, before: date, tz_name: str) -> int:
    """Rows in bronze before the measured day (what a full-refresh build re-reads)."""
    import duckdb

    files = list(wd.bronze.glob(f"{FEED}/partner=*/*.parquet"))
    if not files:
        return 0
    cutoff = local_day_bounds(before, tz_name)[0]
    return duckdb.sql(
        "select count(*) from read_parquet($files) where end_time < $cutoff",
        params={"files": [str(f) for f in files], "cutoff": cutoff},
    ).fetchone()[0]


# ------------------------------------------------------------------------------------ one measured day

def measure_day(wd: Workdir, *, day: date, tz_name: str, base_url: str, with_floor: bool = True,
                console: Any = None) -> dict:
    """Run every stage on the measured day (the history must be landed already)."""
    start, end = local_day_bounds(day, tz_name)
    labels = day_labels(start, end)
    clear_day(wd, labels)
    env = {**os.environ, **wd.env(), "MOBILITY_PARTNER_BASE_URL": base_url}
    stages: dict[str, StageFigure] = {}
    gate_ok = landing_gate_available()
    for stage in ALL_STAGES:
        if stage == "landing_gate" and not gate_ok:
            stages[stage] = StageFigure(stage=stage, available=False,
                                        note="mobility.gates.landing_gate does not exist in this tree")
            continue
        if stage == "floor" and not with_floor:
            continue
        if console:
            console.log(f"  {STAGE_TITLES[stage]}")
        stages[stage] = run_stage(stage, wd, start, end, env)
        if stage == "publish_gate" and not stages[stage].detail.get("success"):
            stages[stage].note = "gate failed; published anyway (bench workdir only) so publish is measured"
            log.warning("publish gate failed on the bench workdir: %s", stages[stage].detail.get("failed"))
    rows = int(stages["fetch_land"].detail["rows_accepted"])
    floor = stages.get("floor")
    floor_s = floor.wall_s if floor else None
    for figure in stages.values():
        if figure.available:
            figure.finish(rows, floor_s)
    if "landing_gate" in stages and stages["landing_gate"].available:
        stages["landing_gate"].note = "part of fetch and land; re-run alone on the same batches"
    pipeline = [stages[s] for s in PIPELINE_STAGES]
    e2e = StageFigure(
        stage="end_to_end",
        wall_s=round(sum(f.process_s or 0 for f in pipeline), 3),
        process_s=round(sum(f.process_s or 0 for f in pipeline), 3),
        peak_rss_bytes=max(f.peak_rss_bytes or 0 for f in pipeline),
        note="fetch+land, dbt build, publish gate, publish, each in its own process, starts included",
    ).finish(rows, floor_s)
    process_start = sum((f.process_s or 0) - (f.wall_s or 0) for f in pipeline)
    dbt_startup = stages["dbt_build"].detail.get("dbt_startup_s") or 0.0
    overhead = {
        "seconds": round(process_start + dbt_startup, 3),
        "process_start_and_imports_s": round(process_start, 3),
        "dbt_startup_s": round(dbt_startup, 3),
        "what": "interpreter start and imports of each stage's process, plus dbt's elapsed time "
                "outside the span of its nodes (start-up, parse, artifacts)",
    }
    return {"day": day.isoformat(), "window": [start.isoformat(), end.isoformat()], "rows": rows,
            "stages": {k: asdict(v) for k, v in stages.items()}, "end_to_end": asdict(e2e),
            "orchestration_overhead": overhead}


# ------------------------------------------------------------------------------------ the benchmark

def snapshot_built(wd: Workdir, snapshot: Path) -> None:
    """Copy the built state (`Workdir.built`) aside before the measured day changes it."""
    shutil.rmtree(snapshot, ignore_errors=True)
    snapshot.mkdir(parents=True)
    for path in wd.built:
        if path.exists():
            shutil.copytree(path, snapshot / path.name, symlinks=True)


def restore_built(wd: Workdir, snapshot: Path) -> None:
    """Put back the state `snapshot_built` kept (none kept yet: start from nothing), so the next
    history length's build extends the history incrementally instead of starting over."""
    for path in wd.built:
        shutil.rmtree(path, ignore_errors=True)
        if (snapshot / path.name).exists():
            (snapshot / path.name).rename(path)
    shutil.rmtree(snapshot, ignore_errors=True)


def machine_info() -> dict:
    """Cores, memory and load, from the standard library and /proc (no psutil)."""
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    import duckdb

    return {
        "cpu_count": os.cpu_count(),
        "memory_bytes": mem_total,
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
    }


def _history_days(day: date, n: int) -> list[date]:
    return [day - timedelta(days=i) for i in range(n, 0, -1)]


def bench_scale(root: Path, *, trips_per_day: int, day: date, history: list[int], neighborhoods: int,
                seed: int, gate_history: bool, console: Any) -> list[dict]:
    """One workdir at one volume: city, history, then the measured day for each history length."""
    from mobility.city.generate import generate_city
    from mobility.demo import simulator_process
    from mobility.registry import load_registry

    wd = Workdir.resolve(root / f"tpd-{trips_per_day}")
    if wd.root.exists():
        shutil.rmtree(wd.root)  # a stale lake would change every figure
    wd.root.mkdir(parents=True)
    tz_name = load_registry().consortium.timezone
    scale = scale_for(trips_per_day)
    console.log(f"{trips_per_day:,} trips/day (simulator scale {scale:.3f}): city of {neighborhoods} neighborhoods")
    generate_city(wd, seed=seed, n_neighborhoods=neighborhoods)
    runs, landed = [], 0
    snapshot = wd.root / "built-before-measured-day"
    with simulator_process(wd, seed=seed, scale=scale) as base_url:
        for n in sorted(set(history)):
            console.log(f"landing history days {landed + 1}..{n} without HTTP")
            setup = land_history(wd, _history_days(day, n)[: n - landed], seed=seed, scale=scale,
                                 tz_name=tz_name, gate=gate_history)
            landed = n
            # the warehouse already holds the history, as it would after the previous day's run,
            # so the measured build processes the one new day (fct_trips is incremental)
            start, end = local_day_bounds(day, tz_name)
            clear_day(wd, day_labels(start, end))
            # a daily run never takes batches out of the lake and the incremental build does not
            # look for removed ones: the state from before the previous measured day comes back
            restore_built(wd, snapshot)
            console.log("building the warehouse on the history (untimed)")
            env = {**os.environ, **wd.env(), "MOBILITY_PARTNER_BASE_URL": base_url}
            setup["warehouse_build_s"] = run_stage("dbt_build", wd, start, end, env).process_s
            # and the publication of the history, which the measured publish builds upon
            console.log("publishing the history (untimed)")
            setup["publish_s"] = run_stage("publish", wd, start, end, env).process_s
            snapshot_built(wd, snapshot)
            console.log(f"measured day {day} with {n} day(s) of history")
            run = measure_day(wd, day=day, tz_name=tz_name, base_url=base_url, console=console)
            run.update(trips_per_day=trips_per_day, scale=scale, history_days=n,
                       history_rows=history_rows(wd, day, tz_name), history_setup=setup, workdir=str(wd.root))
            runs.append(run)
            # each finished run is kept at once: a benchmark stopped later still leaves its figures
            (wd.logs / "bench-runs.json").write_text(json.dumps(runs, indent=2, default=str))
    return runs


def evaluate_targets(runs: list[dict], growth: dict | None) -> dict:
    """Which of the issue's targets the runs meet, miss, or do not measure."""
    by_tpd = {r["trips_per_day"]: r for r in runs}
    out: dict[str, dict] = {}
    r = by_tpd.get(1_000_000)
    if r and r["stages"].get("floor"):
        floor_s, over = r["stages"]["floor"]["wall_s"], r["orchestration_overhead"]["seconds"]
        limit = TARGET_FLOOR_FACTOR * floor_s + over
        out["e2e_1m_within_5x_floor"] = {"status": "met" if r["end_to_end"]["wall_s"] <= limit else "not met",
                                         "end_to_end_s": r["end_to_end"]["wall_s"], "limit_s": round(limit, 3),
                                         "floor_s": floor_s, "overhead_s": over}
    else:
        out["e2e_1m_within_5x_floor"] = {"status": "not measured"}
    if growth and growth.get("ratio_60_to_7") is not None:
        ratio = growth["ratio_60_to_7"]
        out["incremental_flat_60_vs_7"] = {"status": "met" if ratio <= TARGET_GROWTH_RATIO else "not met",
                                           "ratio": ratio}
    else:
        out["incremental_flat_60_vs_7"] = {"status": "not measured"}
    r = by_tpd.get(10_000_000)
    if r:
        peak = max(r["end_to_end"]["peak_rss_bytes"], (r["stages"].get("landing_gate") or {}).get("peak_rss_bytes") or 0)
        out["peak_under_4gb_at_10m"] = {"status": "met" if peak < TARGET_PEAK_BYTES else "not met", "peak_bytes": peak}
    else:
        out["peak_under_4gb_at_10m"] = {"status": "not measured"}
    return out


def growth_summary(runs: list[dict]) -> dict | None:
    """Ratios of each history length's run to the shortest one's (the 7-day case by default)."""
    if len(runs) < 2:
        return None
    base = runs[0]
    rows = []
    for r in runs:
        ratios = {s: (round(f["wall_s"] / base["stages"][s]["wall_s"], 2) if f.get("wall_s") and
                      base["stages"][s].get("wall_s") else None) for s, f in r["stages"].items()}
        ratios["end_to_end"] = round(r["end_to_end"]["wall_s"] / base["end_to_end"]["wall_s"], 2)
        rows.append({"history_days": r["history_days"], "history_rows": r["history_rows"],
                     "end_to_end_s": r["end_to_end"]["wall_s"], "ratio_to_base": ratios})
    by_days = {r["history_days"]: r for r in rows}
    ratio_60_7 = None
    if 7 in by_days and 60 in by_days:
        ratio_60_7 = round(by_days[60]["end_to_end_s"] / by_days[7]["end_to_end_s"], 2)
    return {"base_history_days": base["history_days"], "runs": rows, "ratio_60_to_7": ratio_60_7}


def run_bench(
    root: Path,
    *,
    trips_per_day: int = 100_000,
    days: int = 3,
    neighborhoods: int = 80,
    day: date = date.fromisoformat(DEFAULT_DAY),
    seed: int = 7,
    growth: list[int] | None = None,
    scales: list[int] | None = None,
    gate_history: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """The whole benchmark; returns every figure (see the module docstring)."""
    from rich.console import Console

    from mobility.demo import ensure_demo_secrets
    from mobility.registry import load_registry

    console = Console(stderr=True, quiet=not progress)
    _, day_end = local_day_bounds(day, load_registry().consortium.timezone)
    if day_end > datetime.now(timezone.utc) - timedelta(minutes=10):
        raise ValueError(f"the measured day {day} must be over (and past the simulator's processing delay)")
    if growth and min(growth) < days:
        raise ValueError(f"growth history lengths {growth} must be at least --days {days}")
    ensure_demo_secrets()
    started = time.perf_counter()
    machine = machine_info()
    history = sorted({days, *(growth or [])})
    runs = bench_scale(root, trips_per_day=trips_per_day, day=day, history=history, neighborhoods=neighborhoods,
                       seed=seed, gate_history=gate_history, console=console)
    main = next(r for r in runs if r["history_days"] == days)
    growth_runs = [r for r in runs if growth and r["history_days"] in growth]
    scale_runs = [main]
    for tpd in scales or []:
        if tpd != trips_per_day:
            scale_runs += bench_scale(root, trips_per_day=tpd, day=day, history=[days], neighborhoods=neighborhoods,
                                      seed=seed, gate_history=gate_history, console=console)
    growth_out = growth_summary(growth_runs)
    machine["load_average_end"] = list(os.getloadavg())
    return {
        "command": command,
        "machine": machine,
        "config": {"trips_per_day": trips_per_day, "history_days": days, "neighborhoods": neighborhoods,
                   "day": day.isoformat(), "seed": seed, "growth": growth, "scales": scales,
                   "history_landing": "without HTTP: the world's trips as MDS payload bytes through land_batch; "
                                      + ("landing gate run" if gate_history else "landing gate skipped")},
        "main": main,
        "growth": growth_out,
        "scales": [{"trips_per_day": r["trips_per_day"], "rows": r["rows"], "history_days": r["history_days"],
                    "end_to_end": r["end_to_end"], "floor": r["stages"].get("floor"),
                    "orchestration_overhead": r["orchestration_overhead"],
                    "stages": r["stages"]} for r in sorted(scale_runs, key=lambda r: r["trips_per_day"])],
        "runs": runs if len(runs) > 1 else None,
        "targets": evaluate_targets(scale_runs, growth_out),
        "seconds": round(time.perf_counter() - started, 1),
    }


# ------------------------------------------------------------------------------------ output

def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**2:,.0f}"


def _num(x: float | None, fmt: str = "{:,.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def stage_table(run: dict, title: str) -> Any:
    """A rich table of one measured day: each stage, the floor, the whole run."""
    from rich.table import Table

    table = Table(title=title, caption_justify="left")
    for col in ("stage", "wall s", "process s", "rows/s", "peak RSS MB", "x floor"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    notes = []
    for f in [*run["stages"].values(), run["end_to_end"]]:
        name = STAGE_TITLES[f["stage"]]
        if f["note"]:
            notes.append(f"{len(notes) + 1}. {name}: {f['note']}")
            name += f" ({len(notes)})"
        if not f["available"]:
            table.add_row(name, *["n/a"] * 5)
            continue
        table.add_row(name, _num(f["wall_s"]), _num(f["process_s"]), _num(f["rows_per_s"], "{:,.0f}"),
                      _mb(f["peak_rss_bytes"]), _num(f["ratio_to_floor"]))
    table.caption = "\n".join(notes) or None
    return table


def render(result: dict) -> list[Any]:
    """Rich renderables for the console: the main day, growth, scales, targets."""
    from rich.table import Table

    main = result["main"]
    over = main["orchestration_overhead"]
    out: list[Any] = [stage_table(
        main, f"{main['rows']:,} trips on {main['day']} ({main['trips_per_day']:,}/day), "
              f"{main['history_days']} day(s) / {main['history_rows']:,} rows of history")]
    out.append(f"orchestration overhead (in the whole run): {over['seconds']:.2f} s = process starts and imports "
               f"{over['process_start_and_imports_s']:.2f} s + dbt start-up {over['dbt_startup_s']:.2f} s")
    if result["growth"]:
        t = Table(title=f"growth: the same day with more history (ratios to {result['growth']['base_history_days']} days)")
        for col in ("history days", "history rows", "whole run s", "x base", "fetch+land x", "dbt build x",
                    "publish gate x", "publish x"):
            t.add_column(col, justify="right")
        for g in result["growth"]["runs"]:
            r = g["ratio_to_base"]
            t.add_row(str(g["history_days"]), f"{g['history_rows']:,}", _num(g["end_to_end_s"]),
                      *(_num(r.get(s)) for s in ("end_to_end", *PIPELINE_STAGES)))
        out.append(t)
    if len(result["scales"]) > 1:
        t = Table(title="scales: the whole run at each volume")
        for col in ("trips/day", "day rows", "whole run s", "rows/s", "peak RSS MB", "floor s", "x floor", "overhead s"):
            t.add_column(col, justify="right")
        for s in result["scales"]:
            e = s["end_to_end"]
            t.add_row(f"{s['trips_per_day']:,}", f"{s['rows']:,}", _num(e["wall_s"]), _num(e["rows_per_s"], "{:,.0f}"),
                      _mb(e["peak_rss_bytes"]), _num((s["floor"] or {}).get("wall_s")), _num(e["ratio_to_floor"]),
                      _num(s["orchestration_overhead"]["seconds"]))
        out.append(t)
    t = Table(title="targets")
    t.add_column("target")
    t.add_column("status")
    for name, v in result["targets"].items():
        t.add_row(name, v["status"])
    out.append(t)
    return out


if __name__ == "__main__":
    sys.exit(_stage_main())
