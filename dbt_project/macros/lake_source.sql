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
  {%- set result = run_query("select count(*) from glob('" ~ glob_pattern | replace("'", "''") ~ "')") -%}
  {{ return(result.columns[0].values()[0] > 0) }}
{% endmacro %}
