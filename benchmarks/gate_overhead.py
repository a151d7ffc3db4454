"""How much the landing gate adds to landing one big batch (not a test: run it by hand).

Builds a synthetic 1M-row MDS trips batch (realistic ids, times, points and speeds), then lands
it without and with the landing gate in one warm process, and reports both times, their ratio
(target: the gate within 25% of the batch's landing time) and the peak memory.

    .venv/bin/python benchmarks/gate_overhead.py [--rows 1000000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.contracts import load_contract  # noqa: E402
from ingest.landing import Window, land_batch  # noqa: E402
from mobility.gates import landing_gate  # noqa: E402
from mobility.gates._gx import ExpectationOutcome, GateResult  # noqa: E402
from mobility.registry import load_registry  # noqa: E402
from mobility.settings import Workdir  # noqa: E402

HOUR = Window.hour(datetime(2026, 11, 2, 17, tzinfo=timezone.utc))
BBOX = [-87.94, 41.64, -87.52, 42.02]


def payload(rows: int, provider_id: str, seed: int = 7) -> bytes:
    """One hour of trips as an operator would serve them (MDS 2.0 JSON)."""
    rng = np.random.default_rng(seed)
    t0 = int(HOUR.start.timestamp() * 1000)
    end = t0 + rng.integers(0, 3_600_000, rows)
    distance = rng.integers(200, 6000, rows)
    duration = np.clip(distance / (rng.uniform(8, 20, rows) / 3.6) + rng.integers(20, 90, rows), 60, 3540).astype(int)
    lat = rng.uniform(41.70, 41.98, (rows, 2))
    lon = rng.uniform(-87.85, -87.55, (rows, 2))
    uuids = [str(uuid.UUID(int=int(i))) for i in rng.integers(1, 2**62, 2 * rows)]  # device, trip
    trips = [
        {
            "provider_id": provider_id,
            "device_id": uuids[i],
            "trip_id": uuids[rows + i],
            "vehicle_type": "scooter",
            "propulsion_types": ["electric"],
            "trip_type": ["rider"],
            "start_time": int(end[i] - duration[i] * 1000),
            "end_time": int(end[i]),
            "start_location": {"lat": float(lat[i, 0]), "lng": float(lon[i, 0])},
            "end_location": {"lat": float(lat[i, 1]), "lng": float(lon[i, 1])},
            "duration": int(duration[i]),
            "distance": int(distance[i]),
        }
        for i in range(rows)
    ]
    return json.dumps({"version": "2.0.0", "trips": trips}).encode()


def land(wd: Workdir, raw: bytes) -> tuple[float, dict]:
    partner = load_registry().partner("scootco")
    start = time.perf_counter()
    manifest = land_batch(wd, partner=partner, feed=partner.feed("mds_trips"), contract=load_contract("mds_trips@2.0.0"),
                          window=HOUR, raw=raw, source="benchmark")
    return time.perf_counter() - start, manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("MOBILITY_PSEUDONYM_KEY", "benchmark-key")
    wd = Workdir.resolve(tempfile.mkdtemp(prefix="gate-bench-"))
    wd.city.mkdir(parents=True)
    wd.city_meta.write_text(json.dumps({"name": "Bench", "timezone": "America/Chicago", "bbox": BBOX}))

    t = time.perf_counter()
    raw = payload(args.rows, load_registry().partner("scootco").mds_provider_id)
    print(f"payload: {args.rows:,} trips, {len(raw) / 1e6:,.0f} MB JSON, built in {time.perf_counter() - t:.1f} s")

    # warm-up: GX import, suite build, first context (a long-running worker pays these once)
    land(wd, payload(1000, load_registry().partner("scootco").mds_provider_id, seed=1))

    class NoGate:  # a passing stand-in, so landing does everything else
        def __init__(self, *_a, **_kw) -> None:
            pass

        def add(self, _table) -> None:
            pass

        def finish(self) -> GateResult:
            return GateResult(gate="landing", run_at="", outcomes=[ExpectationOutcome("-", "none", None, True)])

    without, with_gate, gate_only = [], [], []
    for _ in range(args.repeat):
        with mock.patch.object(landing_gate, "LandingGate", NoGate):
            seconds, m = land(wd, raw)
        without.append(seconds)
        assert m["outcome"] == "accepted", m
        seconds, m = land(wd, raw)
        with_gate.append(seconds)
        assert m["outcome"] == "accepted", m["error"]
        gate_only.append(with_gate[-1] - without[-1])

    # the gate alone, on the typed table (what it adds, measured directly)
    contract = load_contract("mds_trips@2.0.0")
    table = contract.check(json.loads(raw)["trips"], window=(HOUR.start, HOUR.end)).accepted
    t = time.perf_counter()
    result = landing_gate.run_landing_gate(wd, contract, table, window=(HOUR.start, HOUR.end), partner_id="scootco",
                                           feed="mds_trips", batch="bench")
    direct = time.perf_counter() - t
    assert result.success, result.message()

    base, gated = min(without), min(with_gate)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"landing without gate: {base:.1f} s")
    print(f"landing with gate:    {gated:.1f} s")
    print(f"gate overhead:        {gated - base:.1f} s = {(gated - base) / base:.1%} of landing (target <= 25%)")
    print(f"gate alone (direct):  {direct:.1f} s on {table.num_rows:,} typed rows, {len(result.outcomes)} expectations"
          f" = {direct / base:.1%} of landing without the gate (less sensitive to a busy machine)")
    print(f"peak memory (maxrss): {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
