"""MDS events and vehicle status landed under their contracts, against the partner simulator."""

import json
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq
import pytest

from ingest.contracts import load_contract
from ingest.landing import Lake, Window
from ingest.payloads import parse_records
from ingest.transitions import out_of_order_transitions
from mobility.pipeline import ingest_mds_hour, ingest_mds_vehicle_status, window_for
from mobility.settings import Workdir

HOUR = datetime(2026, 11, 3, 17, tzinfo=timezone.utc)
AT = datetime(2026, 11, 3, 17, 2, tzinfo=timezone.utc)


@pytest.fixture()
def wd(tmp_path, city_dir):
    return Workdir.resolve(tmp_path)


def _manifest(wd, partner, feed):
    (path,) = Lake(wd, partner, feed).manifests()
    return json.loads(path.read_text())


# ---------------------------------------------------------------- events
def test_events_hour_lands_every_event_the_partner_served(sim, wd):
    m = ingest_mds_hour(wd, "scootco", "mds_events", HOUR)
    served = sim.sim.world.events_in_hour("scootco", HOUR)
    assert m["outcome"] == "accepted" and m["rows_accepted"] == len(served) > 0
    table = pq.read_table(Lake(wd, "scootco", "mds_events").bronze(Window.hour(HOUR)))
    assert table.num_rows == len(served)
    assert str(table.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    assert set(table.column("vehicle_state").to_pylist()) == {"on_trip", "available"}
    # ids are pseudonymised at landing; trip_ids are kept out of the warehouse, and say so
    assert not {e["device_id"] for e in served} & set(table.column("device_id").to_pylist())
    assert any("'trip_ids' is not in contract" in w for w in m["warnings"])
    # the simulator's hour is consistent: nothing to flag, and the manifest says 0
    assert _manifest(wd, "scootco", "mds_events")["out_of_order_transitions"] == 0


def test_out_of_order_events_are_flagged_not_rejected(sim, wd, monkeypatch):
    served = sim.sim.world.events_in_hour("scootco", HOUR)
    device = next(e["device_id"] for e in served if e["event_types"] == ["trip_end"]
                  and any(s["device_id"] == e["device_id"] for s in served if s["event_types"] == ["trip_start"]))
    mine = [e for e in served if e["device_id"] == device]
    assert out_of_order_transitions(mine) == []
    # the same events sent newest first: the start arrives after the end it preceded
    flagged = out_of_order_transitions(list(reversed(mine)))
    assert flagged and "arrived after the device's event" in flagged[0]
    # a trip_end that follows 'available' (its trip_start missing) breaks the state machine
    ends = [e for e in mine if e["event_types"] == ["trip_end"]]
    broken = [{**ends[0], "timestamp": ends[0]["timestamp"] - 10_000, "vehicle_state": "available"}, ends[0]]
    assert "trip_end follows state 'available'" in out_of_order_transitions(broken)[0]

    # through the real endpoint: the partner publishes the hour newest first
    world = sim.sim.world
    newest_first = json.dumps(list(reversed(served)), separators=(",", ":"))[1:-1]  # the records, as served
    monkeypatch.setattr(world, "event_records_json", lambda op, hour, chunk_rows=None: iter([newest_first]))
    m = ingest_mds_hour(wd, "scootco", "mds_events", HOUR)
    assert m["outcome"] == "accepted" and m["rows_accepted"] == len(served)  # flagged, not rejected
    assert m["out_of_order_transitions"] == len(out_of_order_transitions(reversed(served))) > 0
    on_disk = _manifest(wd, "scootco", "mds_events")
    assert on_disk["out_of_order_transitions"] == m["out_of_order_transitions"]
    assert any("do not follow the device's last known state" in w for w in on_disk["warnings"])


def test_event_outside_the_requested_hour_is_quarantined(wd, monkeypatch):
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "k")
    contract = load_contract("mds_events@2.0.0")
    good = {"device_id": "6ddcc0ad-1d66-4046-bba4-cf1d4e6d9a3e", "provider_id": "6ddcc0ad-1d66-4046-bba4-cf1d4e6d9a3e",
            "event_id": "2411d395-04f2-47c9-ab66-d09e9e3c3251", "vehicle_state": "available",
            "event_types": ["provider_drop_off"], "timestamp": int(HOUR.timestamp() * 1000) + 1000,
            "location": {"lat": 41.8, "lng": -87.6}}
    late = {**good, "event_id": "2411d395-04f2-47c9-ab66-d09e9e3c3252", "timestamp": good["timestamp"] + 3_600_000}
    bad_state = {**good, "event_id": "2411d395-04f2-47c9-ab66-d09e9e3c3253", "vehicle_state": "parked"}
    result = contract.check([good, late, bad_state], window=(HOUR, HOUR + timedelta(hours=1)))
    assert result.rows_accepted == 1
    assert {(v.row, v.field, v.rule) for v in result.violations} == {
        (1, "timestamp", "in_request_window"), (2, "vehicle_state", "enum")}


# ---------------------------------------------------------------- vehicle status
def test_vehicle_status_follows_every_page_into_one_snapshot(sim, wd, monkeypatch):
    sim.sim.clock.set(AT)
    import mobility.simulator.server as server

    monkeypatch.setattr(server, "DEFAULT_PAGE_SIZE", 100)  # the partner pages by 100: several pages
    m = ingest_mds_vehicle_status(wd, "scootco", "mds_vehicle_status", AT, now=AT)
    truth = sim.sim.world.vehicle_states("scootco", AT)
    fleet = len(sim.sim.world.fleet("scootco"))
    assert m["outcome"] == "accepted", m["error"]
    assert m["rows_accepted"] == fleet
    document = json.loads((wd.root / m["raw_path"]).read_bytes())
    assert len(document["pages"]) == -(-fleet // 100) > 1
    assert sum(p["records"] for p in document["pages"]) == fleet
    table = pq.read_table(Lake(wd, "scootco", "mds_vehicle_status").bronze(window_for("every_5_minutes", AT)))
    assert table.num_rows == fleet and len(table.column("device_id").unique()) == fleet
    states = table.column("vehicle_state").to_pylist()
    assert states.count("available") == int((truth["state"] == "available").sum())
    assert str(table.schema.field("telemetry_time").type) == "timestamp[ms, tz=UTC]"


def test_vehicle_status_cannot_fill_a_past_window(sim, wd):
    m = ingest_mds_vehicle_status(wd, "zoomride", "mds_vehicle_status", datetime.now(timezone.utc) - timedelta(days=1))
    assert m["outcome"] == "no_data" and "MDS snapshot shows the present" in m["error"]


def test_vehicle_status_with_a_missing_required_field_is_quarantined(wd, monkeypatch):
    contract = load_contract("mds_vehicle_status@2.0.0")
    record = {"device_id": "6ddcc0ad-1d66-4046-bba4-cf1d4e6d9a3e", "provider_id": "6ddcc0ad-1d66-4046-bba4-cf1d4e6d9a3e",
              "last_event": {"vehicle_state": "available", "event_types": ["trip_end"], "timestamp": 1_790_000_000_000},
              "last_telemetry": {"timestamp": 1_790_000_000_000, "location": {"lat": 41.8, "lng": -87.6}}}
    no_position = {**record, "device_id": "2411d395-04f2-47c9-ab66-d09e9e3c3251",
                   "last_telemetry": {"timestamp": 1_790_000_000_000}}
    records = parse_records(contract, json.dumps({"vehicles_status": [record, no_position]}).encode())
    result = contract.check(records)
    assert result.rows_accepted == 1
    assert [(v.row, v.field, v.rule) for v in result.violations] == [
        (1, "last_telemetry.location.lat", "required"), (1, "last_telemetry.location.lng", "required")]
