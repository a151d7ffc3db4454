"""Shared test setup: Airflow kept inside a temporary home, the shared data folder located."""

import os
import tempfile
from pathlib import Path

import pytest

# Airflow reads its configuration at import time: point it at a throw-away home before any test
# imports it, so tests never touch ~/airflow and never load the example DAGs.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mobility-airflow-"))
os.environ.setdefault("AIRFLOW_HOME", str(_AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(__file__).resolve().parents[1] / "dags"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("MOBILITY_SHARED_DATA") or PROJECT_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public files in ../shared/data; tests that need them skip, saying so, if absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder not found at {path} (set MOBILITY_SHARED_DATA): real-file tests not run")
    return path


@pytest.fixture(scope="session")
def city_dir(tmp_path_factory):
    """A small generated city (60 neighborhoods) shared by the tests that run the simulator."""
    from mobility.city.generate import generate_city
    from mobility.settings import Workdir

    wd = Workdir.resolve(tmp_path_factory.mktemp("city"))
    generate_city(wd, seed=5, n_neighborhoods=60)
    return wd


@pytest.fixture()
def sim(city_dir, monkeypatch):
    """The partner simulator on a free local port, with the demo partners' tokens set."""
    from mobility.simulator.server import running_simulator

    from partner_secrets import SECRETS

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    with running_simulator(city_dir, seed=5, scale=0.2, timeout_s=3) as url:
        monkeypatch.setenv("MOBILITY_PARTNER_BASE_URL", url)
        yield url


@pytest.fixture()
def arrow_threads():
    """Sets the size of Arrow's thread pool for one test (an Airflow ingest task has one); the test
    process gets its own back afterwards."""
    import pyarrow as pa

    before = pa.cpu_count()
    yield pa.set_cpu_count
    pa.set_cpu_count(before)
