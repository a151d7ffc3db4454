"""A tiny synthetic lake in the bronze schema of docs/ARCHITECTURE.md, with known answers.

Four square neighborhoods in a 2 x 2 grid; scooter trips whose start points are placed inside
known squares at known local (America/Chicago) days. ``PLANTED`` is what the marts must report.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mobility.settings import Workdir

# (neighborhood_id, name, population, income, income_quintile, equity_zone, lon0, lat0)
SIZE = 0.05
NEIGHBORHOODS = [
    (1, "Riverside", 1000, 31000.0, 1, True, -87.70, 41.80),
    (2, "Hilltop", 2000, 92000.0, 5, False, -87.65, 41.80),
    (3, "Old Mill", 500, 38000.0, 2, True, -87.70, 41.85),
    (4, "Lakeshore", 4000, 75000.0, 4, False, -87.65, 41.85),
]
NEIGHBORHOOD_IDS = [n[0] for n in NEIGHBORHOODS]

DAY1, DAY2 = "2026-06-01", "2026-06-02"
# trips started per (neighborhood, local day); zeros are deliberate (zero-fill must show them)
PLANTED: dict[tuple[int, str], int] = {
    (1, DAY1): 12, (2, DAY1): 3, (3, DAY1): 0, (4, DAY1): 10,
    (1, DAY2): 1, (2, DAY2): 15, (3, DAY2): 9, (4, DAY2): 0,
}
# one extra trip starts outside every polygon: it is a trip, but no neighborhood counts it
OUTSIDE = (-88.5, 40.0)
CHICAGO_UTC_OFFSET = timedelta(hours=-5)  # CDT in June


def _square_wkt(lon0: float, lat0: float) -> str:
    lon1, lat1 = lon0 + SIZE, lat0 + SIZE
    return f"POLYGON(({lon0} {lat0}, {lon1} {lat0}, {lon1} {lat1}, {lon0} {lat1}, {lon0} {lat0}))"


def _centre(nid: int) -> tuple[float, float]:
    n = next(n for n in NEIGHBORHOODS if n[0] == nid)
    return n[6] + SIZE / 2, n[7] + SIZE / 2


def write_neighborhoods(wd: Workdir, rows=NEIGHBORHOODS) -> None:
    wd.city.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "neighborhood_id": pa.array([r[0] for r in rows], pa.int32()),
            "name": pa.array([r[1] for r in rows], pa.string()),
            "population": pa.array([r[2] for r in rows], pa.int64()),
            "income": pa.array([r[3] for r in rows], pa.float64()),
            "income_quintile": pa.array([r[4] for r in rows], pa.int8()),
            "equity_zone": pa.array([r[5] for r in rows], pa.bool_()),
            "area_km2": pa.array([30.0] * len(rows), pa.float64()),
            "geometry_wkt": pa.array([_square_wkt(r[6], r[7]) for r in rows], pa.string()),
        }
    )
    pq.write_table(table, wd.neighborhoods)
    wd.city_meta.write_text(json.dumps({"name": "Testville", "timezone": "America/Chicago"}))


def _trip_rows(planted: dict[tuple[int, str], int]) -> list[dict]:
    """Trips placed at local 22:30 (late evening: the UTC date is already the next day)."""
    rows = []
    for (nid, day), count in sorted(planted.items()):
        lon, lat = _centre(nid)
        local = datetime.fromisoformat(f"{day}T22:30:00")
        start = (local - CHICAGO_UTC_OFFSET).replace(tzinfo=timezone.utc)
        for i in range(count):
            rows.append(
                dict(start=start + timedelta(seconds=i), lon=lon + i * 1e-5, lat=lat, end_nid=(nid % 4) + 1)
            )
    rows.append(
        dict(start=datetime(2026, 6, 1, 18, tzinfo=timezone.utc), lon=OUTSIDE[0], lat=OUTSIDE[1], end_nid=1)
    )
    return rows


def write_trips(wd: Workdir, planted: dict[tuple[int, str], int] = PLANTED) -> int:
    """Write bronze batches split across two partners and several hourly windows; returns rows."""
    rows = _trip_rows(planted)
    for partner, part in (("acme", rows[0::2]), ("zoom", rows[1::2])):
        by_window: dict[str, list[dict]] = {}
        for r in part:
            end = r["start"] + timedelta(minutes=10)
            by_window.setdefault(end.strftime("%Y-%m-%dT%H"), []).append(r)
        for window, batch in by_window.items():
            _write_batch(wd, partner, window, batch)
    return len(rows)


def _write_batch(wd: Workdir, partner: str, window: str, batch: list[dict]) -> None:
    batch_id = f"{partner}-mds_trips-{window}"
    n = len(batch)
    ends = [r["start"] + timedelta(minutes=10) for r in batch]
    end_pts = [_centre(r["end_nid"]) for r in batch]
    table = pa.table(
        {
            "partner_id": pa.array([partner] * n, pa.string()),
            "batch_id": pa.array([batch_id] * n, pa.string()),
            "provider_id": pa.array([f"prov-{partner}"] * n, pa.string()),
            "device_id": pa.array([f"dev-{i % 3}" for i in range(n)], pa.string()),
            "trip_id": pa.array([f"{window}-{i}" for i in range(n)], pa.string()),
            "vehicle_type": pa.array(["scooter_standing"] * n, pa.string()),
            "start_time": pa.array([r["start"] for r in batch], pa.timestamp("ms", tz="UTC")),
            "end_time": pa.array(ends, pa.timestamp("ms", tz="UTC")),
            "duration": pa.array([600] * n, pa.int64()),
            "distance": pa.array([1500.0] * n, pa.float64()),
            "start_lat": pa.array([r["lat"] for r in batch], pa.float64()),
            "start_lon": pa.array([r["lon"] for r in batch], pa.float64()),
            "end_lat": pa.array([p[1] for p in end_pts], pa.float64()),
            "end_lon": pa.array([p[0] for p in end_pts], pa.float64()),
        }
    )
    folder = wd.bronze / "mds_trips" / f"partner={partner}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"{window}.parquet")
    manifest_dir = wd.manifests / "mds_trips" / partner
    manifest_dir.mkdir(parents=True, exist_ok=True)
    window_start = datetime.strptime(window, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
    record = {
        "batch_id": batch_id, "partner_id": partner, "feed": "mds_trips",
        "window_start": window_start.isoformat(), "window_end": (window_start + timedelta(hours=1)).isoformat(),
        "contract": "mds_trips", "contract_version": "2.0.0",
        "raw_path": f"raw/{partner}/mds_trips/{window}/x.json", "raw_sha256": "0" * 64,
        "rows_received": n, "rows_accepted": n, "rows_rejected": 0, "outcome": "accepted",
        "error": None, "started_at": window_start.isoformat(), "finished_at": window_start.isoformat(),
    }
    (manifest_dir / f"{window}.json").write_text(json.dumps(record))


def write_lake(root: Path, planted: dict[tuple[int, str], int] = PLANTED) -> Workdir:
    """Write neighborhoods, bronze trips and manifests under ``root``; return its Workdir."""
    wd = Workdir.resolve(root)
    write_neighborhoods(wd)
    write_trips(wd, planted)
    return wd


# ---------------------------------------------------------------------------- pytest fixtures

import pytest  # noqa: E402  (fixtures below; the writers above are plain functions)


_BUILT: dict[str, Workdir] = {}


@pytest.fixture(scope="session")
def built_lake(tmp_path_factory) -> Workdir:
    """The synthetic lake, built once per session with `dbt build` (models and tests).

    Test modules import this fixture, which makes one fixture definition per module; the cache
    keeps it to a single dbt build per session anyway. Tests must not modify it.
    """
    from mobility.warehouse.build import run_dbt

    if "lake" not in _BUILT:
        wd = write_lake(tmp_path_factory.mktemp("lake"))
        run_dbt(wd, args=("build",))
        _BUILT["lake"] = wd
    return _BUILT["lake"]


# ---------------------------------------------------------------------------- in-memory marts

# small hand-made marts for suppression tests, without a lake or a dbt build:
# (neighborhood_id, population, equity_zone)
MART_NEIGHBORHOODS = [(1, 1000, True), (2, 1000, True), (3, 1000, True), (4, 1000, True),
                      (5, 2000, False), (6, 2000, False), (7, 2000, False), (8, 2000, False)]


def mart_connection(cells: dict[tuple[int, str, str], int], neighborhoods=MART_NEIGHBORHOODS):
    """An in-memory DuckDB holding the two marts, shaped as the dbt models build them.

    ``cells`` maps (neighborhood_id, day, mode) -> trips started; every neighborhood gets a row
    for every day and mode that appears in ``cells`` (missing ones are 0), as in the real mart.
    """
    import duckdb

    days = sorted({d for _, d, _ in cells})
    modes = sorted({m for _, _, m in cells})
    rows = [
        (nid, day, mode, cells.get((nid, day, mode), 0), pop, eq)
        for nid, pop, eq in neighborhoods for day in days for mode in modes
    ]
    con = duckdb.connect()
    con.execute(
        "create table cells (neighborhood_id integer, trip_date date, mode varchar, trips_started bigint, "
        "population bigint, equity_zone boolean)"
    )
    con.executemany("insert into cells values (?, ?, ?, ?, ?, ?)", rows)
    con.execute(
        """create table mart_trips_per_neighborhood_day as
        select neighborhood_id, 'N' || neighborhood_id as neighborhood_name, trip_date, mode, trips_started,
            population, round(trips_started * 1000.0 / nullif(population, 0), 4) as trips_per_1000_residents,
            1 as income_quintile, equity_zone
        from cells"""
    )
    con.execute(
        """create table mart_equity_trips_daily as
        with z as (
            select trip_date, mode,
                cast(sum(trips_started) filter (where equity_zone) as bigint) as equity_zone_trips_started,
                cast(sum(population) filter (where equity_zone) as bigint) as equity_zone_population,
                cast(sum(trips_started) filter (where not equity_zone) as bigint) as other_trips_started,
                cast(sum(population) filter (where not equity_zone) as bigint) as other_population
            from cells group by trip_date, mode
        ), r as (
            select *, equity_zone_trips_started * 1000.0 / nullif(equity_zone_population, 0) as eq_rate,
                other_trips_started * 1000.0 / nullif(other_population, 0) as other_rate
            from z
        )
        select trip_date, mode, equity_zone_trips_started, equity_zone_population,
            round(eq_rate, 4) as equity_zone_trips_per_1000_residents, other_trips_started, other_population,
            round(other_rate, 4) as other_trips_per_1000_residents,
            round(eq_rate / nullif(other_rate, 0), 4) as equity_ratio
        from r"""
    )
    # the finer marts the day mart totals, shaped as dbt builds them: every trip of a cell starts
    # and ends at local noon and returns to its own neighborhood, so they add up to the day cells
    con.execute(
        """create table mart_trips_per_neighborhood_mode_hour as
        select neighborhood_id, 'N' || neighborhood_id as neighborhood_name, trip_date,
            cast(h as tinyint) as local_hour, mode,
            case when h = 12 then trips_started else 0 end as trips_started,
            case when h = 12 then trips_started else 0 end as trips_ended, population,
            round(case when h = 12 then trips_started else 0 end * 1000.0 / nullif(population, 0), 4)
                as trips_started_per_1000_residents,
            round(case when h = 12 then trips_started else 0 end * 1000.0 / nullif(population, 0), 4)
                as trips_ended_per_1000_residents,
            1 as income_quintile, equity_zone
        from cells, range(0, 24) as t(h)"""
    )
    con.execute(
        """create table mart_od_flows as
        select neighborhood_id as origin_neighborhood_id, 'N' || neighborhood_id as origin_neighborhood_name,
            neighborhood_id as destination_neighborhood_id, 'N' || neighborhood_id as destination_neighborhood_name,
            trip_date, mode, trips_started as trips
        from cells where trips_started > 0"""
    )
    con.execute(
        """create table mart_feed_health (partner_id varchar, feed varchar, local_date date, batches bigint,
            batches_received bigint, batches_accepted bigint, batches_partial bigint, batches_rejected bigint,
            fetch_errors bigint, windows_without_data bigint, rows_received bigint, rows_accepted bigint,
            rows_quarantined bigint, sla_hours double, max_hours_after_close double, batches_late bigint)"""
    )
    con.execute("drop table cells")
    return con


def expected_suppression(
    cells: dict[tuple[int, str, str], int], equity: dict[int, bool], k: int
) -> tuple[set[tuple[int, str, str]], set[tuple[str, str, bool]]]:
    """The rule, written independently of the SQL: (hidden cells, hidden totals (day, mode, equity_zone)).

    Per group (day, mode, equity_zone): cells in 1..k-1 are hidden; while fewer than two cells are
    hidden or they add up to less than k, the smallest positive visible cell (ties: lowest
    neighborhood id) is hidden too; a group left short with no such cell hides its total.
    """
    groups: dict[tuple[str, str, bool], list[tuple[int, int]]] = {}
    for (nid, day, mode), n in cells.items():
        groups.setdefault((day, mode, equity[nid]), []).append((n, nid))
    hidden_cells: set[tuple[int, str, str]] = set()
    hidden_totals: set[tuple[str, str, bool]] = set()
    for (day, mode, zone), members in groups.items():
        hidden = [(n, nid) for n, nid in members if 1 <= n < k]
        candidates = sorted((n, nid) for n, nid in members if n >= k and n > 0)

        def short() -> bool:
            return bool(hidden) and (len(hidden) < 2 or sum(n for n, _ in hidden) < k)

        while short() and candidates:
            hidden.append(candidates.pop(0))
        if short():
            hidden_totals.add((day, mode, zone))
        hidden_cells |= {(nid, day, mode) for _, nid in hidden}
    return hidden_cells, hidden_totals
