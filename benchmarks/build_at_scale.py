"""The warehouse at a volume the partner simulator cannot serve over HTTP: one day of N trips
landed without HTTP, then a full dbt build, the publish gate and publish, each against the floor
query on the same landed files (not a test: run it by hand).

    .venv/bin/python benchmarks/build_at_scale.py --trips-per-day 10000000 [--workdir DIR] [--json out.json]

`mobility bench` fetches its measured day from the simulator over HTTP. At 10M trips a day the
simulator (one Python process) cannot answer an hour within the client's timeout on this machine,
so here the day is landed the way `mobility bench` lands history: the simulator's world
serialises each hour exactly as `GET /trips` serves it and `land_batch` lands the bytes (contract
check, pseudonymisation, bronze, manifest; the landing gate is skipped). The stages then run as in
`mobility bench` (`mobility.bench.run_stage`: each in its own process, peak RSS of the process or
of its largest child): the dbt build is a full one (the warehouse is empty, so fct_trips reads
every trip of the day), then the publish gate, publish and the floor (one hand-written DuckDB
query: trips per neighborhood and day from the raw JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("dbt_build", "publish_gate", "publish", "floor")


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from mobility import bench
    from mobility.city.generate import generate_city
    from mobility.demo import ensure_demo_secrets
    from mobility.registry import load_registry
    from mobility.settings import Workdir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trips-per-day", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "build-at-scale")
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 11, 18))
    parser.add_argument("--neighborhoods", type=int, default=80)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reuse-lake", action="store_true",
                        help="keep the city and lake a previous run landed for this volume (landing 10M "
                             "trips takes half an hour); the warehouse and publication are built anew")
    args = parser.parse_args(argv)

    console = Console()
    ensure_demo_secrets()  # the pseudonymisation key, as the bench has it
    wd = Workdir.resolve(args.workdir / f"tpd-{args.trips_per_day}")
    landed = wd.root / "landing.json"  # written last: the lake is whole only once it exists
    tz_name = load_registry().consortium.timezone
    scale = bench.scale_for(args.trips_per_day)
    machine = bench.machine_info()
    if args.reuse_lake and landed.exists() and json.loads(landed.read_text())["day"] == args.day.isoformat():
        console.log(f"reusing the lake landed in {wd.root}")
        landing = json.loads(landed.read_text())["landing"]
        for built in wd.built:
            shutil.rmtree(built, ignore_errors=True)  # the build must start from nothing, as the first did
    else:
        if wd.root.exists():
            shutil.rmtree(wd.root)  # a stale lake would change every figure
        wd.root.mkdir(parents=True)
        generate_city(wd, seed=args.seed, n_neighborhoods=args.neighborhoods)
        console.log(f"landing {args.day} at {args.trips_per_day:,} trips/day without HTTP")
        landing = bench.land_history(wd, [args.day], seed=args.seed, scale=scale, tz_name=tz_name)
        landed.write_text(json.dumps({"day": args.day.isoformat(), "landing": landing}, default=str))
    start, end = bench.local_day_bounds(args.day, tz_name)
    env = {**os.environ, **wd.env()}
    stages = {}
    for stage in STAGES:
        console.log(stage)
        stages[stage] = vars(bench.run_stage(stage, wd, start, end, env))
    floor = stages["floor"]["wall_s"]
    for fig in stages.values():
        fig["ratio_to_floor"] = round(fig["wall_s"] / floor, 2) if floor else None
    pipeline = ("dbt_build", "publish_gate", "publish")
    result = {
        "command": " ".join(["benchmarks/build_at_scale.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {**machine, "load_average_end": list(os.getloadavg())},
        "trips_per_day": args.trips_per_day, "day": args.day.isoformat(), "landing": landing,
        "stages": stages,
        "build_to_publish_wall_s": round(sum(stages[s]["wall_s"] for s in pipeline), 3),
        "peak_rss_bytes": max(stages[s]["peak_rss_bytes"] for s in pipeline),
    }
    for name, fig in stages.items():
        console.print(f"{name:13} wall {fig['wall_s']:9.2f} s  process {fig['process_s']:9.2f} s  "
                      f"peak {fig['peak_rss_bytes'] / 2**20:8,.0f} MB  x floor {fig['ratio_to_floor']}")
    console.print(f"landed {landing['rows']:,} trips in {landing['seconds']} s; build to publish "
                  f"{result['build_to_publish_wall_s']} s, peak {result['peak_rss_bytes'] / 2**20:,.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
