-- One row per partner x feed x local day.
select partner_id, feed, local_date, count(*) as n_rows
from {{ ref('mart_feed_health') }}
group by partner_id, feed, local_date
having count(*) > 1
