-- One record per landed batch, with window and processing times as timestamps.
-- A table, unlike the other staging models: the lake holds one small JSON file per batch, and a
-- view would parse all of them again on every read (the trip batches, feed health, compliance
-- and this model's tests read it).
{{ config(materialized='table') }}
with source as (
    {{ lake_source('lake', 'manifests') }}
),

renamed as (
    select
        batch_id,
        partner_id,
        feed,
        cast(window_start as timestamptz) as window_start_at,
        cast(window_end as timestamptz) as window_end_at,
        contract,
        contract_version,
        raw_path,
        raw_sha256,
        cast(rows_received as bigint) as rows_received,
        cast(rows_accepted as bigint) as rows_accepted,
        cast(rows_rejected as bigint) as rows_rejected,
        outcome,
        error,
        cast(started_at as timestamptz) as started_at,
        cast(finished_at as timestamptz) as finished_at
    from source
)

select * from renamed
