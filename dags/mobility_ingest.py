"""Ingest DAGs, one per partner feed, generated from partners.yaml (see mobility.orchestration).

airflow dag file: wiring only (the words "airflow" and "dag" let the DAG processor's safe mode parse it).
"""

from mobility.orchestration import ingest_dags

globals().update(ingest_dags())
