"""The city as the simulator sees it: neighborhood polygons, demographics, and fast samplers.

Read only from the workdir files described in ARCHITECTURE.md (``neighborhoods.parquet``,
``city.json``, ``transit.json``), so the simulator works with the generated demo city and with any
real city loaded into the same layout.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow.parquet as pq
import shapely
import shapely.wkt

from mobility.settings import Workdir

KM_PER_DEG_LAT = 110.574


def city_dir(source: Workdir | str | Path) -> Path:
    """The folder holding ``neighborhoods.parquet``: a workdir root, its ``city/`` or a Workdir."""
    if isinstance(source, Workdir):
        return source.city
    path = Path(source)
    if (path / "neighborhoods.parquet").exists():
        return path
    return path / "city"


@dataclass
class City:
    """Neighborhood arrays (index i = row i of neighborhoods.parquet) plus samplers."""

    ids: np.ndarray
    names: list[str]
    population: np.ndarray
    income: np.ndarray
    quintile: np.ndarray
    equity_zone: np.ndarray
    area_km2: np.ndarray
    geoms: np.ndarray
    meta: dict[str, Any]
    transit: dict[str, Any] | None
    tz: ZoneInfo = field(init=False)
    lat0: float = field(init=False)
    km_per_deg_lon: float = field(init=False)

    def __post_init__(self) -> None:
        self.tz = ZoneInfo(self.meta.get("timezone") or "America/Chicago")
        minx, miny, maxx, maxy = shapely.total_bounds(self.geoms)
        self.bbox = (float(minx), float(miny), float(maxx), float(maxy))
        self.lat0 = (miny + maxy) / 2
        # a local equirectangular projection is accurate to well under 1% across a city
        self.km_per_deg_lon = 111.320 * math.cos(math.radians(self.lat0))
        shapely.prepare(self.geoms)
        self._tree = shapely.STRtree(self.geoms)
        # GEOS builds a prepared polygon's point index on its first query, unguarded: two threads
        # doing that at once corrupt the heap (SIGABRT), and the server builds pages on a thread pool
        self._geos = threading.Lock()
        reps = shapely.point_on_surface(self.geoms)
        self.center_lon = shapely.get_x(reps)
        self.center_lat = shapely.get_y(reps)
        self._build_triangles()

    @property
    def n(self) -> int:
        return len(self.ids)

    def _build_triangles(self) -> None:
        """Triangulate every polygon once so uniform points need no rejection loop.

        Triangles of neighborhood k are stored contiguously; ``_tri_key`` is k + the cumulative
        area share within k, a single increasing array that one searchsorted call indexes.
        """
        a, b, c, keys = [], [], [], []
        for k, geom in enumerate(self.geoms):
            tris = shapely.get_parts(shapely.constrained_delaunay_triangles(geom))
            coords = shapely.get_coordinates(shapely.get_exterior_ring(tris)).reshape(len(tris), 4, 2)
            pa_, pb_, pc_ = coords[:, 0], coords[:, 1], coords[:, 2]
            area = 0.5 * np.abs(
                (pb_[:, 0] - pa_[:, 0]) * (pc_[:, 1] - pa_[:, 1])
                - (pc_[:, 0] - pa_[:, 0]) * (pb_[:, 1] - pa_[:, 1])
            )
            cum = np.cumsum(area) / area.sum()
            cum[-1] = 1.0
            a.append(pa_), b.append(pb_), c.append(pc_), keys.append(k + cum)
        self._tri_a, self._tri_b, self._tri_c = (np.concatenate(x) for x in (a, b, c))
        self._tri_key = np.concatenate(keys)

    def sample_points(self, nbhd: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Uniform random points (lon, lat) inside each given neighborhood, rounded to 1e-6 deg.

        Coordinates are rounded here (as they are published) and re-checked, so a published point
        always lies inside the neighborhood recorded for it.
        """
        nbhd = np.asarray(nbhd, dtype=np.int64)
        lon = np.empty(len(nbhd))
        lat = np.empty(len(nbhd))
        todo = np.arange(len(nbhd))
        for _ in range(20):
            if not len(todo):
                break
            k = nbhd[todo]
            idx = np.searchsorted(self._tri_key, k + rng.random(len(todo)), side="right")
            idx = np.minimum(idx, len(self._tri_key) - 1)
            r1, r2 = rng.random(len(todo)), rng.random(len(todo))
            flip = r1 + r2 > 1
            r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
            pa_, pb_, pc_ = self._tri_a[idx], self._tri_b[idx], self._tri_c[idx]
            pts = pa_ + r1[:, None] * (pb_ - pa_) + r2[:, None] * (pc_ - pa_)
            x, y = np.round(pts[:, 0], 6), np.round(pts[:, 1], 6)
            with self._geos:
                ok = shapely.contains_xy(self.geoms[k], x, y)
            lon[todo[ok]], lat[todo[ok]] = x[ok], y[ok]
            todo = todo[~ok]
        if len(todo):  # pathological slivers: fall back to a point known to be inside
            lon[todo], lat[todo] = self.center_lon[nbhd[todo]], self.center_lat[nbhd[todo]]
        return lon, lat

    def locate(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Index of the neighborhood containing each point, -1 outside the city (or on a border)."""
        out = np.full(len(lon), -1, dtype=np.int64)
        if len(lon):
            with self._geos:
                hit_pt, hit_nb = self._tree.query(shapely.points(lon, lat), predicate="within")
            # reversed assignment keeps the first match if polygons ever overlap
            out[hit_pt[::-1]] = hit_nb[::-1]
        return out

    def offset(self, lon: np.ndarray, lat: np.ndarray, dist_km: np.ndarray, angle: np.ndarray):
        """Points ``dist_km`` away in direction ``angle`` (radians), rounded to 1e-6 deg."""
        return (
            np.round(lon + dist_km * np.cos(angle) / self.km_per_deg_lon, 6),
            np.round(lat + dist_km * np.sin(angle) / KM_PER_DEG_LAT, 6),
        )

    def dist_km(self, lon1, lat1, lon2, lat2) -> np.ndarray:
        dx = (np.asarray(lon2) - lon1) * self.km_per_deg_lon
        dy = (np.asarray(lat2) - lat1) * KM_PER_DEG_LAT
        return np.hypot(dx, dy)


def load_city(source: Workdir | str | Path) -> City:
    """Read the city files from a workdir (or its ``city/`` folder)."""
    folder = city_dir(source)
    # ParquetFile avoids importing pyarrow.dataset (and pandas): seconds saved per process
    table = pq.ParquetFile(folder / "neighborhoods.parquet").read().to_pydict()
    meta = json.loads((folder / "city.json").read_text(encoding="utf-8"))
    transit_path = folder / "transit.json"
    transit = json.loads(transit_path.read_text(encoding="utf-8")) if transit_path.exists() else None
    geoms = np.array([shapely.wkt.loads(w) for w in table["geometry_wkt"]], dtype=object)
    return City(
        ids=np.asarray(table["neighborhood_id"], dtype=np.int64),
        names=[str(x) for x in table["name"]],
        population=np.asarray(table["population"], dtype=np.float64),
        income=np.asarray(table["income"], dtype=np.float64),
        quintile=np.asarray(table["income_quintile"], dtype=np.int64),
        equity_zone=np.asarray(table["equity_zone"], dtype=bool),
        area_km2=np.asarray(table["area_km2"], dtype=np.float64),
        geoms=geoms,
        meta=meta,
        transit=transit,
    )
