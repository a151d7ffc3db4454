"""The city: the generated demo city's geometry and attributes, loading a real city, spatial lookups."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from mobility import spatial
from mobility.city import city_boundary, generate_city, load_chicago, load_city
from mobility.city.io import M_PER_DEG
from mobility.city.load import CityInputError
from mobility.settings import Workdir

SEED = 7


def _table(workdir: Workdir) -> pa.Table:
    return pq.read_table(workdir.neighborhoods)


def _geoms(table: pa.Table) -> np.ndarray:
    return shapely.from_wkt(table.column("geometry_wkt").to_pylist())


def _metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    lat = math.radians((lat1 + lat2) / 2)
    return math.hypot((lon2 - lon1) * math.cos(lat) * M_PER_DEG, (lat2 - lat1) * M_PER_DEG)


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    workdir = Workdir.resolve(tmp_path_factory.mktemp("city"))
    generate_city(workdir, seed=SEED)
    return workdir


# --- the generated city -----------------------------------------------------------------------


def test_files_and_schema(city: Workdir) -> None:
    table = _table(city)
    assert {n: str(t) for n, t in zip(table.schema.names, table.schema.types)} == {
        "neighborhood_id": "int32",
        "name": "string",
        "population": "int64",
        "income": "double",
        "income_quintile": "int8",
        "equity_zone": "bool",
        "area_km2": "double",
        "geometry_wkt": "string",
    }
    assert table.num_rows == 80
    assert sorted(table.column("neighborhood_id").to_pylist()) == list(range(1, 81))
    assert len(set(table.column("name").to_pylist())) == 80

    meta = json.loads(city.city_meta.read_text())
    assert meta["source"] == "generated" and meta["seed"] == SEED
    assert meta["timezone"] == "America/Chicago"
    assert meta["income_measure"] == "median_household_income"
    assert np.allclose(meta["bbox"], shapely.total_bounds(_geoms(table)), atol=1e-6)

    geojson = json.loads((city.city / "neighborhoods.geojson").read_text())
    assert len(geojson["features"]) == 80
    # atomic writes leave no temp files behind
    assert sorted(p.name for p in city.city.iterdir()) == [
        "city.json", "neighborhoods.geojson", "neighborhoods.parquet", "transit.json",
    ]


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = (Workdir.resolve(tmp_path / name) for name in "abc")
    info = generate_city(a, seed=11)
    generate_city(b, seed=11)
    generate_city(c, seed=12)
    for name in ("neighborhoods.parquet", "city.json", "transit.json", "neighborhoods.geojson"):
        assert (a.city / name).read_bytes() == (b.city / name).read_bytes(), name
    assert _table(a).equals(_table(b))
    assert not _table(a).equals(_table(c))
    assert _table(a).column("geometry_wkt") != _table(c).column("geometry_wkt")
    assert info.n_neighborhoods == 80
    assert info.population_total == sum(_table(a).column("population").to_pylist())


@pytest.mark.parametrize("n", [60, 120])
def test_neighborhood_count_bounds_accepted(tmp_path: Path, n: int) -> None:
    info = generate_city(Workdir.resolve(tmp_path), seed=3, n_neighborhoods=n)
    assert info.n_neighborhoods == n == _table(Workdir.resolve(tmp_path)).num_rows


@pytest.mark.parametrize("n", [0, 59, 121, 500, 80.5, True, "80"])
def test_bad_neighborhood_count_rejected(tmp_path: Path, n: object) -> None:
    with pytest.raises(ValueError, match="n_neighborhoods"):
        generate_city(Workdir.resolve(tmp_path), n_neighborhoods=n)  # type: ignore[arg-type]
    assert not (tmp_path / "city").exists()


def test_polygons_valid_disjoint_and_tile_the_boundary(city: Workdir) -> None:
    geoms = _geoms(_table(city))
    assert all(shapely.is_valid(geoms))
    assert all(g.geom_type in ("Polygon", "MultiPolygon") for g in geoms)
    total = float(shapely.area(geoms).sum())

    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]])).sum()
    assert pairs.sum() > 80  # neighbours do touch
    assert overlap < 1e-6 * total

    boundary = city_boundary(SEED)
    union = shapely.union_all(geoms)
    assert union.area == pytest.approx(boundary.area, rel=1e-3)
    assert total == pytest.approx(boundary.area, rel=1e-3)
    assert shapely.symmetric_difference(union, boundary).area < 1e-3 * boundary.area


def test_not_a_grid(city: Workdir) -> None:
    geoms = _geoms(_table(city))
    vertices = np.array([len(shapely.get_coordinates(shapely.get_exterior_ring(g))) - 1 for g in geoms])
    assert len(set(vertices.tolist())) >= 5
    rectangles = sum(1 for g in geoms if g.equals(g.envelope))
    assert rectangles == 0
    areas = np.array([g.area for g in geoms])
    assert areas.std() / areas.mean() > 0.2  # cells of varied size, not equal squares


def test_area_km2_and_city_size(city: Workdir) -> None:
    table = _table(city)
    area = np.array(table.column("area_km2").to_pylist())
    assert (area > 0).all()
    assert 250 < area.sum() < 500  # about 20 x 20 km
    minlon, minlat, maxlon, maxlat = json.loads(city.city_meta.read_text())["bbox"]
    assert 15_000 < _metres(minlon, 41.85, maxlon, 41.85) < 26_000
    assert 15_000 < _metres(-87.75, minlat, -87.75, maxlat) < 26_000


def test_population(city: Workdir) -> None:
    table = _table(city)
    pop = np.array(table.column("population").to_pylist())
    assert pop.min() >= 2_000
    assert 600_000 <= pop.sum() <= 900_000
    # density falls from the centre: the inner third is denser than the outer third
    geoms = _geoms(table)
    c = shapely.get_coordinates(shapely.centroid(geoms))
    r = np.hypot((c[:, 0] + 87.75) * math.cos(math.radians(41.85)), c[:, 1] - 41.85)
    density = pop / np.array(table.column("area_km2").to_pylist())
    inner, outer = r < np.quantile(r, 1 / 3), r > np.quantile(r, 2 / 3)
    assert density[inner].mean() > 1.5 * density[outer].mean()


def test_income_range_and_spatial_correlation(city: Workdir) -> None:
    table = _table(city)
    income = np.array(table.column("income").to_pylist())
    assert 20_000 <= income.min() < 30_000 and 120_000 < income.max() <= 165_000
    geoms = _geoms(table)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="touches")
    neighbours = np.abs(np.log(income[left]) - np.log(income[right])).mean()
    everyone = np.abs(np.log(income)[:, None] - np.log(income)[None, :]).mean()
    assert neighbours < 0.6 * everyone  # neighbours are alike: income is spatially correlated


def test_quintiles_and_equity_zones_are_the_lowest_income(city: Workdir) -> None:
    rows = _table(city).to_pylist()
    by_income = sorted(rows, key=lambda r: (r["income"], r["neighborhood_id"]))
    quintiles = [r["income_quintile"] for r in by_income]
    assert quintiles == sorted(quintiles) and set(quintiles) == {1, 2, 3, 4, 5}
    assert all(quintiles.count(q) == 16 for q in range(1, 6))

    equity = [r for r in rows if r["equity_zone"]]
    others = [r for r in rows if not r["equity_zone"]]
    assert 0.2 <= len(equity) / len(rows) <= 0.25
    assert max(r["income"] for r in equity) <= min(r["income"] for r in others)
    assert all(r["equity_zone"] for r in rows if r["income_quintile"] == 1)


def test_transit_network(city: Workdir) -> None:
    transit = json.loads(city.transit_network.read_text())
    minlon, minlat, maxlon, maxlat = json.loads(city.city_meta.read_text())["bbox"]
    assert transit["agency"]["agency_name"] == "Metro Transit Authority"
    assert transit["agency"]["agency_timezone"] == "America/Chicago"
    assert {"agency_id", "agency_url"} <= transit["agency"].keys()

    stops = {s["stop_id"]: s for s in transit["stops"]}
    assert len(stops) == len(transit["stops"])  # unique ids
    for s in stops.values():
        assert minlon <= s["stop_lon"] <= maxlon and minlat <= s["stop_lat"] <= maxlat
    boundary = city_boundary(SEED)
    assert all(boundary.contains(shapely.Point(s["stop_lon"], s["stop_lat"])) for s in stops.values())

    routes = transit["routes"]
    assert 8 <= len(routes) <= 14
    assert len({r["route_id"] for r in routes}) == len(routes)
    frequent = [r for r in routes if 60 / r["headway_peak_min"] >= 4]
    assert 2 <= len(frequent) < len(routes)  # some routes frequent, some not
    for r in routes:
        assert {"route_short_name", "route_type", "headway_offpeak_min", "speed_kmh"} <= r.keys()
        assert (r["service_start"], r["service_end"]) == ("05:00", "23:30")
        assert r["headway_offpeak_min"] >= r["headway_peak_min"] > 0
        assert all(sid in stops for sid in r["stop_ids"])
        seq = [stops[sid] for sid in r["stop_ids"]]
        gaps = [_metres(a["stop_lon"], a["stop_lat"], b["stop_lon"], b["stop_lat"])
                for a, b in zip(seq, seq[1:])]
        assert len(gaps) >= 5 and all(350 < g < 650 for g in gaps), (r["route_id"], min(gaps), max(gaps))
    # radial lines cross near the centre: a 1 km circle there is crossed by at least four routes
    centre = shapely.Point(-87.75, 41.85)
    near = {sid.rsplit("-", 1)[0] for sid, s in stops.items()
            if _metres(s["stop_lon"], s["stop_lat"], centre.x, centre.y) < 1_000}
    assert len(near) >= 4


def test_points_fall_in_exactly_one_neighborhood_with_duckdb_spatial(city: Workdir) -> None:
    boundary = city_boundary(SEED)
    rng = np.random.default_rng(0)
    minx, miny, maxx, maxy = boundary.bounds
    pts = rng.uniform([minx, miny], [maxx, maxy], size=(400, 2))
    pts = pts[shapely.contains_xy(boundary, pts[:, 0], pts[:, 1])]
    con = spatial.connect()
    con.execute("CREATE TABLE pts AS SELECT * FROM (SELECT unnest(?) AS lon, unnest(?) AS lat)",
                [pts[:, 0].tolist(), pts[:, 1].tolist()])
    hits = con.execute(
        """
        SELECT p.lon, p.lat, count(n.neighborhood_id) AS n
        FROM pts p LEFT JOIN read_parquet(?) n
          ON ST_Contains(ST_GeomFromText(n.geometry_wkt), ST_Point(p.lon, p.lat))
        GROUP BY ALL
        """,
        [str(city.neighborhoods)],
    ).fetchall()
    assert len(hits) == len(pts) > 250
    assert {n for _, _, n in hits} == {1}


# --- the spatial extension -----------------------------------------------------------------------


def test_spatial_extension_installs_and_loads(tmp_path: Path) -> None:
    assert spatial.extension_file().is_file()
    spatial.install_spatial()  # idempotent
    spatial.install_spatial()
    with spatial.connect(tmp_path / "x.duckdb") as con:
        assert con.execute("SELECT ST_AsText(ST_Point(1, 2))").fetchone() == ("POINT (1 2)",)
    # after the one install, a plain INSTALL/LOAD works offline (what dbt-duckdb runs)
    import duckdb

    with duckdb.connect() as con:
        con.execute("INSTALL spatial; LOAD spatial")
        square = "SELECT ST_Area(ST_GeomFromText('POLYGON((0 0,2 0,2 2,0 2,0 0))'))"
        assert con.execute(square).fetchone() == (4.0,)
    with pytest.raises(ValueError, match="read_only"):
        spatial.connect(read_only=True)


# --- loading a real city -------------------------------------------------------------------------


def _square(x: float, y: float, size: float = 0.01) -> dict:
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def _write_geojson(path: Path, props: list[dict]) -> Path:
    features = [
        {"type": "Feature", "properties": p, "geometry": _square(-87.7 + 0.01 * i, 41.8)}
        for i, p in enumerate(props)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _small_city_props(n: int = 10) -> list[dict]:
    return [{"ID": i + 1, "NAME": f"Area {i + 1}", "POP": 1000 * (i + 1), "INC": 20_000 + 5_000 * i}
            for i in range(n)]


def test_load_city_from_geojson_properties(tmp_path: Path) -> None:
    props = _small_city_props()
    props[3]["ID"] = "4"  # numeric strings are fine
    src = _write_geojson(tmp_path / "small.geojson", props[::-1])  # out of id order on purpose
    workdir = Workdir.resolve(tmp_path / "w")
    info = load_city(workdir, src, id_field="ID", name_field="NAME", population_field="POP",
                     income_field="INC", income_measure="per_capita_income", name="Small")
    assert (info.name, info.n_neighborhoods, info.population_total) == ("Small", 10, 55_000)
    rows = _table(workdir).to_pylist()
    assert [r["neighborhood_id"] for r in rows] == list(range(1, 11))
    assert [r["income_quintile"] for r in rows] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [r["equity_zone"] for r in rows] == [True] * 3 + [False] * 7
    assert rows[0]["area_km2"] == pytest.approx(1.113 * 1.113 * math.cos(math.radians(41.805)), rel=0.01)
    meta = json.loads(workdir.city_meta.read_text())
    assert meta["source"] == "loaded" and meta["income_measure"] == "per_capita_income"
    assert json.loads(workdir.transit_network.read_text())["stops"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p[4].pop("POP"), "bad.geojson: feature 4 (ID=5): field 'POP' missing"),
        (lambda p: p[2].update(POP="many"), "bad.geojson: feature 2 (ID=3): field 'POP' is not a number"),
        (lambda p: p[6].update(INC=-5), "bad.geojson: feature 6 (ID=7): field 'INC' must be a non-negative"),
        (lambda p: p[1].update(ID=1), "bad.geojson: feature 1: field 'ID' repeats id 1"),
        (lambda p: p[8].update(ID=None), "bad.geojson: feature 8: field 'ID' is empty"),
    ],
)
def test_load_city_errors_name_file_feature_and_field(tmp_path: Path, mutate, message: str) -> None:
    props = _small_city_props()
    mutate(props)
    src = _write_geojson(tmp_path / "bad.geojson", props)
    with pytest.raises(CityInputError) as err:
        load_city(Workdir.resolve(tmp_path / "w"), src, id_field="ID", name_field="NAME",
                  population_field="POP", income_field="INC", income_measure="x")
    assert message in str(err.value)
    assert not (tmp_path / "w").exists()


def test_load_city_demographics_join_and_errors(tmp_path: Path) -> None:
    props = [{k: v for k, v in p.items() if k != "INC"} for p in _small_city_props()]
    src = _write_geojson(tmp_path / "areas.geojson", props)
    demo = tmp_path / "demo.csv"
    lines = ["AREA_NO,INCOME"] + [f"{i},{100 * i}" for i in range(10, 0, -1)]
    demo.write_text("\n".join(lines) + "\n")
    kwargs = dict(id_field="ID", name_field="NAME", population_field="POP", income_field="INCOME",
                  income_measure="per_capita_income", join_field="AREA_NO")
    workdir = Workdir.resolve(tmp_path / "w")
    load_city(workdir, src, demo, **kwargs)
    assert [(r["neighborhood_id"], r["income"]) for r in _table(workdir).to_pylist()] == [
        (i, 100.0 * i) for i in range(1, 11)
    ]

    demo.write_text("\n".join(lines[:4] + ["7,n/a"] + lines[5:]) + "\n")  # line 5 is area 7
    with pytest.raises(CityInputError, match=r"demo.csv: line 5: field 'INCOME' is not a number"):
        load_city(workdir, src, demo, **kwargs)
    demo.write_text("\n".join(lines[:-1]) + "\n")  # area 1 missing
    missing = r"demo.csv: no row with AREA_NO = 1 \(needed by areas.geojson: feature 0"
    with pytest.raises(CityInputError, match=missing):
        load_city(workdir, src, demo, **kwargs)
    demo.write_text("AREA,INCOME\n1,2\n")
    with pytest.raises(CityInputError, match=r"demo.csv: field 'AREA_NO' missing from the header"):
        load_city(workdir, src, demo, **kwargs)


# --- Chicago (real files from the shared data folder) -------------------------------------------

CHICAGO_POINTS = [
    # (name, lat, lon, expected community area id, expected name)
    ("the Loop", 41.8819, -87.6278, 32, "LOOP"),
    ("O'Hare airport", 41.9786, -87.9048, 76, "OHARE"),
    ("Hyde Park", 41.7943, -87.5907, 41, "HYDE PARK"),
    ("Wrigley Field", 41.9484, -87.6553, 6, "LAKE VIEW"),
    ("Midway airport", 41.7868, -87.7522, 56, "GARFIELD RIDGE"),
]


@pytest.fixture(scope="module")
def chicago(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Workdir:
    folder = shared_data / "geo" / "chicago-community-areas"
    if not folder.is_dir():
        pytest.skip(f"shared data folder lacks {folder}: Chicago tests not run")
    workdir = Workdir.resolve(tmp_path_factory.mktemp("chicago"))
    load_chicago(workdir, shared_data)
    return workdir


def test_chicago_loads_77_community_areas(chicago: Workdir, shared_data: Path) -> None:
    table = _table(chicago)
    assert table.num_rows == 77
    assert table.column("neighborhood_id").to_pylist() == list(range(1, 78))
    assert all(shapely.is_valid(_geoms(table)))  # one source polygon is invalid and gets repaired
    assert 2_500_000 < sum(table.column("population").to_pylist()) < 3_000_000

    census = shared_data / "geo" / "chicago-community-areas" / "ChicagoCensusData.csv"
    with census.open(newline="") as fh:
        expected = {int(r["COMMUNITY_AREA_NUMBER"]): float(r["PER_CAPITA_INCOME"])
                    for r in csv.DictReader(fh)}
    assert {r["neighborhood_id"]: r["income"] for r in table.to_pylist()} == expected

    meta = json.loads(chicago.city_meta.read_text())
    assert meta["name"] == "Chicago" and meta["source"] == "loaded"
    assert meta["income_measure"] == "per_capita_income"
    minlon, minlat, maxlon, maxlat = meta["bbox"]
    assert -88.0 < minlon < maxlon < -87.5 and 41.6 < minlat < maxlat < 42.1
    transit = json.loads(chicago.transit_network.read_text())
    city = shapely.union_all(_geoms(table))
    assert len(transit["routes"]) >= 8
    assert all(city.contains(shapely.Point(s["stop_lon"], s["stop_lat"])) for s in transit["stops"])


@pytest.mark.parametrize(("place", "lat", "lon", "area_id", "area_name"), CHICAGO_POINTS)
def test_chicago_points_assigned_with_duckdb_spatial(
    chicago: Workdir, place: str, lat: float, lon: float, area_id: int, area_name: str
) -> None:
    with spatial.connect() as con:
        hits = con.execute(
            """
            SELECT neighborhood_id, name FROM read_parquet(?)
            WHERE ST_Contains(ST_GeomFromText(geometry_wkt), ST_Point(?, ?))
            """,
            [str(chicago.neighborhoods), lon, lat],
        ).fetchall()
    assert hits == [(area_id, area_name)], place
