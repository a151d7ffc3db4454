"""The city: a generated demo city or a real one loaded from GeoJSON, written as DIR/city/*."""

from mobility.city.generate import build_transit, city_boundary, generate_city
from mobility.city.io import CityInfo
from mobility.city.load import load_chicago, load_city

__all__ = ["CityInfo", "build_transit", "city_boundary", "generate_city", "load_chicago", "load_city"]
