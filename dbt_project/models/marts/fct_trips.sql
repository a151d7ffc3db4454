-- One row per micromobility trip, keyed by partner + trip id. A table for now; it becomes
-- incremental (unique_key = trip_key) once data volumes call for it.
{{ config(unique_key='trip_key') }}

with assigned as (
    select * from {{ ref('int_trips_assigned_to_neighborhoods') }}
),

final as (
    select
        trip_key,
        partner_id,
        provider_id,
        trip_id,
        vehicle_type,
        {{ mds_vehicle_mode('vehicle_type') }} as mode,
        start_at,
        end_at,
        duration_s,
        distance_m,
        start_lat,
        start_lon,
        end_lat,
        end_lon,
        start_neighborhood_id,
        end_neighborhood_id,
        start_local_date,
        start_local_hour,
        end_local_date,
        end_local_hour
    from assigned
)

select * from final
