"""What a generated and a loaded city share: projection, income classes, the files and how they are written.

Every city, generated or loaded, ends up as the same four files under ``DIR/city/`` (see
docs/ARCHITECTURE.md); :func:`write_city` is the only place that writes them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from shapely.geometry import MultiPolygon, Polygon

from mobility.settings import Workdir

log = logging.getLogger(__name__)

# Metres per degree (equatorial); with x scaled by cos(lat) this is the sinusoidal projection,
# which is equal-area, so areas computed through it are good to a fraction of a percent.
M_PER_DEG = 111_320.0
# Coordinates are stored on a 1e-7 degree grid (about 1 cm): stable bytes, still valid polygons.
GRID_DEG = 1e-7
WKT_DECIMALS = 7
# Share of neighborhoods (the lowest-income ones) designated equity zones; always covers quintile 1.
EQUITY_ZONE_SHARE = 0.25

NEIGHBORHOOD_SCHEMA = pa.schema(
    [
        pa.field("neighborhood_id", pa.int32(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("population", pa.int64(), nullable=False),
        pa.field("income", pa.float64(), nullable=False),
        pa.field("income_quintile", pa.int8(), nullable=False),
        pa.field("equity_zone", pa.bool_(), nullable=False),
        pa.field("area_km2", pa.float64(), nullable=False),
        pa.field("geometry_wkt", pa.string(), nullable=False),
    ]
)

Areal = Polygon | MultiPolygon


@dataclass(frozen=True)
class CityInfo:
    """A summary of the city written to a workdir."""

    name: str
    path: Path
    n_neighborhoods: int
    population_total: int
    source: str
    income_measure: str


# --- projection -------------------------------------------------------------------------------


def to_local(geom: Any, lon0: float, lat0: float) -> Any:
    """Lon/lat -> metres around (lon0, lat0) (sinusoidal, equal-area)."""

    def fwd(xy: np.ndarray) -> np.ndarray:
        lon, lat = xy[:, 0], xy[:, 1]
        return np.column_stack(
            [(lon - lon0) * np.cos(np.radians(lat)) * M_PER_DEG, (lat - lat0) * M_PER_DEG]
        )

    return shapely.transform(geom, fwd)


def to_lonlat(geom: Any, lon0: float, lat0: float) -> Any:
    """Inverse of :func:`to_local`."""

    def inv(xy: np.ndarray) -> np.ndarray:
        lat = lat0 + xy[:, 1] / M_PER_DEG
        return np.column_stack([lon0 + xy[:, 0] / (np.cos(np.radians(lat)) * M_PER_DEG), lat])

    return shapely.transform(geom, inv)


def area_km2(geom: Any) -> float:
    """Area of a lon/lat geometry in square kilometres."""
    return float(to_local(geom, 0.0, 0.0).area / 1e6)


# --- geometry and income classes --------------------------------------------------------------


def clean_areal(geom: Any) -> Areal | None:
    """Snap to the storage grid and repair; return a valid (Multi)Polygon, or None if nothing is left."""
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    geom = shapely.set_precision(geom, GRID_DEG)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    # make_valid can return a collection with stray lines or points: keep the areal parts only
    parts: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, MultiPolygon):
            parts.extend(p for p in part.geoms if not p.is_empty)
        elif isinstance(part, Polygon) and not part.is_empty:
            parts.append(part)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def income_classes(income: Sequence[float], ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Unweighted income quintiles (1 = lowest) and equity zones (the lowest-income share).

    Ties are broken by id, so the result does not depend on row order.
    """
    income_arr = np.asarray(income, dtype=float)
    n = len(income_arr)
    order = np.lexsort((np.asarray(ids), income_arr))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    quintile = (rank * 5 // n + 1).astype(np.int8)
    n_equity = max(math.ceil(EQUITY_ZONE_SHARE * n), math.ceil(n / 5))
    return quintile, rank < n_equity


# --- writing ------------------------------------------------------------------------------------


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path`` then rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_city(
    workdir: Workdir,
    *,
    ids: Sequence[int],
    names: Sequence[str],
    population: Sequence[int],
    income: Sequence[float],
    geometries: Sequence[Areal],
    meta: dict[str, Any],
    transit: dict[str, Any],
) -> CityInfo:
    """Derive area, quintiles and equity zones, then write the city's four files atomically.

    ``meta`` holds city.json's keys except ``bbox``, which is computed here.
    """
    geoms = [clean_areal(g) for g in geometries]
    if any(g is None for g in geoms):
        bad = next(i for i, g in zip(ids, geoms) if g is None)
        raise ValueError(f"neighborhood {bad}: geometry has no area left after cleaning")
    quintile, equity = income_classes(income, ids)
    wkts = [shapely.to_wkt(g, rounding_precision=WKT_DECIMALS, trim=True) for g in geoms]
    table = pa.table(
        {
            "neighborhood_id": pa.array(ids, pa.int32()),
            "name": pa.array(names, pa.string()),
            "population": pa.array(population, pa.int64()),
            "income": pa.array(income, pa.float64()),
            "income_quintile": pa.array(quintile, pa.int8()),
            "equity_zone": pa.array(equity, pa.bool_()),
            "area_km2": pa.array([round(area_km2(g), 6) for g in geoms], pa.float64()),
            "geometry_wkt": pa.array(wkts, pa.string()),
        },
        schema=NEIGHBORHOOD_SCHEMA,
    )
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    meta = {**meta, "bbox": [round(float(v), 6) for v in (minx, miny, maxx, maxy)]}

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(workdir.neighborhoods, sink.getvalue().to_pybytes())
    atomic_write_json(workdir.city_meta, meta)
    atomic_write_json(workdir.transit_network, transit)
    atomic_write_json(workdir.city / "neighborhoods.geojson", _geojson(table, geoms))

    info = CityInfo(
        name=str(meta["name"]),
        path=workdir.city,
        n_neighborhoods=table.num_rows,
        population_total=int(sum(table.column("population").to_pylist())),
        source=str(meta["source"]),
        income_measure=str(meta["income_measure"]),
    )
    log.info(
        "wrote city %r: %d neighborhoods, %d residents, %d transit routes -> %s",
        info.name, info.n_neighborhoods, info.population_total, len(transit["routes"]), info.path,
    )
    return info


def _geojson(table: pa.Table, geoms: Sequence[Areal]) -> dict[str, Any]:
    """A FeatureCollection of the neighborhoods, for viewing in any map tool."""
    rows = table.drop_columns(["geometry_wkt"]).to_pylist()
    features = [
        {
            "type": "Feature",
            "properties": row,
            "geometry": json.loads(shapely.to_geojson(g)),
        }
        for row, g in zip(rows, geoms)
    ]
    return {"type": "FeatureCollection", "features": features}
