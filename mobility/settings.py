"""Where everything lives: one workdir layout shared by the CLI, the DAGs, dbt and the tests.

Every command takes ``--workdir DIR``; Airflow tasks and dbt read it from ``MOBILITY_WORKDIR``.
Secrets never live here: they come from the environment or Airflow connections (see ``secrets``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REGISTRY_PATH = PROJECT_ROOT / "partners.yaml"
CONTRACTS_DIR = PROJECT_ROOT / "contracts"
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DAGS_DIR = PROJECT_ROOT / "dags"
REFERENCE_SCHEMAS_ENV = "MOBILITY_REFERENCE_SCHEMAS"
DUCKDB_MEMORY_LIMIT_ENV = "MOBILITY_DUCKDB_MEMORY_LIMIT"
# DuckDB spills to disk beyond this instead of growing with the day's volume (its own default is
# 80% of the machine); the pipeline's peak memory target is 4 GB on a 24 GB machine
DEFAULT_DUCKDB_MEMORY_LIMIT = "3GB"
CHECK_WORKERS_ENV = "MOBILITY_CHECK_WORKERS"
TASK_ARROW_THREADS_ENV = "MOBILITY_TASK_ARROW_THREADS"
# Arrow's own setting, not ours: when an operator sets it, the intake keeps that memory pool
ARROW_MEMORY_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def reference_schemas_dir() -> Path:
    """Where the official GBFS/MDS schemas are read from (they cannot be shipped with the project):
    $MOBILITY_REFERENCE_SCHEMAS, else the shared data folder beside the project. Laid out as
    gbfs/schemas/v2.3, gbfs/schemas/v3.0, mds/schemas/mds-openapi-2.0; it may be absent."""
    return Path(os.environ.get(REFERENCE_SCHEMAS_ENV) or PROJECT_ROOT.parent / "shared" / "data").expanduser()


def default_workdir() -> Path:
    """$MOBILITY_WORKDIR if set (Airflow workers, dbt), else ./var in the project."""
    return Path(os.environ.get("MOBILITY_WORKDIR") or PROJECT_ROOT / "var")


def duckdb_memory_limit() -> str:
    """The memory cap of every heavy DuckDB connection of the pipeline (dbt build, publication):
    $MOBILITY_DUCKDB_MEMORY_LIMIT (DuckDB's syntax, e.g. ``6GB``), else 3 GB."""
    return os.environ.get(DUCKDB_MEMORY_LIMIT_ENV) or DEFAULT_DUCKDB_MEMORY_LIMIT


def check_workers_enabled() -> bool:
    """Whether big CSV batches are checked in worker processes (`ingest.check_worker`):
    yes unless $MOBILITY_CHECK_WORKERS is 0 (a host where the landing may not start processes)."""
    return os.environ.get(CHECK_WORKERS_ENV, "1") != "0"


def task_arrow_threads() -> int:
    """Arrow's CPU threads in the process of one Airflow ingest task: $MOBILITY_TASK_ARROW_THREADS,
    else 1. Airflow runs each task in a process of its own, several side by side, and Arrow would
    otherwise start a thread per core in each: with one, two processes landing MDS pages side by
    side on 2 cores spent about 12% less CPU and landed about 15% more trips per second."""
    value = os.environ.get(TASK_ARROW_THREADS_ENV) or "1"
    try:
        return max(1, int(value))
    except ValueError:
        raise ValueError(f"${TASK_ARROW_THREADS_ENV} must be a whole number of threads, not {value!r}") from None


@dataclass(frozen=True)
class Workdir:
    """The folder tree under one workdir. Creating the object creates nothing on disk."""

    root: Path

    @classmethod
    def resolve(cls, root: str | Path | None = None) -> "Workdir":
        return cls(Path(root or default_workdir()).expanduser().resolve())

    # the city
    @property
    def city(self) -> Path:
        return self.root / "city"

    @property
    def neighborhoods(self) -> Path:
        return self.city / "neighborhoods.parquet"

    @property
    def city_meta(self) -> Path:
        return self.city / "city.json"

    @property
    def transit_network(self) -> Path:
        return self.city / "transit.json"

    # the lake: raw archive, typed bronze batches, quarantine, one manifest per batch
    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def raw(self) -> Path:
        return self.lake / "raw"

    @property
    def bronze(self) -> Path:
        return self.lake / "bronze"

    @property
    def quarantine(self) -> Path:
        return self.lake / "quarantine"

    @property
    def manifests(self) -> Path:
        return self.lake / "manifests"

    # partners' drop folders (file-drop feeds)
    @property
    def drops(self) -> Path:
        return self.root / "drops"

    # the warehouse (single writer: the dbt build) and the analysts' publication
    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse" / "mobility.duckdb"

    @property
    def published(self) -> Path:
        return self.root / "published"

    @property
    def published_db(self) -> Path:
        return self.published / "mobility.duckdb"

    # gate results and Data Docs, dbt target, Airflow home, logs
    @property
    def gates(self) -> Path:
        return self.root / "gates"

    @property
    def dbt_target(self) -> Path:
        return self.root / "dbt" / "target"

    @property
    def built(self) -> tuple[Path, ...]:
        """What the build and publication keep between runs, as distinct from the lake they are
        built from: the warehouse, the publication, dbt's state (target, last-build marker)."""
        return (self.warehouse.parent, self.published, self.dbt_target.parent)

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def duckdb_temp(self) -> Path:
        """Where publication's DuckDB spills beyond its memory cap (the dbt build spills beside the
        warehouse file: see profiles.yml)."""
        return self.root / "tmp" / "duckdb"

    def duckdb_config(self) -> dict[str, str]:
        """``duckdb.connect(config=...)`` for a heavy connection of the pipeline: the memory cap and
        its spill folder, created here (DuckDB does not create missing parents). dbt gets the cap
        through ``env()`` and profiles.yml."""
        self.duckdb_temp.mkdir(parents=True, exist_ok=True)
        return {"memory_limit": duckdb_memory_limit(), "temp_directory": str(self.duckdb_temp)}

    def env(self) -> dict[str, str]:
        """Environment variables that point dbt and Airflow tasks at this workdir."""
        return {
            "MOBILITY_WORKDIR": str(self.root),
            "MOBILITY_WAREHOUSE_PATH": str(self.warehouse),
            DUCKDB_MEMORY_LIMIT_ENV: duckdb_memory_limit(),
        }
