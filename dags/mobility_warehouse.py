"""The warehouse DAG: dbt build -> publish gate -> publish, scheduled on the ingest Assets."""

from mobility.orchestration import warehouse_dag

warehouse = warehouse_dag()
