-- One record per landed batch, with window and processing times as timestamps.
-- A table, unlike the other staging models: the lake holds one small JSON file per batch, and
-- every read of a view would open all of them again (the trip batches, feed health, compliance
-- and this model's tests read it). Incremental, for the same reason: a build reads the files new
-- or rewritten since the last one (by path and modification time) and replaces their records;
-- the post-hook forgets the records of files taken out of the lake.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='file_path',
    on_schema_change='fail',
    post_hook="{{ lake_forget_removed_files(this, 'lake', 'manifests') }}"
) }}
{%- set files = lake_changed_files(this, 'lake', 'manifests') if execute and is_incremental() else none %}

with source as (
    {{ lake_json_records('lake', 'manifests', files) }}
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
        cast(finished_at as timestamptz) as finished_at,
        file_path,
        file_modified_at,
        cast('{{ run_started_at.isoformat() }}' as timestamptz) as read_at
    from source
)

select * from renamed
