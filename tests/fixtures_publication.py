"""A real publication for the privacy tests: partner simulator -> landing -> dbt -> gate -> publish.

Built once per test process (the privacy scan and export tests share it): a small generated city,
both MDS scooter operators for a few hours at small scale, so most neighborhood cells are small
and suppression has work to do.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mobility.settings import Workdir

SEED, NEIGHBORHOODS, SCALE = 5, 60, 0.3
START = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
END = START + timedelta(hours=6)
MDS_OPERATORS = ("scootco", "zoomride")
from partner_secrets import SECRETS as TOKENS  # noqa: E402

_built: dict[str, Workdir] = {}


def simulate_and_publish(wd: Workdir, start: datetime, end: datetime, *, seed: int, scale: float) -> dict:
    """Pull MDS trips for [start, end) from the simulator serving wd's city, then build, gate, publish."""
    from mobility.pipeline import build_and_publish, ingest_range
    from mobility.simulator.server import running_simulator

    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**TOKENS, **wd.env()}.items():
            mp.setenv(name, value)
        with running_simulator(wd, seed=seed, scale=scale, timeout_s=3) as url:
            mp.setenv("MOBILITY_PARTNER_BASE_URL", url)
            ingest = ingest_range(wd, start, end, feed="mds_trips", progress=False)
        assert not ingest["failed"], ingest["failed"]
        assert ingest["rows_accepted"] > 0, ingest
        result = build_and_publish(wd)
    assert result["ok"], result
    return {"ingest": ingest, **result}


def publication(tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    """The shared publication's workdir (built on first use)."""
    if "wd" not in _built:
        from mobility.city.generate import generate_city

        wd = Workdir.resolve(tmp_path_factory.mktemp("publication"))
        generate_city(wd, seed=SEED, n_neighborhoods=NEIGHBORHOODS)
        simulate_and_publish(wd, START, END, seed=SEED, scale=SCALE)
        _built["wd"] = wd
    return _built["wd"]
