"""Operations DAGs: feed freshness against the contracts' SLAs, and daily maintenance.

airflow dag file: wiring only (the words "airflow" and "dag" let the DAG processor's safe mode parse it).
"""

from mobility.orchestration import freshness_dag, maintenance_dag

feed_freshness = freshness_dag()
maintenance = maintenance_dag()
