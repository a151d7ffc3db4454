{#
  Read a lake source, or an empty relation of the same shape when no file matches its glob yet.

  DuckDB's read_parquet / read_json_auto fail on a glob that matches nothing ("No files found"),
  which would break a first build before any partner has delivered. The source declares its
  `lake_glob` and its `empty_columns` in meta; we check the glob at run time with glob().
#}
{% macro lake_source(source_name, table_name) %}
  {%- set relation = source(source_name, table_name) -%}
  {#- the graph is empty while parsing: the source() call above is all parsing needs -#}
  {%- set meta = lake_source_meta(source_name, table_name) if execute else {'empty_columns': {}} -%}
  {%- if execute and lake_has_files(meta['lake_glob']) -%}
    select * from {{ relation }}
  {%- elif not execute -%}
    select 1
  {%- else -%}
    select
    {%- for name, type in meta['empty_columns'].items() %}
      cast(null as {{ type }}) as {{ name }}{{ "," if not loop.last }}
    {%- endfor %}
    where false
  {%- endif -%}
{% endmacro %}


{% macro lake_source_meta(source_name, table_name) %}
  {%- for node in graph.sources.values() -%}
    {%- if node.source_name == source_name and node.name == table_name -%}
      {%- set meta = {} -%}
      {%- do meta.update(node.source_meta or {}) -%}
      {%- do meta.update(node.meta or {}) -%}
      {%- do meta.update(node.config.get('meta', {}) or {}) -%}
      {{ return(meta) }}
    {%- endif -%}
  {%- endfor -%}
  {{ exceptions.raise_compiler_error("unknown source " ~ source_name ~ "." ~ table_name) }}
{% endmacro %}


{% macro lake_has_files(glob_pattern) %}
  {%- set result = run_query("select count(*) from glob(" ~ sql_string(glob_pattern) ~ ")") -%}
  {{ return(result.columns[0].values()[0] > 0) }}
{% endmacro %}


{#
  A lake source of small JSON files, one record each (the manifests), read file by file: the
  records of `files` (a list of paths; none: every file of the source's glob) with the columns the
  source's meta declares (`empty_columns`), each with its file's path below the glob's folder
  (e.g. mds_trips/<partner>/<window>__<sha>.json: no server paths in the warehouse) and its
  modification time.
  Models that keep these records incrementally read only the files lake_changed_files names.
#}
{% macro lake_json_records(source_name, table_name, files=none) %}
  {%- set relation = source(source_name, table_name) -%}  {#- for lineage: the files are read below -#}
  {%- set meta = lake_source_meta(source_name, table_name) if execute else {'empty_columns': {}} -%}
  {%- set columns = meta['empty_columns'] -%}
  {%- if not execute -%}
    select 1
  {%- elif (files is none and lake_has_files(meta['lake_glob'])) or files -%}
    {%- set listed = sql_string(meta['lake_glob']) if files is none else sql_list(files) -%}
    select
    {%- for name in columns %}
      records.{{ name }},
    {%- endfor %}
      {{ lake_relative_path('records.filename', source_name, table_name) }} as file_path,
      blobs.last_modified as file_modified_at
    from read_json({{ listed }}, filename = true, columns = {
    {%- for name, type in columns.items() -%}
      '{{ name }}': '{{ type }}'{{ ", " if not loop.last }}
    {%- endfor -%}
    }) as records
    inner join read_blob({{ listed }}) as blobs on blobs.filename = records.filename
  {%- else -%}
    select
    {%- for name, type in columns.items() %}
      cast(null as {{ type }}) as {{ name }},
    {%- endfor %}
      cast(null as varchar) as file_path,
      cast(null as timestamptz) as file_modified_at
    where false
  {%- endif -%}
{% endmacro %}


{#
  The files of a lake source that `relation` (an incremental model of lake_json_records, with the
  columns file_path, file_modified_at and read_at) has not read as they are now: new files, files
  rewritten since (landing the same bytes again rewrites a manifest in place), and, as DuckDB
  gives modification times to the second, any file modified in or after the second the last read
  began. Sorted, for a stable compiled query.
#}
{% macro lake_changed_files(relation, source_name, table_name) %}
  {%- set glob_pattern = lake_source_meta(source_name, table_name)['lake_glob'] -%}
  {%- if not lake_has_files(glob_pattern) -%}{{ return([]) }}{%- endif -%}
  {%- set found = run_query(
      "select b.filename from read_blob(" ~ sql_string(glob_pattern) ~ ") as b"
      ~ " where not exists (select 1 from " ~ relation ~ " as r where r.file_path = "
      ~ lake_relative_path('b.filename', source_name, table_name) ~ " and r.file_modified_at = b.last_modified)"
      ~ " or b.last_modified >= (select date_trunc('second', max(read_at)) from " ~ relation ~ ")"
      ~ " order by 1") -%}
  {{ return(found.columns[0].values() | list) }}
{% endmacro %}


{#- A post-hook for models of lake_json_records: forget the records of files no longer in the lake. -#}
{% macro lake_forget_removed_files(relation, source_name, table_name) %}
  {%- if not execute -%}
    select 1  {#- hooks are rendered while parsing too, when the graph is empty -#}
  {%- else -%}
    delete from {{ relation }}
    where file_path not in (
        select {{ lake_relative_path('file', source_name, table_name) }}
        from glob({{ sql_string(lake_source_meta(source_name, table_name)['lake_glob']) }}))
  {%- endif -%}
{% endmacro %}


{#- `column` (a path the source's glob matched) cut to the part its wildcards match, e.g.
    partner=<id>/<window>.parquet in a bronze dataset: no server paths in the warehouse, and the
    same names whatever the workdir. -#}
{% macro lake_relative_path(column, source_name, table_name) %}
  {%- if not execute -%}
    {{ column }}  {#- while parsing the graph is empty; the name is all dbt needs then -#}
  {%- else -%}
    {%- set glob_pattern = lake_source_meta(source_name, table_name)['lake_glob'] -%}
    {%- set depth = glob_pattern[glob_pattern.split('*')[0] | length:].count('/') -%}
    regexp_extract({{ column }}, '[^/]+{{ '(/[^/]+){' ~ depth ~ '}' if depth else '' }}$')
  {%- endif -%}
{% endmacro %}
