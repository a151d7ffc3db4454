"""Airflow DAGs generated from the partner registry.

The DAG files in `dags/` only call these factories. Each task calls one function of
`mobility.pipeline`, imported inside the task so parsing a DAG file stays cheap.
One DAG per partner feed, on the schedule of its kind; every ingest task emits the Asset of
its feed, and the warehouse DAG is scheduled on the Assets of the event feeds (not on clock
offsets) or, for the status snapshots, once an hour.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, AssetAny, AssetOrTimeSchedule, CronDataIntervalTimetable, CronTriggerTimetable, task

from mobility.registry import Feed, Partner, load_registry

log = logging.getLogger(__name__)

CRON = {"every_5_minutes": "*/5 * * * *", "hourly": "0 * * * *", "daily": "0 0 * * *"}
# A file-drop run starts when its date ends and then waits for the file: it lands within one
# poke of the file's arrival, and fails (alerting the office) if none arrives within a day.
FILE_POKE_INTERVAL_S = 300
FILE_WAIT_TIMEOUT_S = 24 * 3600
START_DATE = pendulum.datetime(2026, 11, 1, tz="UTC")
WAREHOUSE_POOL = "warehouse"  # one slot: DuckDB allows one writer to the warehouse file

# Feed kinds whose ingest step exists (mobility.pipeline.INGEST_STEPS); others get no DAG.
SUPPORTED_FEEDS = ("mds_trips", "mds_events", "mds_vehicle_status", "gbfs", "gtfs_schedule", "ridehail_trips", "bikeshare_trips")
# Feeds whose every batch triggers a warehouse build. The status snapshots (GBFS, MDS vehicle
# status) feed the availability marts too, but land every five minutes: rebuilding after each
# would keep the warehouse busy, so the build also runs hourly and picks up what landed since.
WAREHOUSE_INPUTS = ("mds_trips", "ridehail_trips", "bikeshare_trips", "gtfs_schedule")
WAREHOUSE_HOURLY_CRON = "30 * * * *"  # between the hourly MDS windows' landings

def _alert(context) -> None:
    """on_failure_callback: alert the office (webhook from the environment) with the reason."""
    from mobility.operations import alert_on_failure

    alert_on_failure(context)


DEFAULT_ARGS = {
    "owner": "mobility-office",
    "on_failure_callback": _alert,
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
}


def feed_asset(partner_id: str, feed: str) -> Asset:
    return Asset(name=f"bronze.{feed}.{partner_id}", uri=f"mobility://lake/bronze/{feed}/{partner_id}")


def ingest_dag_id(partner_id: str, feed: str) -> str:
    return f"ingest__{partner_id}__{feed}"


def cron(feed: Feed) -> str:
    """The cron expression of a feed's schedule."""
    return CRON[feed.schedule]


def _ingest_dag(partner: Partner, feed: Feed) -> DAG:
    asset = feed_asset(partner.id, feed.feed)
    with DAG(
        dag_id=ingest_dag_id(partner.id, feed.feed),
        description=f"{partner.name}: {feed.feed} over {feed.protocol}, {feed.schedule}",
        doc_md=(
            f"Pulls **{feed.feed}** from **{partner.name}** ({feed.protocol}) one window per run, "
            f"checks it against contract `{feed.contract}` and lands it in the lake. "
            f"Emits asset `{asset.name}`; generated from `partners.yaml`."
        ),
        schedule=CronDataIntervalTimetable(cron(feed), timezone="UTC"),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=4,
        default_args=DEFAULT_ARGS,
        tags=["ingest", partner.id, feed.feed, feed.protocol],
    ) as dag:

        @task(task_id="ingest_window", outlets=[asset])
        def ingest_window(partner_id: str, feed_kind: str, data_interval_start=None) -> dict:
            from mobility.pipeline import ingest_window_or_fail

            return ingest_window_or_fail(partner_id, feed_kind, data_interval_start)

        ingest = ingest_window(partner.id, feed.feed)
        if feed.protocol == "file_drop":

            @task.sensor(task_id="wait_for_file", poke_interval=FILE_POKE_INTERVAL_S,
                         timeout=FILE_WAIT_TIMEOUT_S, mode="reschedule")
            def wait_for_file(partner_id: str, feed_kind: str, data_interval_start=None) -> bool:
                from mobility.pipeline import drop_file_arrived

                return drop_file_arrived(partner_id, feed_kind, data_interval_start)

            wait_for_file(partner.id, feed.feed) >> ingest
    return dag


def ingest_dags() -> dict[str, DAG]:
    """One DAG per supported (partner, feed) in the registry, keyed by dag_id."""
    registry = load_registry()
    dags = {}
    for partner, feed in registry.feeds():
        if feed.feed not in SUPPORTED_FEEDS:
            log.debug("no ingest DAG yet for %s/%s", partner.id, feed.feed)
            continue
        dag = _ingest_dag(partner, feed)
        dags[dag.dag_id] = dag
    return dags


def warehouse_dag() -> DAG:
    registry = load_registry()
    assets = [feed_asset(p.id, f.feed) for p, f in registry.feeds() if f.feed in WAREHOUSE_INPUTS]
    schedule = AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(WAREHOUSE_HOURLY_CRON, timezone="UTC"),
        assets=AssetAny(*assets),  # any partner's new batch triggers a build
    )
    with DAG(
        dag_id="warehouse",
        description="dbt build -> publish gate -> publish, whenever a feed lands a batch, and hourly",
        doc_md=(
            "Builds the DuckDB warehouse with dbt when any trip, file-drop or GTFS ingest DAG lands "
            "a batch, and hourly for the status snapshots (GBFS, MDS vehicle status), runs the "
            "Great Expectations publish gate on the marts, and publishes the read-only analyst "
            "warehouse only if the gate passes; the last good publication stays otherwise."
        ),
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, "retries": 1},
        tags=["warehouse"],
    ) as dag:

        @task(task_id="dbt_build", pool=WAREHOUSE_POOL)
        def dbt_build() -> None:
            from mobility.pipeline import build_warehouse

            build_warehouse()

        @task(task_id="publish_gate", pool=WAREHOUSE_POOL)
        def publish_gate() -> dict:
            from mobility.pipeline import gate_marts

            return gate_marts(enforce=True)

        @task(task_id="publish", pool=WAREHOUSE_POOL)
        def publish() -> dict:
            from mobility.pipeline import publish_marts

            return publish_marts()

        dbt_build() >> publish_gate() >> publish()
    return dag


def _operations_dag(dag_id: str, description: str, doc_md: str, schedule: str, **default_args) -> DAG:
    """An office housekeeping DAG: one run at a time, on its data interval, tagged operations."""
    return DAG(
        dag_id=dag_id,
        description=description,
        doc_md=doc_md,
        schedule=CronDataIntervalTimetable(CRON[schedule], timezone="UTC"),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, **default_args},
        tags=["operations"],
    )


def freshness_dag() -> DAG:
    """One check per feed, hourly: fails (and so alerts) when a feed is later than its SLA."""
    registry = load_registry()
    with _operations_dag(
        "feed_freshness",
        "Is every partner feed within its contract's delivery SLA?",
        "Hourly, for every partner feed, compares the end of the newest good batch with the "
        "latency SLA of the feed's contract. A late feed fails its task, which alerts the office "
        "through `MOBILITY_ALERT_WEBHOOK` (chat or e-mail gateway).",
        "hourly",
        retries=0,  # lateness is a verdict, not a transient fault
    ) as dag:

        @task(task_id="check")
        def check(partner_id: str, feed_kind: str, data_interval_end=None) -> dict:
            from mobility.operations import check_freshness

            return check_freshness(partner_id, feed_kind, now=data_interval_end)

        for partner, feed in registry.feeds():
            if feed.feed in SUPPORTED_FEEDS:
                check.override(task_id=f"{partner.id}__{feed.feed}")(partner.id, feed.feed)
    return dag


def maintenance_dag() -> DAG:
    """Daily housekeeping: raw-archive retention and the contract-conformance report."""
    with _operations_dag(
        "maintenance",
        "Purge raw archives past retention; write the conformance report per partner",
        "Deletes raw partner bytes older than `raw_retention_days` (partners.yaml; the "
        "pseudonymised rows stay) and writes `reports/conformance/<date>.json`: batches by "
        "outcome, rows landed and quarantined, and the contract rules each partner broke.",
        "daily",
    ) as dag:

        @task(task_id="purge_raw_archive")
        def purge(data_interval_end=None) -> int:
            from mobility.operations import purge_raw
            from mobility.settings import Workdir

            days = load_registry().consortium.raw_retention_days
            return len(purge_raw(Workdir.resolve(), retention_days=days, now=data_interval_end))

        @task(task_id="conformance_report")
        def conformance(data_interval_end=None) -> None:
            from mobility.operations import conformance_report
            from mobility.settings import Workdir

            conformance_report(Workdir.resolve(), now=data_interval_end)

        purge() >> conformance()
    return dag
