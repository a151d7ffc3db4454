{#
  Incremental trip marts and fact work on the local days a change touches, read from
  int_trip_batch_days (a small table: one row per batch, mode and day) rather than from the fact.

  The days of a change: a window whose current batch is new (a new day, a late window, a corrected
  resubmission, a window emptied) touches the days of its new batch and of every earlier batch of
  the window (whose rows it replaces). Values found here are inlined as constants so that DuckDB
  skips the other days' row groups of fct_trips (it is ordered by start day) from their min/max.
#}

{% macro _column_values(sql) -%}
    {%- if not execute -%}{{ return([]) }}{%- endif -%}
    {{ return(run_query(sql).columns[0].values() | list) }}
{%- endmacro %}

{# Current trip batches `relation` (fct_trips, int_trip_batch_days) does not hold yet: what this build adds. #}
{% macro new_trip_batch_ids(relation) -%}
    {{ return(_column_values(
        "select batch_id from " ~ ref('int_trip_batches_current')
        ~ " where batch_id not in (select distinct batch_id from " ~ relation ~ ") order by batch_id")) }}
{%- endmacro %}

{#- fct_trips' pre-hook: remove the rows of the windows its new batches replace, on their days only. -#}
{% macro trip_fact_delete_replaced(fact) -%}
    {%- set new_ids = new_trip_batch_ids(fact) -%}
    {%- if not new_ids -%}
        select 1
    {%- else -%}
        {%- set windows = _column_values(
            "select distinct source_window from " ~ ref('int_trip_batches_current')
            ~ " where batch_id in " ~ sql_values(new_ids) ~ " order by 1") -%}
        {%- set days = _column_values(
            "select distinct local_date from " ~ ref('int_trip_batch_days')
            ~ " where source_window in " ~ sql_values(windows) ~ " order by 1") -%}
        {%- set known = days | reject('none') | list -%}
        delete from {{ fact }}
        where source_window in {{ sql_values(windows) }}
            and (
                {%- if known %}
                (start_local_date between cast('{{ known | first }}' as date) and cast('{{ known | last }}' as date)
                    and start_local_date in {{ sql_values(known, 'date') }})
                {%- else %} false{% endif %}
                {%- if known | length < days | length %} or start_local_date is null{% endif %}
            )
    {%- endif -%}
{%- endmacro %}

{#
  The days an incremental trip mart rebuilds, or none to rebuild all of them.

  `relation`: the mart as built so far. `date_kind`: 'start' when the mart's days are trips' start
  days, 'any' when trips count on their start and on their end day. `zero_filled`: the mart holds
  every neighborhood x day x mode of the loaded range, so days entering the range are rebuilt too,
  and a change of modes rebuilds everything. A change of the city's neighborhoods rebuilds
  everything (`neighborhood_columns` are the neighborhood attributes the mart carries, `city_select`
  a query giving them from the mart when its columns are named otherwise).
  Days to rebuild: the days of the windows the latest load changed (int_trip_batch_days), and for
  zero-filled marts the days of the range the mart lacks. Days outside the range are deleted by
  trip_mart_delete_days.
#}
{% macro trip_mart_days(relation, date_kind, zero_filled, neighborhood_columns, city_select=none) -%}
    {%- if not execute or not is_incremental() or var('trip_marts_rebuild_all', false) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set batch_days = ref('int_trip_batch_days') -%}
    {%- set day_filter = 'trips_started > 0' if date_kind == 'start' else '(trips_started > 0 or trips_ended > 0)' -%}
    {#- the city changed: every day's rows carry the old neighborhoods -#}
    {%- set cols = neighborhood_columns | join(', ') -%}
    {%- set mart_city = city_select or ("select distinct " ~ cols ~ " from " ~ relation) -%}
    {%- set city_changed = _column_values(
        "select count(*) from ((" ~ mart_city ~ ") except (select " ~ cols
        ~ " from " ~ ref('stg_city__neighborhoods') ~ "))") -%}
    {%- if city_changed[0] > 0 -%}{{ return(none) }}{%- endif -%}
    {%- set current = "(select d.* from " ~ batch_days ~ " as d inner join " ~ ref('int_trip_batches_current')
        ~ " as c on d.batch_id = c.batch_id)" -%}
    {%- if zero_filled -%}
        {%- set modes_differ = _column_values(
            "select count(*) from ((select distinct mode from " ~ relation ~ ") except (select distinct mode from "
            ~ current ~ " where mode is not null)) union all select count(*) from ((select distinct mode from "
            ~ current ~ " where mode is not null) except (select distinct mode from " ~ relation ~ "))") -%}
        {%- if modes_differ | sum > 0 -%}{{ return(none) }}{%- endif -%}
        {%- set city_added = _column_values(
            "select count(*) from ((select neighborhood_id from " ~ ref('stg_city__neighborhoods')
            ~ ") except (select distinct neighborhood_id from " ~ relation ~ "))") -%}
        {%- if city_added[0] > 0 -%}{{ return(none) }}{%- endif -%}
    {%- endif -%}
    {%- set changed_sql = "select distinct local_date from " ~ batch_days ~ " where " ~ day_filter
        ~ " and local_date is not null and source_window in (select source_window from " ~ batch_days
        ~ " where loaded_at = (select max(loaded_at) from " ~ batch_days ~ "))" -%}
    {%- if zero_filled -%}
        {#- days of the range (first to last day with a trip) the mart lacks, e.g. a gap a late day fills -#}
        {%- set missing_sql = "select cast(t.day as date) from (select min(local_date) as first_day, max(local_date)"
            ~ " as last_day from " ~ current ~ " where " ~ day_filter ~ ") as b, range(b.first_day, b.last_day"
            ~ " + interval 1 day, interval 1 day) as t(day) where b.first_day is not null except select distinct trip_date from "
            ~ relation -%}
        {#- parenthesised: union and except bind left to right, and the except is the missing days' only -#}
        {%- set changed_sql = changed_sql ~ " union (" ~ missing_sql ~ ")" -%}
    {%- endif -%}
    {{ return(_column_values("select * from (" ~ changed_sql ~ ") order by 1") | map('string') | list) }}
{%- endmacro %}

{#- A mart's pre-hook: delete the days it rebuilds, and (zero-filled) the days no trip covers any more. -#}
{% macro trip_mart_delete_days(relation, date_kind, zero_filled, neighborhood_columns, city_select=none) -%}
    {%- if not is_incremental() -%}
        select 1
    {%- else -%}
        {%- set days = trip_mart_days(relation, date_kind, zero_filled, neighborhood_columns, city_select) -%}
        {%- set day_filter = 'trips_started > 0' if date_kind == 'start' else '(trips_started > 0 or trips_ended > 0)' -%}
        delete from {{ relation }}
        where {% if days is none %}true{% else %}trip_date in {{ sql_values(days, 'date') }}
        {%- if zero_filled %}
            or trip_date not between
                coalesce((select min(d.local_date) {{ _current_days(day_filter) }}), cast('9999-12-31' as date))
                and coalesce((select max(d.local_date) {{ _current_days(day_filter) }}), cast('0001-01-01' as date))
        {%- endif %}{% endif %}
    {%- endif -%}
{%- endmacro %}

{% macro _current_days(day_filter) -%}
    from {{ ref('int_trip_batch_days') }} as d
    inner join {{ ref('int_trip_batches_current') }} as c on d.batch_id = c.batch_id
    where {{ day_filter }}
{%- endmacro %}

{#- `column in (the days)`, or true when every day is rebuilt -#}
{% macro trip_days_filter(column, days) -%}
    {%- if days is none -%}true{%- elif not days -%}false{%- else -%}
        ({{ column }} between {{ sql_values([days | first], 'date') }} and {{ sql_values([days | last], 'date') }}
        and {{ column }} in {{ sql_values(days, 'date') }})
    {%- endif -%}
{%- endmacro %}

{#- the neighborhoods (id, name) mart_od_flows carries, at either end of a flow -#}
{% macro od_flow_neighborhoods(relation) -%}
    select distinct origin_neighborhood_id, origin_neighborhood_name from {{ relation }}
    union select distinct destination_neighborhood_id, destination_neighborhood_name from {{ relation }}
    where destination_neighborhood_id is not null
{%- endmacro %}

{#
  The days mart_first_last_mile rebuilds, or none for all: as trip_mart_days (start days of the
  windows the latest load changed, and days of the analysed period the mart lacks), and all days
  when the transit service changed (a GTFS version first used in the latest load, or since) or
  the city did.
#}
{% macro first_last_mile_days(relation) -%}
    {%- if not execute or not is_incremental() or var('trip_marts_rebuild_all', false) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set batch_days = ref('int_trip_batch_days') -%}
    {%- set cols = 'neighborhood_id, neighborhood_name, income_quintile, equity_zone' -%}
    {%- set changed = _column_values(
        "select count(*) from ((select distinct " ~ cols ~ " from " ~ relation ~ ") except (select " ~ cols
        ~ " from " ~ ref('stg_city__neighborhoods') ~ ")) union all select count(*) from ((select neighborhood_id from "
        ~ ref('stg_city__neighborhoods') ~ ") except (select distinct neighborhood_id from " ~ relation
        ~ ")) union all select count(*) from " ~ ref('int_transit_feed_versions')
        ~ " where loaded_at >= coalesce((select max(loaded_at) from " ~ batch_days ~ "), cast('-infinity' as timestamptz))") -%}
    {%- if changed | sum > 0 -%}{{ return(none) }}{%- endif -%}
    {%- set days_sql = "select distinct local_date from " ~ batch_days ~ " where trips_started > 0"
        ~ " and local_date is not null and source_window in (select source_window from " ~ batch_days
        ~ " where loaded_at = (select max(loaded_at) from " ~ batch_days ~ "))"
        ~ " union (select cast(t.day as date) from " ~ ref('int_transit_period')
        ~ " as p, range(p.first_day, p.last_day + 1, interval 1 day) as t(day)"
        ~ " except select distinct trip_date from " ~ relation ~ ")" -%}
    {{ return(_column_values("select * from (" ~ days_sql ~ ") order by 1") | map('string') | list) }}
{%- endmacro %}

{#- mart_first_last_mile's pre-hook: delete the days it rebuilds and those outside the analysed period -#}
{% macro first_last_mile_delete_days(relation) -%}
    {%- if not is_incremental() -%}
        select 1
    {%- else -%}
        {%- set days = first_last_mile_days(relation) -%}
        delete from {{ relation }}
        where {% if days is none %}true{% else %}trip_date in {{ sql_values(days, 'date') }}
            or trip_date not between
                coalesce((select first_day from {{ ref('int_transit_period') }}), cast('9999-12-31' as date))
                and coalesce((select last_day from {{ ref('int_transit_period') }}), cast('0001-01-01' as date))
        {%- endif %}
    {%- endif -%}
{%- endmacro %}
