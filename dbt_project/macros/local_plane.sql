{#
  Metres per degree of latitude and of longitude at latitude `lat0` on the WGS84 ellipsoid (the
  usual series, good to centimetres per degree), so a city can be measured on a local plane:
  x = (lon - lon0) * m_per_deg_lon, y = (lat - lat0) * m_per_deg_lat. Across 50 km the error of
  that plane stays under a metre at 400 m.
#}
{% macro m_per_deg_lat(lat0) %}(111132.92 - 559.82 * cos(2 * radians({{ lat0 }})) + 1.175 * cos(4 * radians({{ lat0 }}))){% endmacro %}
{% macro m_per_deg_lon(lat0) %}(111412.84 * cos(radians({{ lat0 }})) - 93.5 * cos(3 * radians({{ lat0 }}))){% endmacro %}
