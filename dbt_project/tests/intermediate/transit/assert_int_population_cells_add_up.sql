-- Each neighborhood's cells hold its whole population (to a hundredth of a resident).
with cells as (
    select neighborhood_id, sum(population) as cell_population
    from {{ ref('int_population_cells') }}
    group by neighborhood_id
)

select neighborhoods.neighborhood_id, neighborhoods.population, cells.cell_population
from {{ ref('stg_city__neighborhoods') }} as neighborhoods
left join cells on neighborhoods.neighborhood_id = cells.neighborhood_id
where abs(coalesce(cells.cell_population, 0) - neighborhoods.population) > 0.01
