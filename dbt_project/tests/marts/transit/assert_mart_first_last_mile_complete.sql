-- One row per neighborhood x local day of the analysed period; the parts never exceed the whole.
with expected as (
    select
        (select count(*) from {{ ref('stg_city__neighborhoods') }})
        * (select coalesce(max(last_day - first_day + 1), 0) from {{ ref('int_transit_period') }}) as n
),

actual as (
    select
        count(*) as n,
        count(distinct (neighborhood_id, trip_date)) as n_keys,
        count(*) filter (where first_last_mile_trips > micromobility_trips
            or trips_starting_near_frequent_stop > first_last_mile_trips
            or trips_ending_near_frequent_stop > first_last_mile_trips) as inconsistent
    from {{ ref('mart_first_last_mile') }}
)

select actual.*, expected.n as expected_n
from actual cross join expected
where actual.n <> expected.n or actual.n_keys <> actual.n or actual.inconsistent > 0
