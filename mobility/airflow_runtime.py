"""Configure and run Airflow for the consortium, on a laptop or on PostgreSQL + Celery.

`airflow_env` returns the environment that configures every Airflow process (the scheduler,
the DAG processor, the API server, workers, the CLI) for one workdir; `init_airflow` prepares
the metadata database; `AirflowProcesses` starts and always stops the components as children.

Airflow reads its configuration when it is imported, so it is always run in child processes
that get this environment; this module never imports Airflow itself.

Secrets never travel on a command line or into a log: partner credentials reach the child
processes through the environment only, and are stored as Airflow connections (encrypted with
the Fernet key in AIRFLOW_HOME/airflow.cfg) by a child that reads them from its environment.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Iterable, Literal

from mobility.settings import DAGS_DIR, PROJECT_ROOT, Workdir

log = logging.getLogger(__name__)

Mode = Literal["local", "production"]

DEFAULT_API_PORT = 8080
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
WAREHOUSE_POOL = "warehouse"
WAREHOUSE_POOL_DESCRIPTION = "single DuckDB writer: dbt build, publish gate, publish"
ADMIN_USER = "admin"

LOCAL_COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")
PRODUCTION_COMPONENTS: tuple[str, ...] = (*LOCAL_COMPONENTS, "celery worker")


class AirflowError(RuntimeError):
    """An Airflow command or component failed; the message says which log to read."""


def airflow_env(
    workdir: Workdir,
    mode: Mode = "local",
    *,
    sql_alchemy_conn: str | None = None,
    broker_url: str | None = None,
    api_port: int = DEFAULT_API_PORT,
) -> dict[str, str]:
    """Environment variables that configure Airflow for the consortium on `workdir`.

    local: SQLite metadata in AIRFLOW_HOME and the LocalExecutor (Airflow 3 allows it on SQLite,
    since tasks reach the database only through the API server).
    production: PostgreSQL metadata (`sql_alchemy_conn`, required), CeleryExecutor with a Redis
    broker (`broker_url`, default the local Redis) and Celery results in the same PostgreSQL.
    Merge it over `os.environ` for child processes; it may hold a database password, so never
    log it.
    """
    home = workdir.airflow_home
    env = {
        **workdir.env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # Workers (local or Celery) run tasks through the API server's execution API.
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        # DAG files import `mobility`: make it importable even outside the project's venv install.
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    if mode == "local":
        env |= {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn or f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__API__WORKERS": "1",  # a laptop: one API worker is plenty
            "AIRFLOW__API__HOST": "127.0.0.1",  # the UI of a laptop stays on the laptop
        }
    elif mode == "production":
        if not sql_alchemy_conn or not sql_alchemy_conn.startswith("postgresql"):
            raise ValueError("production mode needs sql_alchemy_conn='postgresql+psycopg2://USER@HOST/DB'")
        env |= {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": broker_url or DEFAULT_BROKER_URL,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sql_alchemy_conn}",
        }
    else:
        raise ValueError(f"mode must be 'local' or 'production', not {mode!r}")
    return env


def partner_credentials() -> list[str]:
    """Names of the credentials the registry's feeds use (e.g. SCOOTCO_MDS_TOKEN)."""
    from mobility.registry import load_registry

    return sorted({f.credential for _, f in load_registry().feeds() if f.credential})


def connection_id(credential: str) -> str:
    """The Airflow connection holding a credential: its name in lower case (see mobility.secrets)."""
    return credential.lower()


# Runs in a configured child: values come from its environment, names from argv (never values).
_CONFIGURE_SCRIPT = """
import json, os, sys
from airflow.models import Connection
from airflow.models.pool import Pool
from airflow.utils.session import create_session

pool, slots, description, *names = sys.argv[1:]
Pool.create_or_update_pool(pool, int(slots), description, include_deferred=False)
with create_session() as session:
    for name in names:
        conn_id = name.lower()
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(Connection(conn_id=conn_id, conn_type="generic", password=os.environ[name],
                               description="partner credential named in partners.yaml"))
print(json.dumps({"pool": pool, "connections": [n.lower() for n in names]}))
"""


def _run(cmd: list[str], env: dict[str, str], what: str, timeout: float = 300) -> str:
    """Run an Airflow command in a child; its output goes to the error only if it fails."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AirflowError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    log.info("%s done in %.1f s", what, time.monotonic() - t0)
    return proc.stdout


def ensure_admin_password(workdir: Workdir) -> Path:
    """Create the UI admin's password file (mode 600) once, so no process prints the password."""
    path = workdir.airflow_home / "simple_auth_manager_passwords.json.generated"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({ADMIN_USER: secrets.token_urlsafe(12)}, f)
            f.write("\n")
    return path


def init_airflow(
    workdir: Workdir,
    mode: Mode = "local",
    *,
    sql_alchemy_conn: str | None = None,
    broker_url: str | None = None,
    api_port: int = DEFAULT_API_PORT,
    extra_env: dict[str, str] | None = None,
) -> dict:
    """Migrate the metadata database, create the `warehouse` pool (1 slot), store credentials.

    A partner credential named in the registry becomes the Airflow connection of the same name
    in lower case, only if the variable is set in this process's environment. Returns what was
    done (names only) and the environment used.
    """
    workdir.airflow_home.mkdir(parents=True, exist_ok=True)
    workdir.logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **airflow_env(workdir, mode, sql_alchemy_conn=sql_alchemy_conn,
                                       broker_url=broker_url, api_port=api_port), **(extra_env or {})}
    t0 = time.monotonic()
    _run([sys.executable, "-m", "airflow", "db", "migrate"], env, "airflow db migrate")
    names = [n for n in partner_credentials() if env.get(n)]
    missing = sorted(set(partner_credentials()) - set(names))
    if missing:
        log.warning("credentials not set, no Airflow connection made for: %s", ", ".join(missing))
    out = _run([sys.executable, "-c", _CONFIGURE_SCRIPT, WAREHOUSE_POOL, "1", WAREHOUSE_POOL_DESCRIPTION, *names],
               env, "pool and connections")
    done = json.loads(out.strip().splitlines()[-1])
    password_file = ensure_admin_password(workdir) if mode == "local" else None
    log.info("Airflow initialised in %s (%s) in %.1f s", workdir.airflow_home, mode, time.monotonic() - t0)
    return {**done, "mode": mode, "airflow_home": str(workdir.airflow_home),
            "admin_password_file": str(password_file) if password_file else None,
            "seconds": round(time.monotonic() - t0, 1), "env": env}


def wait_for_api(port: int = DEFAULT_API_PORT, timeout: float = 120, processes: "AirflowProcesses | None" = None) -> str:
    """Wait until the API server answers its health check; returns the UI URL."""
    import httpx

    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if processes:
            processes.check()
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AirflowError(f"the API server did not answer on {url} within {timeout:.0f} s")


@dataclass
class AirflowProcesses:
    """Airflow components as child processes (one process group each), logs in `log_dir`.

    Use as a context manager: leaving it always stops every component it started (SIGTERM to
    the group, then SIGKILL after `grace` seconds), even when the block raised.
    """

    env: dict[str, str]
    log_dir: Path
    components: Iterable[str] = LOCAL_COMPONENTS
    grace: float = 20.0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)
    _logs: list[IO[bytes]] = field(default_factory=list, init=False)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"airflow-{name.replace(' ', '-')}.log"

    def start(self, name: str, *extra_args: str) -> subprocess.Popen:
        """Start one component (`scheduler`, `celery worker`, ...) in its own process group."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path(name), "ab")
        self._logs.append(log_file)
        cmd = [sys.executable, "-m", "airflow", *name.split(), *extra_args]
        proc = subprocess.Popen(cmd, env=self.env, cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        log.info("started airflow %s (pid %d), log %s", name, proc.pid, self.log_path(name))
        return proc

    def check(self) -> None:
        """Raise if a component has exited (each one should run until stopped)."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AirflowError(f"airflow {name} exited with {proc.returncode}; see {self.log_path(name)}")

    def send_signal(self, name: str, sig: int) -> None:
        """Send `sig` to a component's whole process group (e.g. SIGKILL a Celery worker)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=self.grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            log.warning("airflow %s did not stop within %.0f s: killing it", name, self.grace)
        # Children (LocalExecutor workers, Celery pool, API workers) may outlive their parent.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs)[::-1]:
            self.stop(name)
        for f in self._logs:
            f.close()
        self._logs.clear()

    def __enter__(self) -> "AirflowProcesses":
        try:
            for name in self.components:
                self.start(name)
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()
