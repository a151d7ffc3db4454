"""A synthetic demo city: irregular neighborhoods with population and income, plus a transit network.

Everything is drawn from ``numpy`` generators seeded with ``(seed, stream)``, so one seed always
gives the same bytes, and each part (boundary, seed points, population, income, transit) can be
rebuilt on its own. Geometry is built in local metres and stored as WGS84 lon/lat.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, Polygon

from mobility.city.io import Areal, CityInfo, to_local, to_lonlat, write_city
from mobility.settings import Workdir

log = logging.getLogger(__name__)

# a plausible place: west side of Chicago, about 20 x 20 km
LON0, LAT0 = -87.75, 41.85
RADIUS_M = 10_300.0
MIN_NEIGHBORHOODS, MAX_NEIGHBORHOODS = 60, 120
MIN_POPULATION = 2_000
INCOME_RANGE = (22_000.0, 160_000.0)
TIMEZONE = "America/Chicago"

AGENCY_NAME = "Metro Transit Authority"
STOP_SPACING_M = (400.0, 600.0)
RAIL_LINES = ["Red", "Blue", "Green", "Orange", "Purple"]

_NAME_FIRST = [
    "Oak", "Maple", "Cedar", "Elm", "Willow", "Birch", "Ash", "Pine", "Linden", "Hickory",
    "Walnut", "Chestnut", "Aspen", "Juniper", "Alder", "Laurel", "Hawthorn", "Magnolia",
    "Sycamore", "Clover", "Fox", "Heron", "Lark", "Robin", "Sparrow", "Brook", "Stone", "Mill",
    "Prairie", "Lake", "River", "Bridge", "Garden", "Union", "Harbor", "Canal",
]
_NAME_SECOND = [
    "Park", "Heights", "Square", "Village", "Grove", "Ridge", "Hill", "Gardens", "Crossing",
    "Point", "Terrace", "Meadows", "Commons", "Junction", "Landing", "Yards",
]


def _rng(seed: int, stream: int) -> np.random.Generator:
    """An independent generator per part of the city, so each part can be rebuilt alone."""
    return np.random.default_rng([seed, stream])


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _boundary_local(seed: int) -> Polygon:
    """A blobby star-shaped city outline in metres around (0, 0): a circle with a few harmonics."""
    rng = _rng(seed, 1)
    theta = np.linspace(0.0, 2 * math.pi, 256, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        # amplitudes sum to < 0.4, so r stays positive and the outline cannot self-intersect
        r += rng.uniform(0.03, 0.09) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    r *= RADIUS_M
    return Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]).round(1))


def city_boundary(seed: int = 7) -> Polygon:
    """The demo city's outline for ``seed`` in lon/lat (the neighborhoods tile exactly this)."""
    _check_seed(seed)
    return to_lonlat(_boundary_local(seed), LON0, LAT0)


def _seed_points(boundary: Polygon, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points inside ``boundary``, kept apart by a spacing that is tighter near the centre.

    Dart throwing (random sequential adsorption): Poisson-disk-like, irregular but even.
    """
    shapely.prepare(boundary)
    minx, miny, maxx, maxy = boundary.bounds
    radius = math.sqrt(boundary.area / math.pi)
    spacing = 0.6 * math.sqrt(boundary.area / n)
    pts: list[np.ndarray] = []
    batches = 0
    while len(pts) < n:
        cand = rng.uniform([minx, miny], [maxx, maxy], size=(256, 2))
        cand = cand[shapely.contains_xy(boundary, cand[:, 0], cand[:, 1])]
        for p in cand:
            # smaller neighborhoods downtown, larger ones at the edge
            d_min = spacing * (0.75 + 0.5 * min(float(np.hypot(*p)) / radius, 1.2))
            if not pts or np.min(np.hypot(*(np.asarray(pts) - p).T)) >= d_min:
                pts.append(p)
                if len(pts) == n:
                    break
        batches += 1
        if batches % 50 == 0:  # nearly saturated: relax the spacing rather than loop for ever
            spacing *= 0.95
    return np.asarray(pts)


def _neighborhood_cells(boundary: Polygon, points: np.ndarray) -> list[Areal]:
    """Voronoi cells of ``points`` clipped to ``boundary``: they tile the boundary exactly."""
    extent = boundary.envelope.buffer(RADIUS_M)
    cells = shapely.voronoi_polygons(MultiPoint(points), extend_to=extent, ordered=True)
    return [boundary.intersection(c) for c in cells.geoms]


def _population(centroids: np.ndarray, areas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Residents per neighborhood: density falls off from the centre, with noise."""
    r = np.hypot(centroids[:, 0], centroids[:, 1]) / RADIUS_M
    weight = np.exp(-r / 0.45) * rng.lognormal(0.0, 0.25, len(r)) * areas
    total = int(rng.integers(650_000, 850_001))
    n = len(r)
    return MIN_POPULATION + np.floor((total - MIN_POPULATION * n) * weight / weight.sum()).astype(np.int64)


def _income(centroids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Median household income: richer to the north, a poor cluster to the south-west, smooth noise."""
    x, y = centroids[:, 0] / RADIUS_M, centroids[:, 1] / RADIUS_M
    angle = rng.uniform(1.0 * math.pi, 1.6 * math.pi)
    px, py = 0.45 * math.cos(angle), 0.45 * math.sin(angle)
    poor = 1.3 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * 0.28**2))
    waves = np.zeros_like(x)
    for _ in range(3):  # low-frequency waves keep neighbours alike (spatial correlation)
        k, direction, phase = rng.uniform(2, 4), rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
        waves += 0.15 * np.cos(k * (x * math.cos(direction) + y * math.sin(direction)) + phase)
    z = 0.8 * y - poor + waves + rng.normal(0.0, 0.1, len(x))
    u = (z - z.min()) / (z.max() - z.min())
    lo, hi = INCOME_RANGE
    return np.round(lo * (hi / lo) ** u, -2)


def _names(n: int, rng: np.random.Generator) -> list[str]:
    combos = list(itertools.product(_NAME_FIRST, _NAME_SECOND))
    return [" ".join(combos[i]) for i in rng.choice(len(combos), size=n, replace=False)]


# --- transit ------------------------------------------------------------------------------------


def _longest_piece(geom: Any) -> LineString | None:
    lines = [g for g in shapely.get_parts(geom) if isinstance(g, LineString) and not g.is_empty]
    return max(lines, key=lambda g: g.length) if lines else None


def build_transit(
    area: Areal,
    seed: int,
    timezone: str = TIMEZONE,
    centre: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """A transit network over a lon/lat ``area``: radial lines through ``centre`` plus crosstown routes.

    Returns the transit.json document of docs/ARCHITECTURE.md. Stops are spaced 400-600 m and lie
    inside ``area``; rail and radial buses are frequent (<= 15 min at peak), some crosstown are not.
    """
    _check_seed(seed)
    rng = _rng(seed, 5)
    if centre is None:
        c = area.centroid if area.contains(area.centroid) else area.representative_point()
        centre = (c.x, c.y)
    lon0, lat0 = centre
    local = to_local(area, lon0, lat0)
    # stops a little inside the edge, so none falls outside the city on a ragged boundary
    inner = local.buffer(-150.0)
    if inner.is_empty:
        inner = local
    minx, miny, maxx, maxy = local.bounds
    reach = 2 * max(abs(minx), abs(miny), abs(maxx), abs(maxy))

    lines: list[tuple[str, LineString]] = []
    n_radial = int(rng.integers(5, 8))
    base = rng.uniform(0, math.pi)
    for i in range(n_radial):
        a = base + i * math.pi / n_radial + rng.uniform(-0.12, 0.12)
        d, perp = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
        # gentle bends away from the centre; the line still passes through downtown
        pts = [t * reach * d + perp * (rng.normal(0, 500) if t else 0.0) for t in (-1, -0.5, 0, 0.5, 1)]
        lines.append(("radial", LineString(pts)))
    n_cross = int(rng.integers(3, 6))
    for i in range(n_cross):
        offset = (1 if i % 4 < 2 else -1) * rng.uniform(0.35, 0.6)
        tilt = rng.uniform(-0.08, 0.08)
        if i % 2 == 0:  # east-west
            y = offset * (maxy if offset > 0 else -miny)
            pts = [(-reach, y - tilt * reach), (reach, y + tilt * reach)]
        else:  # north-south
            x = offset * (maxx if offset > 0 else -minx)
            pts = [(x - tilt * reach, -reach), (x + tilt * reach, reach)]
        lines.append(("crosstown", LineString(pts)))

    bus_numbers = iter(rng.choice(np.arange(2, 100), size=len(lines), replace=False))
    n_rail = min(2, n_radial)
    stops: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for i, (kind, line) in enumerate(lines):
        piece = _longest_piece(line.intersection(inner))
        if piece is None or piece.length < 3_000:
            continue  # clipped to a stub by an odd-shaped city
        rail = kind == "radial" and i < n_rail
        if rail:
            short, label, route_type = RAIL_LINES[i], f"{RAIL_LINES[i]} Line", 1
            peak = int(rng.choice([5, 6, 8]))
            offpeak, speed = min(2 * peak, 12), rng.uniform(30, 36)
        else:
            short = str(int(next(bus_numbers)))
            label, route_type, speed = f"Route {short}", 3, rng.uniform(15, 21)
            # the first crosstown route kept is never frequent, others sometimes: the metrics need both
            no_infrequent_yet = all(r["headway_peak_min"] <= 15 for r in routes)
            infrequent = kind == "crosstown" and (no_infrequent_yet or rng.random() < 0.4)
            peak = int(rng.choice([20, 30])) if infrequent else int(rng.choice([8, 10, 12, 15]))
            offpeak = 2 * peak if peak <= 15 else peak + 10
        route_id = short.upper() if rail else f"B{short}"
        spacing = rng.uniform(*STOP_SPACING_M)
        n_stops = max(2, round(piece.length / spacing) + 1)
        at = shapely.line_interpolate_point(piece, np.linspace(0.0, piece.length, n_stops))
        ll = shapely.get_coordinates(to_lonlat(at, lon0, lat0))
        stop_ids = []
        for k, (lon, lat) in enumerate(ll, start=1):
            stop_id = f"{route_id}-{k:03d}"
            stops.append(
                {"stop_id": stop_id, "stop_name": f"{label} stop {k}",
                 "stop_lat": round(float(lat), 6), "stop_lon": round(float(lon), 6)}
            )
            stop_ids.append(stop_id)
        routes.append(
            {
                "route_id": route_id,
                "route_short_name": short,
                "route_type": route_type,
                "stop_ids": stop_ids,
                "headway_peak_min": peak,
                "headway_offpeak_min": offpeak,
                "service_start": "05:00",
                "service_end": "23:30",
                "speed_kmh": round(float(speed), 1),
            }
        )
    agency = {
        "agency_id": "MTA",
        "agency_name": AGENCY_NAME,
        "agency_url": "https://transit.example.org",
        "agency_timezone": timezone,
    }
    return {"agency": agency, "stops": stops, "routes": routes}


# --- the city -----------------------------------------------------------------------------------


def generate_city(
    workdir: Workdir, seed: int = 7, n_neighborhoods: int = 80, name: str = "Demo City"
) -> CityInfo:
    """Generate the demo city into ``workdir`` (same seed, same bytes) and return its summary."""
    _check_seed(seed)
    if (
        isinstance(n_neighborhoods, bool)
        or not isinstance(n_neighborhoods, (int, np.integer))
        or not MIN_NEIGHBORHOODS <= n_neighborhoods <= MAX_NEIGHBORHOODS
    ):
        raise ValueError(
            f"n_neighborhoods must be an integer from {MIN_NEIGHBORHOODS} to {MAX_NEIGHBORHOODS}, "
            f"got {n_neighborhoods!r}"
        )
    n = int(n_neighborhoods)
    boundary = _boundary_local(seed)
    points = _seed_points(boundary, n, _rng(seed, 2))
    # ids in reading order: 2 km bands north to south, west to east within a band
    order = np.lexsort((points[:, 0], -np.round(points[:, 1] / 2_000)))
    all_cells = _neighborhood_cells(boundary, points)
    cells = [all_cells[i] for i in order]
    centroids = shapely.get_coordinates(shapely.centroid(cells))
    areas = shapely.area(cells)

    population = _population(centroids, areas, _rng(seed, 3))
    income = _income(centroids, _rng(seed, 4))
    names = _names(n, _rng(seed, 6))
    transit = build_transit(to_lonlat(boundary, LON0, LAT0), seed, TIMEZONE, centre=(LON0, LAT0))
    meta = {
        "name": name,
        "source": "generated",
        "seed": int(seed),
        "timezone": TIMEZONE,
        "income_measure": "median_household_income",
    }
    return write_city(
        workdir,
        ids=list(range(1, n + 1)),
        names=names,
        population=population.tolist(),
        income=income.tolist(),
        geometries=[to_lonlat(c, LON0, LAT0) for c in cells],
        meta=meta,
        transit=transit,
    )
