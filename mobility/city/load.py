"""A real city from a GeoJSON of polygons plus an optional demographics CSV joined on an id.

Bad input fails with a message naming the file, the feature (0-based index into ``features``) or
CSV line, and the field, e.g. ``ComArea.geojson: feature 12: field 'Pop2014' missing``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape

from mobility.city.generate import build_transit
from mobility.city.io import Areal, CityInfo, clean_areal, write_city
from mobility.settings import Workdir

log = logging.getLogger(__name__)

CHICAGO_DIR = Path("geo") / "chicago-community-areas"
CHICAGO_GEOJSON = "ComArea_ACS14_f.geojson"
CHICAGO_CENSUS = "ChicagoCensusData.csv"


class CityInputError(ValueError):
    """An input file for a city is missing, malformed, or lacks a field."""


def _int(value: Any, where: str, field: str) -> int:
    """An integer from an int, an integral float, or a numeric string."""
    if value is None or value == "":
        raise CityInputError(f"{where}: field {field!r} is empty")
    try:
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not float(number).is_integer():
            raise ValueError
        return int(number)
    except (TypeError, ValueError):
        raise CityInputError(f"{where}: field {field!r} is not an integer: {value!r}") from None


def _number(value: Any, where: str, field: str) -> float:
    """A finite non-negative number from a number or a numeric string."""
    if value is None or value == "":
        raise CityInputError(f"{where}: field {field!r} is empty")
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise CityInputError(f"{where}: field {field!r} is not a number: {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise CityInputError(f"{where}: field {field!r} must be a non-negative number, got {value!r}")
    return number


def _field(props: dict[str, Any], where: str, field: str) -> Any:
    if field not in props:
        raise CityInputError(f"{where}: field {field!r} missing")
    return props[field]


def _read_features(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise CityInputError(f"{path}: file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CityInputError(f"{path.name}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise CityInputError(f"{path.name}: not a GeoJSON FeatureCollection")
    crs = json.dumps(doc.get("crs") or "")
    if doc.get("crs") and "CRS84" not in crs and "4326" not in crs:
        raise CityInputError(f"{path.name}: crs {crs} is not WGS84 lon/lat (reproject to EPSG:4326 first)")
    features = doc.get("features")
    if not isinstance(features, list) or not features:
        raise CityInputError(f"{path.name}: no features")
    return features


def _geometry(feature: dict[str, Any], where: str) -> Areal:
    raw = feature.get("geometry")
    if not raw:
        raise CityInputError(f"{where}: geometry missing")
    if raw.get("type") not in ("Polygon", "MultiPolygon"):
        raise CityInputError(f"{where}: geometry is a {raw.get('type')!r}, expected Polygon or MultiPolygon")
    try:
        geom = shape(raw)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise CityInputError(f"{where}: geometry cannot be read: {exc}") from exc
    if geom.is_empty:
        raise CityInputError(f"{where}: geometry is empty")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise CityInputError(f"{where}: coordinates are not WGS84 lon/lat (bounds {geom.bounds})")
    if not geom.is_valid:
        log.info("%s: invalid geometry (%s), repaired with make_valid", where, shapely.is_valid_reason(geom))
    cleaned = clean_areal(geom)
    if cleaned is None:
        raise CityInputError(f"{where}: geometry has no area")
    return cleaned


def _read_demographics(path: Path, join_field: str, income_field: str) -> dict[int, tuple[str, Any]]:
    """CSV rows keyed by the join id: ``{id: (where, income value)}``."""
    if not path.is_file():
        raise CityInputError(f"{path}: file not found")
    rows: dict[int, tuple[str, Any]] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        for field in (join_field, income_field):
            if field not in header:
                raise CityInputError(f"{path.name}: field {field!r} missing from the header {header}")
        for row in reader:
            if not any((v or "").strip() for v in row.values()):
                continue  # blank line
            where = f"{path.name}: line {reader.line_num}"
            key = _int(row[join_field], where, join_field)
            if key in rows:
                raise CityInputError(f"{where}: field {join_field!r} repeats {key} (first at {rows[key][0]})")
            rows[key] = (where, row[income_field])
    return rows


def load_city(
    workdir: Workdir,
    geojson_path: str | Path,
    demographics_path: str | Path | None = None,
    *,
    id_field: str,
    name_field: str,
    population_field: str,
    income_field: str | None = None,
    income_measure: str,
    join_field: str | None = None,
    demographics_income_field: str | None = None,
    timezone: str = "America/Chicago",
    name: str | None = None,
    seed: int = 7,
) -> CityInfo:
    """Write a real city's files from GeoJSON polygons (WGS84) and optional demographics.

    Ids, names and population come from the GeoJSON properties. Income comes from the GeoJSON
    property ``income_field``, or, with ``demographics_path``, from the CSV column
    ``demographics_income_field`` (default ``income_field``) of the row whose ``join_field``
    (default ``id_field``) equals the feature's id. The transit network is generated over the
    city (``seed`` makes it reproducible). ``name`` defaults to the GeoJSON file's stem.
    """
    geojson_path = Path(geojson_path)
    src = geojson_path.name
    features = _read_features(geojson_path)

    demographics: dict[int, tuple[str, Any]] | None = None
    csv_name, csv_join = Path(demographics_path or "").name, join_field or id_field
    csv_income = demographics_income_field or income_field or ""
    if demographics_path is not None:
        if not csv_income:
            raise ValueError(
                "demographics_income_field (or income_field) is required with a demographics file"
            )
        demographics = _read_demographics(Path(demographics_path), csv_join, csv_income)
    elif not income_field:
        raise ValueError("income_field is required without a demographics file")

    ids: list[int] = []
    names: list[str] = []
    population: list[int] = []
    income: list[float] = []
    geoms: list[Areal] = []
    first_seen: dict[int, int] = {}
    for i, feature in enumerate(features):
        where = f"{src}: feature {i}"
        props = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(props, dict):
            raise CityInputError(f"{where}: no properties")
        fid = _int(_field(props, where, id_field), where, id_field)
        if not -(2**31) <= fid < 2**31:
            raise CityInputError(f"{where}: field {id_field!r} does not fit in int32: {fid}")
        if fid in first_seen:
            raise CityInputError(
                f"{where}: field {id_field!r} repeats id {fid} (first in feature {first_seen[fid]})"
            )
        first_seen[fid] = i
        where = f"{src}: feature {i} ({id_field}={fid})"
        label = _field(props, where, name_field)
        if label is None or str(label).strip() == "":
            raise CityInputError(f"{where}: field {name_field!r} is empty")
        pop = _number(_field(props, where, population_field), where, population_field)
        if demographics is not None:
            if fid not in demographics:
                raise CityInputError(f"{csv_name}: no row with {csv_join} = {fid} (needed by {where})")
            row_where, raw_income = demographics[fid]
            inc = _number(raw_income, row_where, csv_income)
        else:
            inc = _number(_field(props, where, income_field or ""), where, income_field or "")
        ids.append(fid)
        names.append(str(label).strip())
        population.append(int(round(pop)))
        income.append(inc)
        geoms.append(_geometry(feature, where))

    unmatched = sorted(set(demographics or ()) - set(ids))
    if unmatched:
        log.warning("%s: %d rows match no feature: %s", csv_name, len(unmatched), unmatched[:10])

    order = sorted(range(len(ids)), key=ids.__getitem__)
    transit = build_transit(shapely.union_all(geoms), seed, timezone)
    meta = {
        "name": name or geojson_path.stem,
        "source": "loaded",
        "seed": int(seed),
        "timezone": timezone,
        "income_measure": income_measure,
    }
    return write_city(
        workdir,
        ids=[ids[i] for i in order],
        names=[names[i] for i in order],
        population=[population[i] for i in order],
        income=[income[i] for i in order],
        geometries=[geoms[i] for i in order],
        meta=meta,
        transit=transit,
    )


def load_chicago(workdir: Workdir, shared_data_dir: str | Path, seed: int = 7) -> CityInfo:
    """Chicago's 77 community areas, population 2014, per-capita income from the city's census table.

    ``shared_data_dir`` is the shared data folder (see its SOURCES.md) or its
    ``geo/chicago-community-areas`` subfolder.
    """
    base = Path(shared_data_dir)
    folder = base if (base / CHICAGO_GEOJSON).is_file() else base / CHICAGO_DIR
    return load_city(
        workdir,
        folder / CHICAGO_GEOJSON,
        folder / CHICAGO_CENSUS,
        id_field="ComAreaID",
        name_field="community",
        population_field="Pop2014",
        income_field="PER_CAPITA_INCOME",
        income_measure="per_capita_income",
        join_field="COMMUNITY_AREA_NUMBER",
        timezone="America/Chicago",
        name="Chicago",
        seed=seed,
    )
