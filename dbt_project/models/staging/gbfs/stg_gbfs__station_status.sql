-- GBFS station status of each snapshot (bikes and docks), renamed and cast.
with source as (
    {{ lake_source('gbfs', 'station_status') }}
),

renamed as (
    select
        partner_id,
        batch_id,
        cast(station_id as varchar) as station_id,
        cast(num_bikes_available as integer) as num_bikes_available,
        cast(coalesce(num_bikes_disabled, 0) as integer) as num_bikes_disabled,
        cast(num_docks_available as integer) as num_docks_available,
        cast(coalesce(num_docks_disabled, 0) as integer) as num_docks_disabled,
        cast(is_installed as boolean) as is_installed,
        cast(is_renting as boolean) as is_renting,
        cast(is_returning as boolean) as is_returning,
        cast(last_reported as timestamptz) as last_reported_at
    from source
)

select * from renamed
