"""The warehouse DAG: dbt build -> publish gate -> publish, scheduled on the ingest Assets.

airflow dag file: wiring only (the words "airflow" and "dag" let the DAG processor's safe mode parse it).
"""

from mobility.orchestration import warehouse_dag

warehouse = warehouse_dag()
