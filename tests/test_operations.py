"""Operations: freshness against the SLA (with a real webhook alert), retention, conformance."""

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ingest.contracts import load_contract
from ingest.landing import Window, land_batch, record_fetch_error
from mobility.operations import (
    FeedLate,
    check_freshness,
    conformance_report,
    feed_freshness,
    purge_raw,
    send_alert,
)
from mobility.registry import load_registry
from mobility.settings import Workdir

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=timezone.utc)


@pytest.fixture()
def wd(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "k")
    return Workdir.resolve(tmp_path)


def _land(wd, hour: datetime, raw: bytes = b'{"version": "2.0.0", "trips": []}') -> dict:
    partner = load_registry().partner("scootco")
    feed = partner.feed("mds_trips")
    return land_batch(wd, partner=partner, feed=feed, contract=load_contract(feed.contract),
                      window=Window.hour(hour), raw=raw, source="test")


def test_fresh_feed_passes(wd):
    _land(wd, NOW - timedelta(hours=2))  # window ends 1 h before NOW; SLA is 2 h
    result = check_freshness("scootco", "mds_trips", NOW, workdir=wd)
    assert result["late"] is False and result["lag_hours"] == 1.0


def test_late_feed_trips_its_check(wd):
    _land(wd, NOW - timedelta(hours=5))
    # a failed fetch afterwards does not count as fresh data
    partner = load_registry().partner("scootco")
    feed = partner.feed("mds_trips")
    record_fetch_error(wd, partner=partner, feed=feed, contract=load_contract(feed.contract),
                       window=Window.hour(NOW - timedelta(hours=1)), error="HTTP 500")
    with pytest.raises(FeedLate, match=r"scootco/mds_trips: LATE.*4\.0 h ago; SLA 2 h"):
        check_freshness("scootco", "mds_trips", NOW, workdir=wd)


def test_feed_with_no_data_is_late(wd):
    assert feed_freshness(wd, "zoomride", "mds_trips", now=NOW).late


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_alert_is_delivered_to_the_webhook(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("MOBILITY_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
        assert send_alert("feed late", "scootco/mds_trips: LATE")
        assert _Hook.received[-1]["subject"] == "feed late"
    finally:
        server.shutdown()


def test_alert_without_webhook_is_logged_not_lost(monkeypatch, caplog):
    monkeypatch.delenv("MOBILITY_ALERT_WEBHOOK", raising=False)
    assert send_alert("feed late", "details") is False
    assert "ALERT feed late" in caplog.text


def test_raw_archive_retention(wd):
    old = _land(wd, NOW - timedelta(days=100))
    new = _land(wd, NOW - timedelta(days=3))
    removed = purge_raw(wd, retention_days=90, now=NOW)
    assert removed == [str((wd.root / old["raw_path"]).parent.relative_to(wd.root))]
    assert not (wd.root / old["raw_path"]).exists() and (wd.root / new["raw_path"]).exists()


def test_conformance_report_counts_outcomes_and_rules(wd):
    pid = load_registry().partner("scootco").mds_provider_id
    t0 = int((NOW - timedelta(hours=3)).timestamp() * 1000)
    trip = {"provider_id": pid, "device_id": "00000000-0000-0000-0000-000000000001",
            "trip_id": "00000000-0000-0000-0000-000000000002", "start_time": t0, "end_time": t0 + 60_000,
            "start_location": {"lat": 41.8, "lng": -87.7}, "end_location": {"lat": 41.8, "lng": -87.7},
            "duration": 60, "distance": 100}
    bad = dict(trip, trip_id="00000000-0000-0000-0000-000000000003", duration=-5)
    _land(wd, NOW - timedelta(hours=3), json.dumps({"trips": [trip, bad]}).encode())
    report = conformance_report(wd, now=NOW)
    entry = report["partners"]["scootco"]["mds_trips"]
    assert entry["batches"] == {"partial": 1}
    assert entry["conformance"] == 0.5
    assert entry["rules"] == {"duration: minimum": 1}
    assert entry["gate_expectations"] == {}
    assert (wd.root / "reports" / "conformance" / "2026-11-03.json").exists()

    # a batch whose rows all pass the contract but which the landing gate rejects as a whole
    # (one trip covers 50 km in a minute) is counted under the expectation it failed
    later = dict(trip, start_time=t0 + 3_600_000, end_time=t0 + 3_660_000)
    fast = dict(later, trip_id="00000000-0000-0000-0000-000000000004", distance=50_000)
    _land(wd, NOW - timedelta(hours=2), json.dumps({"trips": [later, fast]}).encode())
    entry = conformance_report(wd, now=NOW)["partners"]["scootco"]["mds_trips"]
    assert entry["batches"] == {"partial": 1, "rejected": 1}
    assert entry["gate_expectations"] == {"expect_column_values_to_be_between(speed_kmh)": 1}


@pytest.mark.slow
def test_late_feed_fails_the_airflow_freshness_dag_and_alerts(wd, tmp_path, monkeypatch):
    """The real feed_freshness DAG (dag.test): a late feed is a failed task and a webhook alert."""
    import os
    import subprocess
    import sys

    from mobility.airflow_runtime import airflow_env
    from mobility.settings import PROJECT_ROOT

    _land(wd, NOW - timedelta(hours=1, minutes=30))  # scootco fresh; zoomride never delivered
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received.clear()
    try:
        env = {**os.environ, **airflow_env(wd, "local"),
               "MOBILITY_ALERT_WEBHOOK": f"http://127.0.0.1:{server.server_port}/hook"}
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
        proc = subprocess.run(
            [sys.executable, "-m", "mobility.airflow_dagtest", "--dag", "feed_freshness",
             NOW.isoformat()],  # the run covers [11:00, 12:00): checked at 12:00
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
        )
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = json.loads(proc.stdout.strip().splitlines()[-1])
    assert states["scootco__mds_trips"] == "success"
    assert states["zoomride__mds_trips"] == "failed"
    assert states["run"] == "failed"
    alerts = [a for a in _Hook.received if "zoomride__mds_trips" in a["subject"]]
    assert alerts and "no batch landed yet" in alerts[0]["body"]
