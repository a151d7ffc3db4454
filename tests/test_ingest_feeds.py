"""GBFS, GTFS and file-drop feeds landed under their contracts, against the partner simulator."""

import csv
import dataclasses
import io
import json
import shutil
import zipfile
from datetime import date, datetime, timedelta, timezone

import httpx
import pyarrow.parquet as pq
import pytest

from ingest.connectors.base import PartnerRejected
from ingest.connectors.gbfs import GbfsClient, GbfsSettings, feed_urls
from ingest.connectors.gtfs import GtfsClient, GtfsSettings
from ingest.contracts import load_contract
from ingest.landing import Window, land_batch
from ingest.payloads import parse_records
from mobility.pipeline import ingest_file_drop_day, ingest_gbfs_snapshot, ingest_gtfs_day, window_for
from mobility.registry import load_registry
from mobility.settings import Workdir

DAY = date(2026, 11, 3)
DAY_START = datetime(2026, 11, 3, tzinfo=timezone.utc)


@pytest.fixture()
def wd(tmp_path, city_dir):
    """A fresh workdir holding the city (ride-hail codes are checked against its neighborhoods)."""
    shutil.copytree(city_dir.city, tmp_path / "city")
    return Workdir.resolve(tmp_path)


def bronze(wd, dataset, partner, window):
    return pq.read_table(wd.bronze / dataset / f"partner={partner}" / f"{window.label}.parquet")


def raw_json(wd, manifest):
    return json.loads((wd.root / manifest["raw_path"]).read_bytes())


# ---------------------------------------------------------------- GBFS
def test_gbfs_v3_vehicle_status_lands_the_snapshot_typed_and_pseudonymised(sim, wd):
    now = datetime.now(timezone.utc)
    m = ingest_gbfs_snapshot(wd, "scootco", "gbfs", now)
    vehicles = raw_json(wd, m)["data"]["vehicles"]
    assert m["outcome"] == "accepted" and m["rows_accepted"] == len(vehicles) > 0
    table = bronze(wd, "gbfs_vehicle_status", "scootco", window_for("every_5_minutes", now))
    assert table.num_rows == len(vehicles)
    assert str(table.schema.field("last_reported").type) == "timestamp[ms, tz=UTC]"
    assert str(table.schema.field("is_reserved").type) == "bool"
    assert str(table.schema.field("lat").type) == "double"
    assert not {v["vehicle_id"] for v in vehicles} & set(table.column("vehicle_id").to_pylist())


def test_gbfs_v2_station_status_and_information_land_as_two_tables(sim, wd):
    now = datetime.now(timezone.utc)
    m = ingest_gbfs_snapshot(wd, "citybikes", "gbfs", now)
    n = len(sim.sim.world.stations("citybikes")["station_id"])
    assert m["outcome"] == "accepted" and m["tables"] == {
        "gbfs_station_status": "accepted", "gbfs_station_information": "accepted"}
    assert m["rows_accepted"] == 2 * n
    window = window_for("every_5_minutes", now)
    status = bronze(wd, "gbfs_station_status", "citybikes", window)
    info = bronze(wd, "gbfs_station_information", "citybikes", window)
    assert status.num_rows == info.num_rows == n
    assert str(status.schema.field("last_reported").type) == "timestamp[ms, tz=UTC]"  # epoch s, read as such
    assert str(status.schema.field("num_bikes_available").type) == "int64"
    assert set(status.column("station_id").to_pylist()) == set(info.column("station_id").to_pylist())
    assert len(list((wd.manifests / "gbfs" / "citybikes").glob("*.json"))) == 2


def test_gbfs_discovery_v2_and_v3(sim):
    with GbfsClient(GbfsSettings(f"{sim}/scootco/gbfs/gbfs.json", version="3.0")) as client:
        assert {"system_information", "vehicle_status"} <= set(client.feeds())
        assert client.vehicle_status().version == "3.0"
    with GbfsClient(GbfsSettings(f"{sim}/citybikes/gbfs/gbfs.json", version="2.3")) as client:
        assert {"station_information", "station_status", "free_bike_status"} <= set(client.feeds())
        assert client.station_status().version == "2.3"
    # a partner serving another major version than the registry says is refused, by name
    with GbfsClient(GbfsSettings(f"{sim}/scootco/gbfs/gbfs.json", version="2.3")) as client:
        with pytest.raises(PartnerRejected, match="GBFS version 3.0 served; the registry expects 2.3"):
            client.feeds()


def test_gbfs_ttl_is_honoured_within_a_session(sim):
    calls = []

    class Counting(httpx.HTTPTransport):
        def handle_request(self, request):
            calls.append(request.url.path)
            return super().handle_request(request)

    settings = GbfsSettings(f"{sim}/scootco/gbfs/gbfs.json", version="3.0", token="secret-token")
    assert "secret-token" not in repr(settings)
    with GbfsClient(settings, transport=Counting()) as client:
        first = client.vehicle_status()
        assert client.vehicle_status() is first  # ttl 60 s: not fetched again
    assert calls == ["/scootco/gbfs/gbfs.json", "/scootco/gbfs/vehicle_status.json"]


def test_gbfs_snapshot_cannot_fill_a_past_window(sim, wd):
    m = ingest_gbfs_snapshot(wd, "scootco", "gbfs", datetime.now(timezone.utc) - timedelta(days=2))
    assert m["outcome"] == "no_data" and "snapshot shows the present" in m["error"]


def test_official_gbfs_fixtures_conform(shared_data):
    fixtures = shared_data / "gbfs" / "spec-fixtures" / "testFixtures"
    vehicles = load_contract("gbfs_vehicle_status@3.0.0")
    status, info = load_contract("gbfs_station_status@2.3.0").tables()
    for contract, path, rows in [
        (vehicles, fixtures / "v3.0" / "vehicle_status.json", 7),
        (status, fixtures / "v2.3" / "station_status.json", 2),
        (info, fixtures / "v2.3" / "station_information.json", 2),
    ]:
        result = contract.check(parse_records(contract, path.read_bytes()))
        assert (result.rows_accepted, result.violations) == (rows, []), path
    assert set(feed_urls(json.loads((fixtures / "v3.0" / "gbfs.json").read_text()), "3.0")) >= {"vehicle_status"}
    assert set(feed_urls(json.loads((fixtures / "v2.3" / "gbfs.json").read_text()), "2.3")) >= {"station_status"}


# ---------------------------------------------------------------- GTFS
def _member_rows(zip_bytes: bytes, name: str) -> int:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        return sum(1 for _ in csv.DictReader(io.TextIOWrapper(zf.open(name), "utf-8-sig")))


def test_gtfs_lands_one_bronze_table_per_file(sim, wd):
    m = ingest_gtfs_day(wd, "metro", "gtfs_schedule", DAY_START)
    assert m["outcome"] == "accepted", m["error"]
    raw = (wd.raw / "metro" / "gtfs_schedule" / "2026-11-03").glob("*.zip")
    zip_bytes = next(raw).read_bytes()
    window = window_for("daily", DAY_START)
    for table in load_contract("gtfs_schedule@1.0.0").tables():
        member = table.properties["zip_member"]
        expected = _member_rows(zip_bytes, member) if member != "calendar_dates.txt" else 0
        assert bronze(wd, table.dataset, "metro", window).num_rows == expected, member
    assert str(bronze(wd, "gtfs_calendar", "metro", window).schema.field("start_date").type) == "date32[day]"
    assert str(bronze(wd, "gtfs_stop_times", "metro", window).schema.field("stop_sequence").type) == "int64"


def test_gtfs_unchanged_feed_is_skipped_by_etag(sim, wd):
    first = ingest_gtfs_day(wd, "metro", "gtfs_schedule", DAY_START)
    second = ingest_gtfs_day(wd, "metro", "gtfs_schedule", DAY_START + timedelta(days=1))
    assert first["outcome"] == "accepted"
    assert second["outcome"] == "unchanged" and "2026-11-03" in second["error"]
    assert not (wd.bronze / "gtfs_stops" / "partner=metro" / "2026-11-04.parquet").exists()
    state = json.loads((wd.lake / "state" / "metro" / "gtfs_schedule.json").read_text())
    with GtfsClient(GtfsSettings(f"{sim}/metro/gtfs/feed.zip")) as client:
        assert client.feed(etag=state["etag"]) is None  # 304
        assert client.feed().etag == state["etag"]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _land_gtfs(wd, raw: bytes, table_name: str = "stops", **limits):
    partner = load_registry().partner("metro")
    table = next(t for t in load_contract("gtfs_schedule@1.0.0").tables() if t.table == table_name)
    if limits:
        table = dataclasses.replace(table, properties={**table.properties, **limits})
    return land_batch(wd, partner=partner, feed=partner.feed("gtfs_schedule"), contract=table,
                      window=window_for("daily", DAY_START), raw=raw, source="test", ext="zip")


STOPS = b"stop_id,stop_name,stop_lat,stop_lon\nS1,First,41.8,-87.6\nS2,Second,41.9,-87.7\n"


def test_gtfs_zip_with_path_traversal_is_refused(wd, monkeypatch):
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "k")
    m = _land_gtfs(wd, _zip({"stops.txt": STOPS, "../../etc/evil.txt": b"x"}))
    assert m["outcome"] == "rejected" and "'../../etc/evil.txt' has an unsafe path" in m["error"]
    assert _land_gtfs(wd, _zip({"stops.txt": STOPS}))["outcome"] == "accepted"


def test_gtfs_zip_bomb_is_refused(wd, monkeypatch):
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "k")
    bomb = _zip({"stops.txt": STOPS, "shapes.txt": b"0" * 5_000_000})  # ~5 kB compressed
    m = _land_gtfs(wd, bomb, max_member_bytes=1_000_000)
    assert m["outcome"] == "rejected" and "'shapes.txt' is 5000000 bytes uncompressed" in m["error"]
    m = _land_gtfs(wd, bomb, max_uncompressed_bytes=2_000_000)
    assert m["outcome"] == "rejected" and "the limit is 2000000" in m["error"]
    many = _zip({"stops.txt": STOPS, **{f"f{i}.txt": b"" for i in range(70)}})
    assert "71 members" in _land_gtfs(wd, many)["error"]


def test_gtfs_missing_required_file_is_refused_optional_is_empty(wd, monkeypatch):
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "k")
    assert "no routes.txt" in _land_gtfs(wd, _zip({"stops.txt": STOPS}), "routes")["error"]
    assert _land_gtfs(wd, _zip({"stops.txt": STOPS}), "calendar_dates")["outcome"] == "empty"


def test_real_gtfs_feed_lands_whole(shared_data, wd, monkeypatch):
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "k")
    raw = (shared_data / "gtfs" / "gtfs_kit-data" / "cairns_gtfs.zip").read_bytes()
    counts = {t: _land_gtfs(wd, raw, t)["rows_accepted"] for t in ("stops", "routes", "trips", "stop_times")}
    assert counts == {"stops": 416, "routes": 22, "trips": 1339, "stop_times": 37790}


# ---------------------------------------------------------------- file drops
@pytest.fixture()
def dropped(sim, wd):
    from mobility.simulator.drops import drop_files

    return {p.parent.name: p for p in drop_files(wd, DAY, world=sim.sim.world)}


def test_bikeshare_file_is_picked_up_once_and_lands_typed(sim, wd, dropped):
    from mobility.simulator.drops import bikeshare_rows

    expected = len(bikeshare_rows(sim.sim.world, "citybikes", DAY))
    m = ingest_file_drop_day(wd, "citybikes", "bikeshare_trips", DAY_START)
    assert m["outcome"] == "accepted" and m["rows_accepted"] == expected > 0, m["error"]
    table = bronze(wd, "bikeshare_trips", "citybikes", Window(DAY_START, DAY_START + timedelta(days=1)))
    assert table.num_rows == expected
    assert str(table.schema.field("start_time").type) == "timestamp[ms]"  # local wall-clock time, naive
    assert str(table.schema.field("duration").type) == "int64"
    assert all(len(t) == 32 for t in table.column("bike_id").to_pylist())  # pseudonymised
    folder = wd.drops / "citybikes"
    assert (folder / "done" / "citybikes-trips-2026-11-03.csv").exists()
    assert not list(folder.glob("*.csv")) and not list((folder / "processing").iterdir())
    again = ingest_file_drop_day(wd, "citybikes", "bikeshare_trips", DAY_START)
    assert again["outcome"] == "no_data" and "citybikes-trips-2026-11-03.csv" in again["error"]


@pytest.mark.parametrize("partner", ["rideco", "hailnow"])
def test_ridehail_file_lands_with_codes_checked(sim, wd, dropped, partner):
    from mobility.simulator.drops import RIDEHAIL_COLUMNS, ridehail_rows, to_csv, write_atomic

    rows = ridehail_rows(sim.sim.world, partner, DAY)
    rows[0]["pickup_community_area"] = 9999  # not a neighborhood of the city
    rows[1]["fare"] = "-2.50"
    write_atomic(dropped[partner], to_csv(rows, RIDEHAIL_COLUMNS))
    m = ingest_file_drop_day(wd, partner, "ridehail_trips", DAY_START)
    assert m["outcome"] == "partial" and (m["rows_accepted"], m["rows_rejected"]) == (len(rows) - 2, 2)
    report = json.loads(next((wd.quarantine / partner / "ridehail_trips").glob("*/report.json")).read_text())
    rules = {(r["field"], r["rule"]) for r in report["failed_rules"]}
    assert rules == {("pickup_community_area", "codes:neighborhood_id"), ("fare", "minimum")}
    table = bronze(wd, "ridehail_trips", partner, window_for("daily", DAY_START))
    assert set(table.column("partner_id").to_pylist()) == {partner}  # from the drop folder
    assert str(table.schema.field("shared_trip_authorized").type) == "bool"


def test_misnamed_file_is_rejected_naming_the_file_and_the_rule(wd, monkeypatch):
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "k")
    folder = wd.drops / "rideco"
    folder.mkdir(parents=True)
    (folder / "rideco_trips_2026-11-03.csv").write_text("trip_id\n")
    (folder / "upload.csv.tmp").write_text("partial upload")  # still being written: left alone
    m = ingest_file_drop_day(wd, "rideco", "ridehail_trips", DAY_START)
    assert m["outcome"] == "rejected"
    assert "file 'rideco_trips_2026-11-03.csv'" in m["error"] and "'rideco-trips-{date}.csv'" in m["error"]
    assert (folder / "rejected" / "rideco_trips_2026-11-03.csv").exists()
    assert (folder / "upload.csv.tmp").exists()


def test_redropping_a_corrected_file_replaces_the_earlier_batch(sim, wd, dropped):
    from mobility.simulator.drops import RIDEHAIL_COLUMNS, ridehail_rows, to_csv, write_atomic

    rows = ridehail_rows(sim.sim.world, "rideco", DAY)
    first = ingest_file_drop_day(wd, "rideco", "ridehail_trips", DAY_START)
    write_atomic(dropped["rideco"], to_csv(rows[:-3], RIDEHAIL_COLUMNS))  # the corrected file
    second = ingest_file_drop_day(wd, "rideco", "ridehail_trips", DAY_START)
    assert first["rows_accepted"] == len(rows) and second["rows_accepted"] == len(rows) - 3
    table = bronze(wd, "ridehail_trips", "rideco", window_for("daily", DAY_START))
    assert table.column("batch_id").unique().to_pylist() == [second["batch_id"]]
    assert len(list((wd.bronze / "ridehail_trips").rglob("*.parquet"))) == 1
    assert len(list((wd.raw / "rideco" / "ridehail_trips" / "2026-11-03").iterdir())) == 2  # both kept raw


def test_every_registry_feed_has_an_ingest_step():
    from mobility.orchestration import SUPPORTED_FEEDS
    from mobility.pipeline import INGEST_STEPS

    kinds = {f.feed for _, f in load_registry().feeds()}
    assert kinds <= set(SUPPORTED_FEEDS) <= set(INGEST_STEPS)


def test_drop_sensor_sees_the_file_of_the_window_date_only(tmp_path, monkeypatch):
    """The file-drop DAG's sensor: true once the partner's file for that date is dropped."""
    from datetime import datetime, timezone

    from mobility.pipeline import drop_file_arrived
    from mobility.settings import Workdir

    wd = Workdir.resolve(tmp_path)
    day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    assert not drop_file_arrived("rideco", "ridehail_trips", day, workdir=wd)
    folder = wd.drops / "rideco"
    folder.mkdir(parents=True)
    (folder / "rideco-trips-2026-11-03.csv").write_text("trip_id\n")  # another date
    assert not drop_file_arrived("rideco", "ridehail_trips", day, workdir=wd)
    (folder / "rideco-trips-2026-11-02.csv").write_text("trip_id\n")
    assert drop_file_arrived("rideco", "ridehail_trips", day, workdir=wd)
