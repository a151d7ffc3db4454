"""The same build on a real city: Chicago's 77 community areas, per-capita income from the city's
socioeconomic table, simulated partners on that city, the whole warehouse and publication.

Equity rule (mobility.city.io.income_classes): income quintiles of the 77 areas by per-capita
income (unweighted, ties by area number); equity zones are the lowest-income quarter of the areas
(20 of 77), which always includes the poorest quintile.
"""

from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from fixtures_publication import MDS_OPERATORS, TOKENS, simulate_and_publish
from mobility import spatial
from mobility.settings import REGISTRY_PATH, Workdir

pytestmark = pytest.mark.slow

SEED, SCALE = 11, 0.3
START = datetime(2026, 11, 3, 12, tzinfo=timezone.utc)
END = START + timedelta(hours=8)
AREAS = 77
CENSUS = Path("geo") / "chicago-community-areas" / "ChicagoCensusData.csv"

# (place, lon, lat, community area number, name in the GeoJSON)
LANDMARKS = [
    ("the Loop", -87.6278, 41.8819, 32, "LOOP"),
    ("O'Hare airport", -87.9048, 41.9786, 76, "OHARE"),
    ("Hyde Park", -87.5907, 41.7943, 41, "HYDE PARK"),
    ("Wrigley Field", -87.6553, 41.9484, 6, "LAKE VIEW"),
    ("Midway airport", -87.7522, 41.7868, 56, "GARFIELD RIDGE"),
    ("Altgeld Gardens", -87.6009, 41.6548, 54, "RIVERDALE"),
]


@pytest.fixture(scope="module")
def chicago(tmp_path_factory, shared_data: Path) -> Workdir:
    from mobility.city.load import load_chicago

    if not (shared_data / CENSUS).is_file():
        pytest.skip(f"shared data folder lacks {shared_data / CENSUS}: Chicago build not run")
    wd = Workdir.resolve(tmp_path_factory.mktemp("chicago-build"))
    load_chicago(wd, shared_data)
    simulate_and_publish(wd, START, END, seed=SEED, scale=SCALE)
    return wd


def _warehouse(wd: Workdir, sql: str, params=()) -> list[tuple]:
    with spatial.connect(wd.warehouse, read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def _census(shared_data: Path) -> dict[int, float]:
    with (shared_data / CENSUS).open(newline="") as fh:
        return {int(r["COMMUNITY_AREA_NUMBER"]): float(r["PER_CAPITA_INCOME"]) for r in csv.DictReader(fh)}


def test_marts_cover_all_77_community_areas(chicago: Workdir) -> None:
    days, modes = _warehouse(chicago, "select count(distinct trip_date), count(distinct mode) "
                                      "from mart_trips_per_neighborhood_day")[0]
    rows = _warehouse(chicago, "select neighborhood_id, count(*) from mart_trips_per_neighborhood_day group by 1")
    assert sorted(n for n, _ in rows) == list(range(1, AREAS + 1))
    assert {c for _, c in rows} == {days * modes}  # every area on every day and mode, zero or not
    with duckdb.connect(str(chicago.published_db), read_only=True) as con:
        published = con.execute("select count(distinct neighborhood_id) from mart_trips_per_neighborhood_day").fetchone()
        populations = con.execute("select distinct equity_zone_population + other_population from mart_equity_trips_daily").fetchall()
    assert published == (AREAS,)
    city_population = _warehouse(chicago, "select sum(population) from stg_city__neighborhoods")[0][0]
    assert populations == [(city_population,)] and 2_500_000 < city_population < 3_000_000


def test_income_quintiles_and_equity_zones_follow_the_census(chicago: Workdir, shared_data: Path) -> None:
    income = _census(shared_data)
    ranked = sorted(income, key=lambda a: (income[a], a))
    rows = dict((n, (q, e)) for n, q, e in _warehouse(
        chicago, "select neighborhood_id, income_quintile, equity_zone from stg_city__neighborhoods"))
    assert {a: rows[a][0] for a in ranked} == {a: i * 5 // AREAS + 1 for i, a in enumerate(ranked)}
    n_equity = math.ceil(0.25 * AREAS)
    assert {a for a, (_, e) in rows.items() if e} == set(ranked[:n_equity])
    assert rows[54] == (1, True)  # Riverdale: the lowest per-capita income of the city
    assert rows[8][0] == 5 and not rows[8][1]  # Near North Side


@pytest.mark.parametrize(("place", "lon", "lat", "area", "name"), LANDMARKS, ids=[p[0] for p in LANDMARKS])
def test_known_points_land_in_the_right_area(chicago: Workdir, place, lon, lat, area, name) -> None:
    """The predicate the build assigns trips with, on the polygons the build loaded."""
    hits = _warehouse(
        chicago,
        "select neighborhood_id, neighborhood_name from stg_city__neighborhoods where st_contains(geometry, st_point(?, ?))",
        [lon, lat],
    )
    assert hits == [(area, name)], place


def test_every_simulated_trip_lands_in_the_area_it_started_in(chicago: Workdir) -> None:
    """Each trip's start area in fct_trips equals the simulator's own record of where it began."""
    from ingest.landing import pseudonymise
    from mobility.simulator.consortium import load_demo_partners
    from mobility.simulator.server import build_world

    world = build_world(chicago, SEED, load_demo_partners(REGISTRY_PATH), scale=SCALE)
    key = TOKENS["MOBILITY_PSEUDONYM_KEY"].encode()
    tz = ZoneInfo("America/Chicago")
    total = 0
    for operator in MDS_OPERATORS:
        truth = world.trip_truth(operator, START, END)
        ids = pseudonymise(truth.column("trip_id").combine_chunks(), key).to_pylist()
        expected = {
            t: (n, s.astimezone(tz).date())
            for t, n, s in zip(ids, truth.column("start_neighborhood_id").to_pylist(),
                               truth.column("start_time").to_pylist())
        }
        built = {t: (n, d) for t, n, d in _warehouse(
            chicago, "select trip_id, start_neighborhood_id, start_local_date from fct_trips where partner_id = ?",
            [operator])}
        assert built == expected, operator
        total += len(built)
    assert total > 300
    # trips start across the city, not in a corner of it
    assert _warehouse(chicago, "select count(distinct start_neighborhood_id) from fct_trips")[0][0] > AREAS / 2


def test_chicago_publication_passes_the_privacy_scan(chicago: Workdir) -> None:
    from mobility.warehouse.privacy_scan import scan_publication

    report = scan_publication(chicago.published)
    assert report.ok, [f.describe() for f in report.findings]
    assert report.notes == []

