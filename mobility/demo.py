"""`mobility demo`: the whole consortium on a laptop, on embedded defaults.

It generates the city, starts the partner simulator as a child process, pulls every hour of the
simulated period from each scooter operator under contract, has the bike-share and ride-hail
partners drop their daily trip files and picks them up, builds the warehouse with dbt, gates
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
from datetime import datetime
from typing import Iterator

import httpx

from mobility.registry import load_registry
from mobility.secrets import PSEUDONYM_KEY
from mobility.settings import PROJECT_ROOT, Workdir

log = logging.getLogger(__name__)

# feeds the demo lands, in order; file-drop feeds get the simulator's daily files first
DEMO_FEEDS = ("mds_trips", "bikeshare_trips", "ridehail_trips")
FILE_DROP_FEEDS = {"bikeshare_trips", "ridehail_trips"}

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
        feeds = {}
        for feed in DEMO_FEEDS:
            if feed in FILE_DROP_FEEDS:
                console.log(f"partners drop their daily {feed} files; picking them up")
                for window in windows(start, end, "daily"):
                    drop_files(wd, window.start.date(), seed=seed, scale=scale)
            else:
                console.log(f"pulling {feed} hour by hour from {base_url}")
            feeds[feed] = ingest_range(wd, start, end, feed=feed, progress=progress)
        ingest = feeds["mds_trips"]
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
        "ok": build["ok"] and not any(f["failed"] for f in feeds.values()),
        "workdir": str(wd.root),
        "period": [start.isoformat(), end.isoformat()],
        "city": city,
        "ingest": ingest,
        "feeds": feeds,
        "build": build,
        "published": str(wd.published_db),
        "example_query": EXAMPLE_QUERY,
        "example_answer": answer,
        "seconds": round(time.monotonic() - t0, 1),
    }
