"""`mobility airflow`: run the consortium's DAGs under a real Airflow, on a laptop or in production.

    mobility airflow standalone --with-simulator   # the demo consortium in the Airflow UI
    mobility airflow init --mode production         # migrate PostgreSQL metadata, pool, connections
    mobility airflow run --start 2026-11-02 --end 2026-11-03 --with-simulator   # dag.test, no scheduler
    mobility airflow cli -- backfill create --dag-id ingest__scootco__mds_trips ...

Database URLs may hold a password: they are read from the environment
(MOBILITY_AIRFLOW_SQL_ALCHEMY_CONN, MOBILITY_AIRFLOW_BROKER_URL), not passed on a command line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console

from mobility.settings import PROJECT_ROOT, Workdir

log = logging.getLogger(__name__)

app = typer.Typer(help="Run the DAGs under Airflow: a local standalone with the UI, or production on PostgreSQL + Celery.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
out = Console()

WorkdirOpt = Annotated[
    Optional[Path],
    typer.Option("--workdir", "-w", help="Folder for everything this command reads and writes (default: ./var or $MOBILITY_WORKDIR)."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")]
ModeOpt = Annotated[str, typer.Option(help="local (SQLite, LocalExecutor) or production (PostgreSQL, Celery on Redis).")]
PortOpt = Annotated[int, typer.Option("--port", help="Port of the Airflow API server and UI.")]
SqlConnOpt = Annotated[Optional[str], typer.Option(
    envvar="MOBILITY_AIRFLOW_SQL_ALCHEMY_CONN", show_envvar=True,
    help="Production metadata database, postgresql+psycopg2://... (set the variable rather than the option if it has a password).")]
BrokerOpt = Annotated[Optional[str], typer.Option(envvar="MOBILITY_AIRFLOW_BROKER_URL", show_envvar=True,
                                                  help="Celery broker (default redis://127.0.0.1:6379/0).")]


def _setup(workdir: Optional[Path], verbose: bool = False) -> Workdir:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    wd = Workdir.resolve(workdir)
    wd.root.mkdir(parents=True, exist_ok=True)
    os.environ.update(wd.env())
    return wd


def _check_mode(mode: str) -> str:
    if mode not in ("local", "production"):
        raise typer.BadParameter("local or production", param_hint="--mode")
    return mode


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so `with` blocks stop every child process."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _parse_hour(value: str) -> datetime:
    """YYYY-MM-DD or YYYY-MM-DDTHH, UTC."""
    if "T" in value:
        return datetime.strptime(value[:13], "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
    return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=timezone.utc)


@contextlib.contextmanager
def _demo_partners(wd: Workdir, *, with_simulator: bool, seed: int, neighborhoods: int, scale: float,
                   sim_port: Optional[int]) -> Iterator[Optional[str]]:
    """Demo secrets in this process's environment, a city, and the simulator if asked."""
    from mobility.demo import ensure_demo_secrets, simulator_process

    made = ensure_demo_secrets()
    if made:
        log.info("generated demo credentials (in this process's environment only): %s", ", ".join(made))
    if not with_simulator:
        yield None
        return
    if not wd.neighborhoods.exists():
        from mobility.city.generate import generate_city

        out.print(f"generating the demo city in {wd.city}")
        generate_city(wd, seed=seed, n_neighborhoods=neighborhoods)
    with simulator_process(wd, seed=seed, scale=scale, port=sim_port) as base_url:
        os.environ["MOBILITY_PARTNER_BASE_URL"] = base_url
        out.print(f"partner simulator at {base_url} (log {wd.logs / 'simulator.log'})")
        yield base_url


@app.command()
def init(
    workdir: WorkdirOpt = None,
    mode: ModeOpt = "local",
    sql_alchemy_conn: SqlConnOpt = None,
    broker_url: BrokerOpt = None,
    port: PortOpt = 8080,
    verbose: VerboseOpt = False,
) -> None:
    """Migrate the metadata database, create the one-slot `warehouse` pool, store partner credentials."""
    from mobility.airflow_runtime import AirflowError, init_airflow

    wd = _setup(workdir, verbose)
    try:
        result = init_airflow(wd, _check_mode(mode), sql_alchemy_conn=sql_alchemy_conn, broker_url=broker_url, api_port=port)
    except (AirflowError, ValueError) as exc:
        out.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    out.print(f"Airflow ({mode}) ready in {result['airflow_home']} after {result['seconds']} s; "
              f"pool '{result['pool']}' (1 slot); connections: {', '.join(result['connections']) or 'none'}")


@app.command()
def standalone(
    workdir: WorkdirOpt = None,
    port: PortOpt = 8080,
    with_simulator: Annotated[bool, typer.Option("--with-simulator", help="Generate the demo city and run the partner simulator.")] = False,
    sim_port: Annotated[Optional[int], typer.Option(help="Simulator port (default: a free one).")] = None,
    unpause: Annotated[Optional[bool], typer.Option("--unpause/--paused", help="Start with DAGs unpaused (default: unpaused with the simulator).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the city and the partners' world.")] = 7,
    neighborhoods: Annotated[int, typer.Option(help="Neighborhoods in the generated city.")] = 80,
    scale: Annotated[float, typer.Option(help="Multiply every operator's trip volume.")] = 1.0,
    verbose: VerboseOpt = False,
) -> None:
    """Airflow on this machine (SQLite, LocalExecutor): API server + UI, scheduler, DAG processor,
    triggerer, with the demo consortium's credentials; Ctrl-C stops everything."""
    from mobility.airflow_runtime import LOCAL_COMPONENTS, AirflowError, AirflowProcesses, airflow_env, init_airflow, wait_for_api

    wd = _setup(workdir, verbose)
    if not _port_free(port):
        out.print(f"[red]port {port} is in use: pass --port[/red]")
        raise typer.Exit(2)
    unpause = with_simulator if unpause is None else unpause
    _stop_on_sigterm()
    try:
        with _demo_partners(wd, with_simulator=with_simulator, seed=seed, neighborhoods=neighborhoods,
                            scale=scale, sim_port=sim_port):
            result = init_airflow(wd, "local", api_port=port)
            env = {**os.environ, **airflow_env(wd, "local", api_port=port),
                   "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(not unpause)}
            with AirflowProcesses(env, wd.logs, LOCAL_COMPONENTS) as procs:
                url = wait_for_api(port, processes=procs)
                out.print(f"\nAirflow UI: [bold]{url}[/bold]  user [bold]admin[/bold], password in "
                          f"{result['admin_password_file']}")
                out.print(f"component logs: {wd.logs}/airflow-*.log; task logs: {wd.airflow_home / 'logs'}")
                out.print("DAGs start " + ("unpaused" if unpause else "paused (switch them on in the UI)")
                          + "; Ctrl-C stops everything.")
                while True:
                    procs.check()
                    time.sleep(1)
    except KeyboardInterrupt:
        out.print("stopping")
    except (AirflowError, RuntimeError) as exc:
        out.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@app.command()
def run(
    start: Annotated[str, typer.Option(help="First UTC hour, YYYY-MM-DD or YYYY-MM-DDTHH.")],
    end: Annotated[str, typer.Option(help="End (exclusive), YYYY-MM-DD or YYYY-MM-DDTHH.")],
    workdir: WorkdirOpt = None,
    with_simulator: Annotated[bool, typer.Option("--with-simulator", help="Generate the demo city and run the partner simulator.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for the city and the partners' world.")] = 7,
    neighborhoods: Annotated[int, typer.Option(help="Neighborhoods in the generated city.")] = 80,
    scale: Annotated[float, typer.Option(help="Multiply every operator's trip volume.")] = 1.0,
    verbose: VerboseOpt = False,
) -> None:
    """Run the real DAGs in one process with dag.test() (no scheduler): each ingest DAG per hour,
    then the warehouse DAG once."""
    from mobility.airflow_runtime import AirflowError, airflow_env, init_airflow

    wd = _setup(workdir, verbose)
    try:
        with _demo_partners(wd, with_simulator=with_simulator, seed=seed, neighborhoods=neighborhoods,
                            scale=scale, sim_port=None):
            init_airflow(wd, "local")
            env = {**os.environ, **airflow_env(wd, "local")}
            proc = subprocess.run([sys.executable, "-m", "mobility.airflow_dagtest",
                                   _parse_hour(start).isoformat(), _parse_hour(end).isoformat()],
                                  env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    except (AirflowError, RuntimeError) as exc:
        out.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    out.print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no result")
    raise typer.Exit(proc.returncode)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cli(
    ctx: typer.Context,
    workdir: WorkdirOpt = None,
    mode: ModeOpt = "local",
    sql_alchemy_conn: SqlConnOpt = None,
    broker_url: BrokerOpt = None,
    port: PortOpt = 8080,
) -> None:
    """Run any `airflow` command configured for this workdir, e.g.
    `mobility airflow cli -w var -- backfill create --dag-id ingest__scootco__mds_trips --from-date 2026-11-02 --to-date 2026-11-03`."""
    from mobility.airflow_runtime import airflow_env

    wd = _setup(workdir)
    env = {**os.environ, **airflow_env(wd, _check_mode(mode), sql_alchemy_conn=sql_alchemy_conn,
                                       broker_url=broker_url, api_port=port)}
    raise typer.Exit(subprocess.call([sys.executable, "-m", "airflow", *ctx.args], env=env, cwd=PROJECT_ROOT))


if __name__ == "__main__":  # pragma: no cover
    app()
