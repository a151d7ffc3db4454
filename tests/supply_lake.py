"""A lake of supply snapshots from the partner simulator, for the supply and compliance marts.

The simulator's clock is frozen at each sampling time and the snapshot is landed into that time's
window (`now=`), as the demo does: the same bytes the partner served then, by real HTTP.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone

from mobility.pipeline import INGEST_STEPS, ingest_file_drop_day, ingest_mds_hour
from mobility.simulator.drops import BIKESHARE_COLUMNS, bikeshare_rows, to_csv, write_atomic
from mobility.settings import Workdir

# 2026-11-03 is a Tuesday; Chicago is UTC-6 in November, so the compliance check hours
# 07:00, 12:00 and 17:00 local are 13:00, 18:00 and 23:00 UTC
DAY = datetime(2026, 11, 3, tzinfo=timezone.utc)
SNAPSHOT_TIMES = [datetime(2026, 11, 3, h, 1, tzinfo=timezone.utc) for h in (13, 15, 18, 23)]
TRIP_HOURS = [datetime(2026, 11, 3, h, tzinfo=timezone.utc) for h in (13, 14)]
STATUS_FEEDS = [("scootco", "mds_vehicle_status"), ("zoomride", "mds_vehicle_status"),
                ("scootco", "gbfs"), ("citybikes", "gbfs")]
from partner_secrets import SECRETS as TOKENS  # noqa: E402


def sample_supply(wd: Workdir, sim, times=SNAPSHOT_TIMES) -> list[dict]:
    """Land every status feed at each of `times` with the simulator's clock frozen there."""
    manifests = []
    for at in times:
        sim.sim.clock.set(at)
        for partner, feed in STATUS_FEEDS:
            manifests.append(INGEST_STEPS[feed](wd, partner, feed, at, now=at))
    sim.sim.clock.set(None)
    return manifests


def build_supply_lake(root, city_dir, sim) -> Workdir:
    shutil.copytree(city_dir.city, root / "city")
    wd = Workdir.resolve(root)
    manifests = sample_supply(wd, sim)
    for hour in TRIP_HOURS:
        for partner in ("scootco", "zoomride"):
            manifests.append(ingest_mds_hour(wd, partner, "mds_events", hour))
            manifests.append(ingest_mds_hour(wd, partner, "mds_trips", hour))
    # the bike-share operator's trip file of the day, dropped and picked up as in production
    rows = bikeshare_rows(sim.sim.world, "citybikes", DAY.date())
    write_atomic(wd.drops / "citybikes" / f"citybikes-trips-{DAY.date()}.csv", to_csv(rows, BIKESHARE_COLUMNS))
    manifests.append(ingest_file_drop_day(wd, "citybikes", "bikeshare_trips", DAY))
    bad = [m for m in manifests if m["outcome"] not in ("accepted", "empty")]
    assert not bad, bad
    return wd


def set_tokens() -> dict:
    old = {k: os.environ.get(k) for k in TOKENS}
    os.environ.update(TOKENS)
    return old


def restore(old: dict) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


