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


CRON_OF_SCHEDULE = {"every_5_minutes": "*/5 * * * *", "hourly": "0 * * * *", "daily": "0 0 * * *"}


def test_ingest_dags_run_on_their_feeds_schedule_with_retries_and_emit_assets(dagbag):
    from mobility.registry import load_registry

    registry = load_registry()
    for dag_id in (d for d in dagbag.dag_ids if d.startswith("ingest__")):
        dag = dagbag.dags.get(dag_id)
        partner, feed = dag_id.split("__")[1:]
        spec = registry.partner(partner).feed(feed)
        assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"  # the run covers its window
        expected = CRON_OF_SCHEDULE[spec.schedule]
        assert dag.timetable.expression == expected, f"{dag_id}: {spec.schedule} feed on {dag.timetable.expression}"
        assert dag.doc_md, f"{dag_id} has no documentation"
        task = dag.get_task("ingest_window")
        assert task.retries >= 3, f"{dag_id}: transient partner faults need retries"
        assert task.retry_exponential_backoff
        assert [o.uri for o in task.outlets] == [f"mobility://lake/bronze/{feed}/{partner}"]


def test_warehouse_dag_is_scheduled_on_the_ingest_assets_or_hourly_with_one_writer(dagbag):
    from mobility.orchestration import WAREHOUSE_INPUTS

    dag = dagbag.dags.get("warehouse")
    # the assets emitted by the ingest DAGs of the feeds dbt models (not e.g. 5-minute GBFS)
    ingest_assets = {
        o.uri for d in dagbag.dag_ids if d.startswith("ingest__") and d.split("__")[2] in WAREHOUSE_INPUTS
        for t in dagbag.dags[d].tasks for o in t.outlets
    }
    from mobility.registry import load_registry

    assert len(ingest_assets) == len([f for _, f in load_registry().feeds() if f.feed in WAREHOUSE_INPUTS]) >= 2
    condition = dag.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"  # any partner's new batch triggers a build
    assert {a.uri for a in condition.objects} == ingest_assets
    # status snapshots land every 5 minutes and trigger nothing: an hourly build picks them up
    supply = {f.feed for _, f in load_registry().feeds()} & {"gbfs", "mds_vehicle_status"}
    assert supply and not supply & set(WAREHOUSE_INPUTS)
    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert dag.timetable.timetable.expression == "30 * * * *"
    assert {t.task_id for t in dag.tasks} == {"dbt_build", "publish_gate", "publish"}
    assert all(t.pool == "warehouse" for t in dag.tasks)
    assert dag.get_task("publish").upstream_task_ids == {"publish_gate"}
    assert dag.get_task("publish_gate").upstream_task_ids == {"dbt_build"}


def test_every_dag_alerts_on_failure_and_is_documented(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md, f"{dag_id} has no documentation"
        for t in dag.tasks:
            assert t.on_failure_callback, f"{dag_id}.{t.task_id} fails silently"


def test_freshness_dag_checks_every_ingested_feed(dagbag):
    from mobility.orchestration import SUPPORTED_FEEDS
    from mobility.registry import load_registry

    expected = {f"{p.id}__{f.feed}" for p, f in load_registry().feeds() if f.feed in SUPPORTED_FEEDS}
    assert {t.task_id for t in dagbag.dags["feed_freshness"].tasks} == expected
    assert all(t.retries == 0 for t in dagbag.dags["feed_freshness"].tasks)  # lateness is a verdict


def test_file_drop_dags_wait_for_the_file_before_landing(dagbag):
    from mobility.registry import load_registry

    for partner, feed in load_registry().feeds():
        if feed.protocol != "file_drop":
            continue
        dag = dagbag.dags[f"ingest__{partner.id}__{feed.feed}"]
        sensor = dag.get_task("wait_for_file")
        assert sensor.mode == "reschedule"  # a waiting sensor holds no worker slot
        assert dag.get_task("ingest_window").upstream_task_ids == {"wait_for_file"}
