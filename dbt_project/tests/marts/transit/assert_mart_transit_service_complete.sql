-- One row per neighborhood x local day x hour of the analysed period: no key twice, none missing.
with expected as (
    select
        (select count(*) from {{ ref('stg_city__neighborhoods') }})
        * (select coalesce(max(last_day - first_day + 1), 0) from {{ ref('int_transit_period') }})
        * 24 as n
),

actual as (
    select count(*) as n, count(distinct (neighborhood_id, local_date, local_hour)) as n_keys
    from {{ ref('mart_transit_service') }}
)

select actual.n, actual.n_keys, expected.n as expected_n
from actual cross join expected
where actual.n <> expected.n or actual.n_keys <> actual.n
