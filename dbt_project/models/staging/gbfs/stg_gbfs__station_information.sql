-- GBFS station information of each snapshot (where stations are, how many docks), renamed and cast.
with source as (
    {{ lake_source('gbfs', 'station_information') }}
),

renamed as (
    select
        partner_id,
        batch_id,
        cast(station_id as varchar) as station_id,
        name as station_name,
        cast(lat as double) as lat,
        cast(lon as double) as lon,
        cast(capacity as integer) as capacity
    from source
)

select * from renamed
