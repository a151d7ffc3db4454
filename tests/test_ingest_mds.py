"""Pulling MDS hours from the local partner simulator over real HTTP, faults included."""

from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq
import pytest

from ingest.connectors.base import NotReady, PartnerRejected, Transient
from ingest.landing import Lake, Window
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
