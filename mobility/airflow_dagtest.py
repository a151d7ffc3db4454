"""Run the consortium's real Airflow DAGs in one process with `dag.test()` (embedded mode).

For a laptop or a test: no scheduler or executor, but the same DAG files, tasks, Assets wiring
and task code as production. Each ingest DAG runs once per hour of the window (its data interval
is that hour), then the warehouse DAG runs once, as the Assets the ingests emitted would trigger.
Must run in a process whose AIRFLOW_HOME / DAGS_FOLDER are set before Airflow is imported
(see `mobility.airflow_runtime.airflow_env`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from mobility.settings import DAGS_DIR

# dag.test(logical_date=T) treats T as the run's `run_after`: a data-interval timetable then
# covers the interval that ENDS at T. So a window is run by passing each interval's end.
STEP = {"every_5_minutes": timedelta(minutes=5), "hourly": timedelta(hours=1), "daily": timedelta(days=1)}

log = logging.getLogger(__name__)


def interval_ends(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """The ends of the intervals of length `step` that tile [start, end)."""
    ends, t = [], start + step
    while t <= end:
        ends.append(t)
        t += step
    return ends


def run_window(start: datetime, end: datetime, feeds: tuple[str, ...] | None = None) -> dict[str, dict[str, int]]:
    """Run every ingest DAG (of `feeds`, default all) over each of its intervals in [start, end),
    then the warehouse DAG once.

    Returns run states per DAG id, e.g. {"ingest__scootco__mds_trips": {"success": 24}}.
    """
    from airflow.dag_processing.dagbag import DagBag

    from mobility.orchestration import ingest_dag_id
    from mobility.registry import load_registry

    bag = DagBag(dag_folder=str(DAGS_DIR))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    states: dict[str, dict[str, int]] = {}

    def record(dag_id: str, state: str) -> None:
        states.setdefault(dag_id, {}).setdefault(state, 0)
        states[dag_id][state] += 1

    for partner, feed in load_registry().feeds():
        dag_id = ingest_dag_id(partner.id, feed.feed)
        if dag_id not in bag.dags or (feeds and feed.feed not in feeds):
            continue
        for interval_end in interval_ends(start, end, STEP[feed.schedule]):
            run = bag.dags[dag_id].test(logical_date=interval_end)
            record(dag_id, str(run.state))
    run = bag.dags["warehouse"].test()
    record("warehouse", str(run.state))
    return states


def run_dag(dag_id: str, interval_end: datetime) -> dict[str, str]:
    """Run one DAG once, for its data interval ending at `interval_end`; returns the run's and
    each task's state."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    run = bag.dags[dag_id].test(logical_date=interval_end)
    return {"run": str(run.state), **{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}


def main() -> None:
    """`python -m mobility.airflow_dagtest START END [FEED ...]` (the DAGs over a window) or
    `python -m mobility.airflow_dagtest --dag DAG_ID INTERVAL_END`; prints JSON states.
    Used by `mobility airflow run` and the tests, in a child process configured for Airflow."""
    import json
    import sys

    if sys.argv[1] == "--dag":
        print(json.dumps(run_dag(sys.argv[2], datetime.fromisoformat(sys.argv[3]))))
    else:
        start, end = (datetime.fromisoformat(a) for a in sys.argv[1:3])
        print(json.dumps(run_window(start, end, tuple(sys.argv[3:]) or None)))


if __name__ == "__main__":
    main()
