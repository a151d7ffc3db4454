-- Neighborhoods with their geometry parsed from WKT (WGS84 lon/lat).
with source as (
    select * from {{ source('city', 'neighborhoods') }}
),

renamed as (
    select
        cast(neighborhood_id as integer) as neighborhood_id,
        name as neighborhood_name,
        cast(population as bigint) as population,
        cast(income as double) as income,
        cast(income_quintile as tinyint) as income_quintile,
        cast(equity_zone as boolean) as equity_zone,
        cast(area_km2 as double) as area_km2,
        st_geomfromtext(geometry_wkt) as geometry
    from source
)

select * from renamed
