"""`mobility demo`: the whole consortium on a laptop, on embedded defaults.

It generates the city, starts the partner simulator as a child process, pulls every hour of the
simulated period from each scooter operator under contract (MDS trips and events) and the
transit agency's GTFS feed once (it is daily and changes rarely), has the bike-share and
ride-hail partners drop their daily trip files and picks them up, replays the vehicle and station
status snapshots at sampled times of the period, builds the warehouse with dbt, gates
the marts with Great Expectations, publishes the read-only analyst warehouse, and stops the
simulator again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Iterator
from zoneinfo import ZoneInfo

import httpx

from mobility.registry import load_registry
from mobility.secrets import PSEUDONYM_KEY
from mobility.settings import PROJECT_ROOT, Workdir

log = logging.getLogger(__name__)

# Status feeds are snapshots of the present: the demo replays the period by freezing the
# simulator's clock at each sampling time and snapshotting then (Airflow polls every 5 minutes).
DEMO_SNAPSHOT_FEEDS = ("mds_vehicle_status", "gbfs")
SNAPSHOT_EVERY_HOURS = 3  # plus the compliance check hours (partners.yaml), at minute 1

EXAMPLE_QUERY = """
select trip_date,
       mode,
       round(equity_zone_trips_per_1000_residents, 2) as equity_zones,
       round(other_trips_per_1000_residents, 2)       as rest_of_city,
       round(equity_ratio, 2)                         as ratio
from mart_equity_trips_daily
order by trip_date, mode
""".strip()


def ensure_demo_secrets() -> list[str]:
    """Give every credential the demo needs a random value, unless the environment has one.

    The simulator checks the same variables, so partner and city agree on the tokens without
    any secret being written to disk or passed on a command line.
    """
    made = []
    names = {f.credential for _, f in load_registry().feeds() if f.credential} | {PSEUDONYM_KEY}
    for name in sorted(names):
        if not os.environ.get(name):
            os.environ[name] = secrets.token_urlsafe(32)
            made.append(name)
    if PSEUDONYM_KEY in made:
        log.warning("%s was not set: using a throw-away key for this demo run", PSEUDONYM_KEY)
    return made


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot_times(start: datetime, end: datetime, tz, check_hours: list[int]) -> list[datetime]:
    """Local sampling times in [start, end): every SNAPSHOT_EVERY_HOURS hours and each check hour."""
    from datetime import timedelta

    hours = set(range(0, 24, SNAPSHOT_EVERY_HOURS)) | set(check_hours)
    t, out = start.replace(minute=0, second=0, microsecond=0), []
    while t < end:
        if t.astimezone(tz).hour in hours:
            out.append(t + timedelta(minutes=1))
        t += timedelta(hours=1)
    return out


def sample_snapshots(wd: Workdir, base_url: str, times: list[datetime], feeds=DEMO_SNAPSHOT_FEEDS) -> dict:
    """Land every status feed of the registry at each of `times`, the simulator's clock frozen there."""
    from concurrent.futures import ThreadPoolExecutor

    from mobility.pipeline import INGEST_STEPS

    registry = load_registry()
    pairs = [(p.id, f.feed) for kind in feeds for p, f in registry.feeds(kind)]
    outcomes: dict[str, int] = {}
    failed: list[str] = []
    rows = dict.fromkeys(("rows_received", "rows_accepted", "rows_rejected"), 0)
    try:
        with ThreadPoolExecutor(len(pairs) or 1) as pool:
            for at in times:
                httpx.put(f"{base_url}/_sim/clock", json={"now": at.isoformat()}, timeout=10).raise_for_status()
                jobs = [pool.submit(INGEST_STEPS[feed], wd, pid, feed, at, registry=registry, now=at)
                        for pid, feed in pairs]
                for (pid, feed), job in zip(pairs, jobs):
                    try:
                        manifest = job.result()
                        outcome = manifest["outcome"]
                        for k in rows:
                            rows[k] += manifest.get(k) or 0
                    except Exception as exc:  # noqa: BLE001 - reported with the rest, never swallowed
                        outcome = "error"
                        failed.append(f"{pid} {feed} {at:%Y-%m-%dT%H:%M}: {exc}")
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    finally:
        httpx.put(f"{base_url}/_sim/clock", json={"now": None}, timeout=10)
    return {"feed": ", ".join(feeds), "partners": sorted({pid for pid, _ in pairs}), "snapshots": len(times),
            "batches": sum(outcomes.values()), "outcomes": outcomes, **rows, "failed": failed}


@contextmanager
def simulator_process(wd: Workdir, *, seed: int, scale: float, port: int | None = None) -> Iterator[str]:
    """Run `mobility partners serve` as a child process; yield its base URL; always stop it."""
    port = port or _free_port()
    wd.logs.mkdir(parents=True, exist_ok=True)
    log_file = open(wd.logs / "simulator.log", "ab")
    cmd = [sys.executable, "-m", "mobility.cli", "partners", "serve", "--workdir", str(wd.root),
           "--port", str(port), "--seed", str(seed), "--scale", str(scale)]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=os.environ.copy())
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the partner simulator exited with {proc.returncode}; see {wd.logs / 'simulator.log'}")
            try:
                if httpx.get(f"{base_url}/_sim/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the partner simulator did not start within 60 s; see {wd.logs / 'simulator.log'}")
            time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()


# (feed, pulled for the first window only) in the order the demo ingests them
DEMO_FEEDS: tuple[tuple[str, bool], ...] = (
    ("mds_trips", False),
    ("mds_events", False),
    ("bikeshare_trips", False),
    ("ridehail_trips", False),
    ("gtfs_schedule", True),
)
FILE_DROP_FEEDS = {"bikeshare_trips", "ridehail_trips"}  # the simulator writes their daily files first


def _merge_ingests(ingests: dict[str, dict]) -> dict:
    """One ingest summary over several feeds (the per-feed summaries are kept under `feeds`)."""
    outcomes: dict[str, int] = {}
    for summary in ingests.values():
        for outcome, n in summary["outcomes"].items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
    return {
        "feed": ", ".join(ingests),
        "partners": sorted({p for s in ingests.values() for p in s["partners"]}),
        "batches": sum(s["batches"] for s in ingests.values()),
        "outcomes": outcomes,
        **{k: sum(s[k] for s in ingests.values()) for k in ("rows_received", "rows_accepted", "rows_rejected")},
        "failed": [f for s in ingests.values() for f in s["failed"]],
        "feeds": ingests,
    }


def run_demo(
    wd: Workdir,
    *,
    start: datetime,
    end: datetime,
    seed: int = 7,
    n_neighborhoods: int = 80,
    scale: float = 1.0,
    progress: bool = True,
) -> dict:
    from mobility.city.generate import generate_city
    from mobility.pipeline import build_and_publish, ingest_range, windows
    from mobility.simulator.drops import drop_files

    from rich.console import Console

    console = Console(stderr=True, quiet=not progress)
    t0 = time.monotonic()
    ensure_demo_secrets()
    console.log(f"generating the city ({n_neighborhoods} neighborhoods, seed {seed})")
    city = generate_city(wd, seed=seed, n_neighborhoods=n_neighborhoods)
    console.log("starting the partner simulator")
    with simulator_process(wd, seed=seed, scale=scale) as base_url:
        os.environ["MOBILITY_PARTNER_BASE_URL"] = base_url
        ingests = {}
        for feed, first_window_only in DEMO_FEEDS:
            if feed in FILE_DROP_FEEDS:
                console.log(f"partners drop their daily {feed} files; picking them up")
                for window in windows(start, end, "daily"):
                    drop_files(wd, window.start.date(), seed=seed, scale=scale)
            else:
                console.log(f"pulling {feed} from {base_url}")
            # a daily feed that changes rarely (GTFS) is pulled once, for the first day
            feed_end = min(end, start + timedelta(seconds=1)) if first_window_only else end
            ingests[feed] = ingest_range(wd, start, feed_end, feed=feed, progress=progress)
        registry = load_registry()
        tz = ZoneInfo(registry.consortium.timezone)
        times = snapshot_times(start, end, tz, registry.consortium.compliance.local_hours)
        console.log(f"snapshotting {', '.join(DEMO_SNAPSHOT_FEEDS)} at {len(times)} times of the period")
        with console.status("sampling vehicle and station status"):
            ingests["status_snapshots"] = sample_snapshots(wd, base_url, times)
    ingest = _merge_ingests(ingests)
    console.log("dbt build, publish gate, publish")
    with console.status("building the warehouse"):
        build = build_and_publish(wd)
    answer = None
    if build["ok"]:
        import duckdb

        with duckdb.connect(str(wd.published_db), read_only=True) as con:
            rel = con.sql(EXAMPLE_QUERY)
            answer = {"columns": rel.columns, "rows": rel.fetchall()}
    return {
        "ok": build["ok"] and not ingest["failed"],
        "workdir": str(wd.root),
        "period": [start.isoformat(), end.isoformat()],
        "city": city,
        "ingest": ingest,
        "build": build,
        "published": str(wd.published_db),
        "example_query": EXAMPLE_QUERY,
        "example_answer": answer,
        "seconds": round(time.monotonic() - t0, 1),
    }
