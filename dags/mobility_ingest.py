"""Ingest DAGs, one per partner feed, generated from partners.yaml (see mobility.orchestration)."""

from mobility.orchestration import ingest_dags

globals().update(ingest_dags())
