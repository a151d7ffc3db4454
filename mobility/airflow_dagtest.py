"""Run the consortium's real Airflow DAGs in one process with `dag.test()` (embedded mode).

For a laptop or a test: no scheduler or executor, but the same DAG files, tasks, Assets wiring
and task code as production. Each ingest DAG runs once per hour of the window (its data interval
is that hour), then the warehouse DAG runs once, as the Assets the ingests emitted would trigger.
Must run in a process whose AIRFLOW_HOME / DAGS_FOLDER are set before Airflow is imported
(see `mobility.airflow_runtime.airflow_env`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from mobility.pipeline import hours
from mobility.settings import DAGS_DIR

log = logging.getLogger(__name__)


def run_window(start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """Run every ingest DAG for each hour in [start, end), then the warehouse DAG once.

    Returns run states per DAG id, e.g. {"ingest__scootco__mds_trips": {"success": 24}}.
    """
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    states: dict[str, dict[str, int]] = {}

    def record(dag_id: str, state: str) -> None:
        states.setdefault(dag_id, {}).setdefault(state, 0)
        states[dag_id][state] += 1

    ingest_ids = sorted(d for d in bag.dags if d.startswith("ingest__"))
    for hour in hours(start, end):
        for dag_id in ingest_ids:
            run = bag.dags[dag_id].test(logical_date=hour)
            record(dag_id, str(run.state))
    run = bag.dags["warehouse"].test()
    record("warehouse", str(run.state))
    return states


def run_dag(dag_id: str, logical_date: datetime) -> dict[str, str]:
    """Run one DAG once for `logical_date`; returns the run state and each task's state."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    run = bag.dags[dag_id].test(logical_date=logical_date)
    return {"run": str(run.state), **{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}


def main() -> None:
    """`python -m mobility.airflow_dagtest START END` (every DAG over a window) or
    `python -m mobility.airflow_dagtest --dag DAG_ID LOGICAL_DATE`; prints JSON states.
    Used by `mobility airflow run` and the tests, in a child process configured for Airflow."""
    import json
    import sys

    if sys.argv[1] == "--dag":
        print(json.dumps(run_dag(sys.argv[2], datetime.fromisoformat(sys.argv[3]))))
    else:
        start, end = (datetime.fromisoformat(a) for a in sys.argv[1:3])
        print(json.dumps(run_window(start, end)))


if __name__ == "__main__":
    main()
