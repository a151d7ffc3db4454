"""DAG integrity: every DAG file imports, and the wiring matches the registry."""

from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[1] / "dags"
DAG_FILES = sorted(DAGS_DIR.glob("*.py"))


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.dags, f"no DAG found in {DAGS_DIR}: {bag.import_errors}"
    return bag


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_without_errors(dagbag, dag_file):
    errors = {k: v for k, v in dagbag.import_errors.items() if Path(k).name == dag_file.name}
    assert not errors, f"{dag_file.name} failed to import: {errors}"


def test_one_ingest_dag_per_supported_registry_feed(dagbag):
    from mobility.orchestration import SUPPORTED_FEEDS, ingest_dag_id
    from mobility.registry import load_registry

    expected = {ingest_dag_id(p.id, f.feed) for p, f in load_registry().feeds() if f.feed in SUPPORTED_FEEDS}
    found = {d for d in dagbag.dag_ids if d.startswith("ingest__")}
    assert found == expected


def test_ingest_dags_are_hourly_with_retries_and_emit_assets(dagbag):
    for dag_id in (d for d in dagbag.dag_ids if d.startswith("ingest__")):
        dag = dagbag.dags.get(dag_id)
        assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"  # the run covers its hour
        assert dag.timetable.expression == "0 * * * *"
        assert dag.doc_md, f"{dag_id} has no documentation"
        (task,) = dag.tasks
        assert task.retries >= 3, f"{dag_id}: transient partner faults need retries"
        assert task.retry_exponential_backoff
        partner, feed = dag_id.split("__")[1:]
        assert [o.uri for o in task.outlets] == [f"mobility://lake/bronze/{feed}/{partner}"]


def test_warehouse_dag_is_scheduled_on_the_ingest_assets_with_one_writer(dagbag):
    dag = dagbag.dags.get("warehouse")
    ingest_assets = {
        o.uri for d in dagbag.dag_ids if d.startswith("ingest__") for t in dagbag.dags[d].tasks for o in t.outlets
    }
    condition = dag.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"  # any partner's new batch triggers a build
    assert {a.uri for a in condition.objects} == ingest_assets
    assert {t.task_id for t in dag.tasks} == {"dbt_build", "publish_gate", "publish"}
    assert all(t.pool == "warehouse" for t in dag.tasks)
    assert dag.get_task("publish").upstream_task_ids == {"publish_gate"}
    assert dag.get_task("publish_gate").upstream_task_ids == {"dbt_build"}
