{#
  Distance in metres between two WGS84 points (haversine). DuckDB spatial's ST_Distance_Sphere
  reads its points as (lat, lon), the reverse of ST_Point(lon, lat) elsewhere: built here only.
#}
{% macro distance_m(lon_a, lat_a, lon_b, lat_b) -%}
    st_distance_sphere(st_point({{ lat_a }}, {{ lon_a }}), st_point({{ lat_b }}, {{ lon_b }}))
{%- endmacro %}

{#
  Grid bins for "within N metres" joins: bins at least `size_m` wide at every latitude up to
  `max_abs_lat`, so two points within size_m lie in the same or adjacent bins (a 3 x 3 equi-join
  instead of comparing every pair); the exact distance is then checked with distance_m().
#}
{% macro metre_bin_x(lon, size_m, max_abs_lat) -%}
    cast(floor({{ lon }} / ({{ size_m }} * 1.01 / (111195.0 * cos(radians({{ max_abs_lat }}))))) as bigint)
{%- endmacro %}

{% macro metre_bin_y(lat, size_m) -%}
    cast(floor({{ lat }} / ({{ size_m }} * 1.01 / 111195.0)) as bigint)
{%- endmacro %}
