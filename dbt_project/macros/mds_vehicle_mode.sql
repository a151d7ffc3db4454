{# The published mode of an MDS vehicle type (MDS 1.x 'scooter' and 2.0 'scooter_*' alike). #}
{% macro mds_vehicle_mode(column) %}
    case
        when {{ column }} in ('scooter', 'scooter_standing', 'scooter_seated') then 'scooter'
        when {{ column }} in ('bicycle', 'cargo_bicycle') then 'bicycle'
        when {{ column }} = 'moped' then 'moped'
        else 'other'
    end
{% endmacro %}
