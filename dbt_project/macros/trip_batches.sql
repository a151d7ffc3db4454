{#- The current batch of every trip-feed window, from the manifests: the latest landed batch of the
    window (a corrected resubmission replaces the window's bronze file). Rejected batches and failed
    fetches land nothing, so they never replace a window's batch. int_trip_batches_current is this
    query; the trip tests' scope (test_scope.sql) runs it too, as the tests may run before that
    table is rebuilt. -#}
{% macro current_trip_batches(manifests) -%}
    select * exclude (landing_rank) from (
        select
            *,
            row_number() over (
                partition by partner_id, feed, window_start_at
                order by finished_at desc, batch_id desc
            ) as landing_rank
        from {{ manifests }}
        where feed in ('mds_trips', 'bikeshare_trips', 'ridehail_trips')
            and outcome in ('accepted', 'partial', 'empty')
    )
    where landing_rank = 1
{%- endmacro %}
