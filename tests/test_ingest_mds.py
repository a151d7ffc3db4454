"""Pulling MDS hours from the local partner simulator over real HTTP, faults included."""

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.connectors.base import NotReady, PartnerRejected, Transient
from ingest.landing import Lake, Window
from mobility import pipeline
from mobility.pipeline import ingest_mds_hour
from mobility.settings import Workdir

HOUR = datetime(2026, 11, 3, 17, tzinfo=timezone.utc)


@pytest.fixture()
def wd(tmp_path, city_dir):
    return Workdir.resolve(tmp_path)


def test_hour_lands_every_trip_the_partner_served(sim, wd):
    m = ingest_mds_hour(wd, "scootco", "mds_trips", HOUR)
    expected = len(sim.sim.world.trips_ending_in_hour("scootco", HOUR))
    assert m["outcome"] == "accepted" and m["rows_accepted"] == expected > 0
    assert pq.read_table(Lake(wd, "scootco", "mds_trips").bronze(Window.hour(HOUR))).num_rows == expected


def test_an_ingest_task_lands_with_the_arrow_threads_of_a_task(sim, wd, monkeypatch):
    # Airflow runs tasks side by side, each in its process: one Arrow thread pool per core in each
    # would oversubscribe the cores (mobility.settings.task_arrow_threads)
    seen, before = [], pa.cpu_count()
    monkeypatch.setenv("MOBILITY_TASK_ARROW_THREADS", str(before + 1))  # differs from what it is

    def step(*args, **kwargs):
        seen.append(pa.cpu_count())
        return ingest_mds_hour(*args, **kwargs)

    monkeypatch.setitem(pipeline.INGEST_STEPS, "mds_trips", step)
    try:
        out = pipeline.ingest_window_or_fail("scootco", "mds_trips", HOUR, workdir=wd)
    finally:
        pa.set_cpu_count(before)  # the test process keeps its own pool
    assert seen == [before + 1]
    assert out["outcome"] == "accepted" and out["rows_accepted"] > 0


def test_a_task_arrow_threads_setting_that_is_no_number_is_named(monkeypatch):
    from mobility.settings import task_arrow_threads

    monkeypatch.setenv("MOBILITY_TASK_ARROW_THREADS", "two")
    with pytest.raises(ValueError, match="MOBILITY_TASK_ARROW_THREADS.*'two'"):
        task_arrow_threads()
    monkeypatch.setenv("MOBILITY_TASK_ARROW_THREADS", "3")
    assert task_arrow_threads() == 3


def test_server_errors_are_retried_then_succeed(sim, wd):
    sim.sim.faults.add("500", partner="scootco", path="trips", times=2)
    assert ingest_mds_hour(wd, "scootco", "mds_trips", HOUR)["outcome"] == "accepted"


def test_persistent_server_errors_fail_clearly_and_are_recorded(sim, wd):
    sim.sim.faults.add("500", partner="scootco", path="trips", times=10)
    with pytest.raises(Transient, match="gave up after 4 attempts: HTTP 500"):
        ingest_mds_hour(wd, "scootco", "mds_trips", HOUR)
    (manifest,) = Lake(wd, "scootco", "mds_trips").manifests()
    assert '"outcome": "error"' in manifest.read_text()


def test_still_processing_then_ready(sim, wd):
    sim.sim.faults.add("202", partner="zoomride", path="trips", times=1)
    with pytest.raises(NotReady):
        ingest_mds_hour(wd, "zoomride", "mds_trips", HOUR)
    sim.sim.faults.add("202", partner="zoomride", path="trips", times=1)
    m = ingest_mds_hour(wd, "zoomride", "mds_trips", HOUR, not_ready_waits=(0.1,))
    assert m["outcome"] == "accepted"


def test_future_hour_is_no_data(sim, wd):
    future = datetime.now(timezone.utc) + timedelta(days=2)
    assert ingest_mds_hour(wd, "scootco", "mds_trips", future)["outcome"] == "no_data"


def test_wrong_token_or_version_is_refused(sim):
    from ingest.connectors.mds import MdsClient, MdsSettings

    with MdsClient(MdsSettings(base_url=f"{sim}/scootco/mds", token="not-the-token")) as client:
        with pytest.raises(PartnerRejected, match="HTTP 401"):
            client.trips(HOUR)
    with MdsClient(MdsSettings(base_url=f"{sim}/scootco/mds", token="zoom-secret")) as client:
        with pytest.raises(PartnerRejected, match="HTTP 401"):  # another operator's token
            client.trips(HOUR)
    settings = MdsSettings(base_url=f"{sim}/scootco/mds", token="scoot-secret")
    assert "scoot-secret" not in repr(settings)
    with MdsClient(settings) as client:
        client._client.headers["Accept"] = "application/vnd.mds+json;version=1.2"
        with pytest.raises(PartnerRejected, match="HTTP 406"):
            client.trips(HOUR)


def test_payload_claiming_another_provider_is_rejected(sim, wd):
    sim.sim.faults.add("foreign_provider", partner="scootco", path="trips", times=1)
    m = ingest_mds_hour(wd, "scootco", "mds_trips", HOUR)
    assert m["outcome"] == "rejected" and "credentials are scootco's" in m["error"]


def test_oauth_client_credentials_token_is_obtained_reused_and_renewed(sim, wd):
    """zoomride's registry entry says OAuth client credentials: the ingest gets a token from the
    partner's token endpoint, reuses it while valid and asks again once it expires."""
    from mobility.pipeline import mds_settings
    from mobility.registry import load_registry

    from ingest.connectors.mds import MdsClient

    oauth = sim.sim.app.state.oauth
    settings = mds_settings(load_registry().partner("zoomride").feed("mds_trips"))
    assert settings.oauth is not None and settings.oauth.client_id == "demo-city"
    assert "zoom-secret" not in repr(settings)
    before = oauth["requests"]
    with MdsClient(settings) as client:
        client.trips(HOUR)
        client.trips(HOUR - timedelta(hours=1))
    assert oauth["requests"] - before == 1  # one token for both requests

    # authlib renews a token that expires within its 60 s leeway, so a 30 s token counts as
    # expired at once: every request still succeeds, each after a renewal at the token endpoint
    oauth["token_lifetime_s"] = 30
    m = ingest_mds_hour(wd, "zoomride", "mds_trips", HOUR)
    assert m["outcome"] == "accepted" and m["rows_accepted"] > 0
    before = oauth["requests"]
    with MdsClient(settings) as client:
        client.trips(HOUR)
        client.trips(HOUR)
    assert oauth["requests"] - before >= 3  # the first token, then a renewal before each request


def test_oauth_token_revoked_early_is_replaced_once(sim):
    from mobility.pipeline import mds_settings
    from mobility.registry import load_registry

    from ingest.connectors.mds import MdsClient

    oauth = sim.sim.app.state.oauth
    with MdsClient(mds_settings(load_registry().partner("zoomride").feed("mds_trips"))) as client:
        client.trips(HOUR)
        oauth["issued"].clear()  # the partner revokes every token it issued
        before = oauth["requests"]
        assert client.trips(HOUR).status == 200
    assert oauth["requests"] - before == 1


def test_oauth_wrong_client_secret_is_refused_naming_the_token_endpoint(sim):
    import dataclasses

    from mobility.pipeline import mds_settings
    from mobility.registry import load_registry

    from ingest.connectors.mds import MdsClient

    # the simulator runs in this process and reads the same variable, so change the client side only
    settings = dataclasses.replace(
        mds_settings(load_registry().partner("zoomride").feed("mds_trips")), token="not-the-secret"
    )
    with MdsClient(settings) as client:
        with pytest.raises(PartnerRejected, match=r"/zoomride/oauth/token: token request refused: invalid_client") as err:
            client.trips(HOUR)
    assert "not-the-secret" not in str(err.value)


def test_rate_limit_429_waits_for_retry_after_then_succeeds(sim, wd):
    import time

    sim.sim.faults.add("429", partner="scootco", path="trips", times=1, retry_after=1)
    started = time.monotonic()
    m = ingest_mds_hour(wd, "scootco", "mds_trips", HOUR)
    assert m["outcome"] == "accepted"
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured, not a fast backoff
