"""Production mode for real: PostgreSQL metadata, CeleryExecutor on Redis, separate processes.

A fresh PostgreSQL database and a Redis DB number of their own, then the API server (workers
reach the execution API through it), the scheduler, the DAG processor, the triggerer and one
Celery worker as child processes, the partner simulator and a generated city. The ingest DAGs
are backfilled for one simulated day and every run must succeed, the warehouse DAG then builds,
gates and publishes, and the publication must equal `mobility demo`'s for that day; then a worker
is SIGKILLed while an ingest task waits on a slow partner, and the retried task must store
every row of that hour exactly once. Processes are always stopped and the database dropped.

Needs PostgreSQL (MOBILITY_TEST_PG, default host=127.0.0.1 user=postgres, trust auth) and
Redis (MOBILITY_TEST_REDIS, default redis://127.0.0.1:6379, DB 13); skips, saying so, without.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from mobility.settings import PROJECT_ROOT, Workdir

log = logging.getLogger(__name__)

PG_DSN = os.environ.get("MOBILITY_TEST_PG", "host=127.0.0.1 port=5432 user=postgres")
REDIS_URL = os.environ.get("MOBILITY_TEST_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("MOBILITY_TEST_REDIS_DB", "13"))  # apart from DB 0 of anything else
DAY = datetime(2026, 11, 2, tzinfo=timezone.utc)
HOURS = 24  # one simulated day, backfilled hour by hour
KILL_HOUR = DAY + timedelta(days=1, hours=5)  # outside the backfilled day
INGEST_DAGS = ("ingest__scootco__mds_trips", "ingest__zoomride__mds_trips")
SLOW_PARTNER_S = 25  # the partner's answer takes this long: the worker is killed meanwhile (< client timeout 30 s)


def test_local_env_is_sqlite_and_local_executor_under_the_workdir(tmp_path):
    from mobility.airflow_runtime import airflow_env
    from mobility.settings import DAGS_DIR

    wd = Workdir.resolve(tmp_path)
    env = airflow_env(wd, "local", api_port=18080)
    assert env["AIRFLOW_HOME"] == str(wd.airflow_home)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{wd.airflow_home}/airflow.db"  # absolute
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(DAGS_DIR)
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["MOBILITY_WORKDIR"] == str(wd.root)


def test_production_env_is_postgres_celery_redis(tmp_path):
    from mobility.airflow_runtime import airflow_env

    wd = Workdir.resolve(tmp_path)
    url = "postgresql+psycopg2://airflow@db/airflow"
    env = airflow_env(wd, "production", sql_alchemy_conn=url, broker_url="redis://cache:6379/2")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://cache:6379/2"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{url}"
    with pytest.raises(ValueError):
        airflow_env(wd, "production")  # no metadata database given


def test_init_stores_only_present_credentials_and_never_on_the_command_line(tmp_path, monkeypatch):
    from mobility import airflow_runtime

    token = "s3cret-token-value"
    calls: list[list[str]] = []

    def fake_run(cmd, env, what, timeout=300):
        calls.append(cmd)
        assert env["SCOOTCO_MDS_TOKEN"] == token  # the child reads it from its environment
        return '{"pool": "warehouse", "connections": ["scootco_mds_token"]}' if "-c" in cmd else ""

    monkeypatch.setattr(airflow_runtime, "_run", fake_run)
    monkeypatch.setenv("SCOOTCO_MDS_TOKEN", token)
    monkeypatch.delenv("ZOOMRIDE_MDS_CLIENT_SECRET", raising=False)
    result = airflow_runtime.init_airflow(Workdir.resolve(tmp_path))
    migrate, configure = calls
    assert migrate[-2:] == ["db", "migrate"]
    assert configure[-1] == "SCOOTCO_MDS_TOKEN" and "ZOOMRIDE_MDS_CLIENT_SECRET" not in configure
    assert all(token not in arg for cmd in calls for arg in cmd)
    assert result["connections"] == ["scootco_mds_token"]
    password_file = Path(result["admin_password_file"])
    assert password_file.stat().st_mode & 0o077 == 0  # the UI password is readable by its owner only


def _pg_connect(dbname: str):
    import psycopg2

    conn = psycopg2.connect(f"{PG_DSN} dbname={dbname}", connect_timeout=3)
    conn.autocommit = True
    return conn


def _wait(predicate: Callable[[], object], timeout: float, what: str, check: Callable[[], None] | None = None,
          every: float = 1.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check:
            check()
        if result := predicate():
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def metadata_db() -> Iterator[str]:
    """A fresh PostgreSQL database for the Airflow metadata; dropped afterwards."""
    try:
        admin = _pg_connect("postgres")
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not available here"
        pytest.skip(f"PostgreSQL not reachable with '{PG_DSN}' (set MOBILITY_TEST_PG): {exc}")
    name = f"mobility_airflow_test_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    params = admin.get_dsn_parameters()
    url = f"postgresql+psycopg2://{params['user']}@{params['host']}:{params['port']}/{name}"
    try:
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def broker() -> Iterator[tuple[str, str]]:
    """(broker URL on our Redis DB number, a queue name of our own); our keys deleted afterwards."""
    import redis

    url = f"{REDIS_URL.rstrip('/')}/{REDIS_DB}"
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Redis not reachable at {url} (set MOBILITY_TEST_REDIS): {exc}")
    queue = f"mobility-test-{uuid.uuid4().hex[:8]}"
    try:
        yield url, queue
    finally:
        for key in client.scan_iter(f"*{queue}*"):
            client.delete(key)
        # Celery's shared keys in this DB (a killed worker's unacked message, control bindings),
        # unless another run of this test is using the DB right now.
        if not any(client.scan_iter("_kombu.binding.mobility-test-*")):
            client.delete("unacked", "unacked_index", "unacked_mutex", "_kombu.binding.celery.pidbox",
                          "_kombu.binding.celeryev", "_kombu.binding_deadlines")
        client.close()


@dataclass
class Cluster:
    wd: Workdir
    env: dict[str, str]
    procs: object  # mobility.airflow_runtime.AirflowProcesses
    db: str  # database name
    simulator: str  # base URL
    queue: str

    def airflow(self, *args: str, timeout: float = 180) -> str:
        proc = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"airflow {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    def sql(self, query: str, *params: object) -> list[tuple]:
        conn = _pg_connect(self.db)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        finally:
            conn.close()

    def start_worker(self) -> None:
        self.procs.start("celery worker", "--queues", self.queue, "--concurrency", "2",
                         "--celery-hostname", f"{self.queue}-{uuid.uuid4().hex[:4]}@%h")

    def backfill(self, dag_id: str, first: datetime, last: datetime) -> None:
        self.airflow("backfill", "create", "--dag-id", dag_id,
                     "--from-date", first.isoformat(), "--to-date", last.isoformat())

    def backfill_runs(self, dag_id: str) -> dict[datetime, str]:
        rows = self.sql("select logical_date, state from dag_run where dag_id = %s and run_type = 'backfill'", dag_id)
        return {d.astimezone(timezone.utc): s for d, s in rows}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, metadata_db, broker) -> Iterator[Cluster]:
    from mobility.airflow_runtime import LOCAL_COMPONENTS, AirflowProcesses, airflow_env, init_airflow, wait_for_api
    from mobility.city.generate import generate_city
    from mobility.demo import _free_port, ensure_demo_secrets, simulator_process

    broker_url, queue = broker
    wd = Workdir.resolve(tmp_path_factory.mktemp("airflow-production"))
    generate_city(wd, seed=3, n_neighborhoods=60)
    ensure_demo_secrets()
    saved = os.environ.get("MOBILITY_PARTNER_BASE_URL")
    api_port = _free_port()
    # Ports and names of our own, so this can run beside another Airflow on the machine.
    extra = {
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__API__WORKERS": "1",  # two cores
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # the warehouse DAG stays off
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # A killed worker's task is noticed in seconds rather than the default five minutes.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    }
    t0 = time.monotonic()
    try:
        with simulator_process(wd, seed=3, scale=0.2) as base_url:
            os.environ["MOBILITY_PARTNER_BASE_URL"] = base_url
            # The partners' "now" is two days after DAY: unpausing a DAG also schedules its latest
            # real interval, which the partner then answers with 404 (future) and nothing lands.
            httpx.put(f"{base_url}/_sim/clock", json={"now": (DAY + timedelta(days=2)).isoformat()},
                      timeout=10).raise_for_status()
            init_airflow(wd, "production", sql_alchemy_conn=metadata_db, broker_url=broker_url,
                         api_port=api_port, extra_env=extra)
            env = {**os.environ, **airflow_env(wd, "production", sql_alchemy_conn=metadata_db,
                                               broker_url=broker_url, api_port=api_port), **extra}
            with AirflowProcesses(env, wd.logs, LOCAL_COMPONENTS) as procs:
                c = Cluster(wd, env, procs, metadata_db.rsplit("/", 1)[1], base_url, queue)
                c.start_worker()
                wait_for_api(api_port, processes=procs)
                _wait(lambda: set(INGEST_DAGS) <= {d for (d,) in c.sql("select dag_id from dag")},
                      120, "the DAG processor to serialize the ingest DAGs", procs.check)
                for dag_id in INGEST_DAGS:  # the MDS trip feeds only: what `mobility demo` pulls
                    c.airflow("dags", "unpause", dag_id)
                log.info(f"cluster up in {time.monotonic() - t0:.0f} s")
                yield c
    finally:
        if saved is None:
            os.environ.pop("MOBILITY_PARTNER_BASE_URL", None)
        else:
            os.environ["MOBILITY_PARTNER_BASE_URL"] = saved


@pytest.mark.slow
def test_one_day_on_postgres_and_celery_publishes_what_the_demo_publishes(cluster, tmp_path):
    t0 = time.monotonic()
    last = DAY + timedelta(hours=HOURS - 1)
    for dag_id in INGEST_DAGS:
        cluster.backfill(dag_id, DAY, last)
    expected = {DAY + timedelta(hours=h) for h in range(HOURS)}

    def finished() -> bool:
        runs = {d: cluster.backfill_runs(d) for d in INGEST_DAGS}
        return all(set(r) == expected and all(s in ("success", "failed") for s in r.values()) for r in runs.values())

    _wait(finished, 900, "the backfilled runs to finish", cluster.procs.check, every=2)
    for dag_id in INGEST_DAGS:
        states = cluster.backfill_runs(dag_id)
        assert set(states.values()) == {"success"}, f"{dag_id}: {states}; logs in {cluster.wd.logs}"
    # The tasks ran on the Celery worker, and landed one accepted batch per partner and hour.
    hosts = cluster.sql("select distinct hostname, queue from task_instance where run_id like 'backfill%%'")
    assert hosts and all(q == cluster.queue for _, q in hosts), hosts
    for partner in ("scootco", "zoomride"):
        manifests = sorted((cluster.wd.manifests / "mds_trips" / partner).glob("*.json"))
        labels = {p.stem.split("__")[0] for p in manifests}  # <window>__<sha>
        assert {f"{h:%Y-%m-%dT%H}" for h in expected} <= labels, labels
    log.info(f"{len(INGEST_DAGS) * HOURS} backfilled runs in {time.monotonic() - t0:.0f} s")

    # The warehouse DAG (dbt build -> publish gate -> publish) on the Celery worker, once.
    cluster.airflow("dags", "unpause", "warehouse")
    cluster.airflow("dags", "trigger", "warehouse")

    def warehouse_done() -> bool:
        states = [s for (s,) in cluster.sql("select state from dag_run where dag_id = 'warehouse'")]
        return bool(states) and all(s in ("success", "failed") for s in states)

    _wait(warehouse_done, 600, "the warehouse DAG to finish", cluster.procs.check, every=3)
    states = [s for (s,) in cluster.sql("select state from dag_run where dag_id = 'warehouse'")]
    assert set(states) == {"success"}, f"warehouse runs: {states}; logs in {cluster.wd.logs}"

    # `mobility demo` for the same day, on the same seed, city and scale, publishes the same tables.
    import duckdb

    from mobility.demo import run_demo

    demo = Workdir.resolve(tmp_path / "demo")
    assert run_demo(demo, start=DAY, end=DAY + timedelta(days=1), seed=3, n_neighborhoods=60, scale=0.2,
                    progress=False)["ok"]
    # the backfill lands MDS only; the demo also lands the daily files: compare the scooter rows
    for table in ("mart_trips_per_neighborhood_day", "mart_equity_trips_daily"):
        query = f"select * from {table} where mode = 'scooter' order by all"
        with duckdb.connect(str(cluster.wd.published_db), read_only=True) as con:
            via_celery = con.sql(query).fetchall()
        with duckdb.connect(str(demo.published_db), read_only=True) as con:
            via_demo = con.sql(query).fetchall()
        assert via_celery and via_celery == via_demo, table


@pytest.mark.slow
def test_killed_worker_task_is_retried_and_rows_land_once(cluster, tmp_path):
    import duckdb

    from mobility.pipeline import ingest_mds_hour

    dag_id, partner = INGEST_DAGS[0], "scootco"
    # An earlier backfill of this DAG must be marked complete before another can be created.
    _wait(lambda: not cluster.sql("select id from backfill where dag_id = %s and completed_at is null", dag_id),
          120, "the earlier backfill to complete", cluster.procs.check, every=2)
    sim = httpx.Client(base_url=cluster.simulator, timeout=10)
    # Only the backfilled hour is slow: the DAG's own hourly runs also call this partner.
    sim.post("/_sim/faults", json={"mode": "timeout", "partner": partner, "path": "trips", "times": 1,
                                   "seconds": SLOW_PARTNER_S, "query": {"end_time": f"{KILL_HOUR:%Y-%m-%dT%H}"}},
             ).raise_for_status()
    cluster.backfill(dag_id, KILL_HOUR, KILL_HOUR)
    # The fault is consumed when the task's request reaches the partner: the task is mid-flight.
    _wait(lambda: not sim.get("/_sim/faults").json()["faults"], 180, "the ingest task to call the slow partner",
          cluster.procs.check)
    cluster.procs.send_signal("celery worker", signal.SIGKILL)
    cluster.procs.procs.pop("celery worker").wait(timeout=10)
    cluster.start_worker()

    _wait(lambda: cluster.backfill_runs(dag_id).get(KILL_HOUR) in ("success", "failed"), 420,
          "the killed task to be retried", cluster.procs.check, every=2)
    assert cluster.backfill_runs(dag_id)[KILL_HOUR] == "success"
    ((tries,),) = cluster.sql(
        "select ti.try_number from task_instance ti join dag_run r on r.dag_id = ti.dag_id and r.run_id = ti.run_id "
        "where r.dag_id = %s and r.logical_date = %s", dag_id, KILL_HOUR)
    assert tries >= 2, "the killed attempt should have been followed by a retry"

    # Exactly once: the hour's bronze rows are the partner's trips for that hour, no duplicate,
    # and no leftover from the killed attempt anywhere in the partner's bronze folder.
    bronze = cluster.wd.bronze / "mds_trips" / f"partner={partner}"
    assert not [p for p in bronze.iterdir() if not p.name.endswith(".parquet")], list(bronze.iterdir())
    with duckdb.connect() as con:
        total, distinct = con.sql(f"select count(*), count(distinct trip_id) from '{bronze}/*.parquet'").fetchone()
        assert total == distinct
        landed = {r[0] for r in con.sql(f"select trip_id from '{bronze}/{KILL_HOUR:%Y-%m-%dT%H}.parquet'").fetchall()}
    fresh = Workdir.resolve(tmp_path / "fresh")
    os.environ["MOBILITY_PARTNER_BASE_URL"] = cluster.simulator
    ingest_mds_hour(fresh, partner, "mds_trips", KILL_HOUR)
    with duckdb.connect() as con:
        truth = {r[0] for r in con.sql(f"select trip_id from '{fresh.bronze}/mds_trips/partner={partner}/*.parquet'").fetchall()}
    assert landed and landed == truth
