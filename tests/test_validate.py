"""`mobility validate` on the real public feeds, on the simulator's MDS records, and on planted faults.

Verdicts follow the reference rules: the official GBFS / MDS JSON Schemas (formats included) and
MobilityData's canonical GTFS rules (ERROR rejects, WARNING does not), on top of the contract.
"""

import json
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mobility.cli import app

runner = CliRunner()
HOUR = datetime(2026, 11, 3, 17, tzinfo=timezone.utc)


def run(*args):
    return runner.invoke(app, ["validate", *map(str, args)])


def run_json(*args) -> tuple[int, dict]:
    result = run(*args, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def findings(report: dict, severity: str = "error") -> list[dict]:
    return [g for f in report["files"] for g in f["findings"] if g["severity"] == severity]


def rules(report: dict, severity: str = "error") -> set[tuple[str, str]]:
    """(file, rule) of every finding of a severity."""
    return {(g["file"], g["rule"]) for g in findings(report, severity)}


# ---------------------------------------------------------------- GBFS
@pytest.mark.parametrize("version,contracts", [
    ("v2.3", {"free_bike_status.json": "gbfs_free_bike_status@2.3.0",
              "station_status.json": "gbfs_station_status@2.3.0",
              "station_information.json": "gbfs_station_status@2.3.0"}),
    ("v3.0", {"vehicle_status.json": "gbfs_vehicle_status@3.0.0",
              "station_status.json": "gbfs_station_status@3.0.0",
              "station_information.json": "gbfs_station_status@3.0.0"}),
])
def test_official_gbfs_fixtures_pass_contract_and_schema(shared_data, version, contracts):
    folder = shared_data / "gbfs" / "spec-fixtures" / "testFixtures" / version
    code, report = run_json(folder)
    assert code == 0 and report["valid"] and report["errors"] == 0
    by_name = {f["file"].rsplit("/", 1)[-1]: f for f in report["files"]}
    assert set(by_name) == {p.name for p in folder.glob("*.json")}
    for name, f in by_name.items():
        assert f["reference"]["ran"] and f["reference"]["errors"] == 0, name
        assert f["contract"] == contracts.get(name), name
        if f["contract"]:
            assert f["records"] > 0 and f["rows_rejected"] == 0


def test_voi_marseille_snapshot_passes(shared_data):
    code, report = run_json(shared_data / "gbfs" / "voi-marseille-v2.3" / "free_bike_status.json")
    (f,) = report["files"]
    assert code == 0 and f["contract"] == "gbfs_free_bike_status@2.3.0"
    assert f["records"] == 1466 and f["rows_rejected"] == 0
    assert f["reference"]["ran"] and f["reference"]["errors"] == 0
    assert "official JSON Schema, formats checked" in f["reference"]["name"]


# Voi's GBFS 3.0 documentation examples, each against the official schema with formats. One fails:
# its gbfs.json lists feed URLs with a `{zoneID}` placeholder, and braces are not allowed in a URI
# (RFC 3986), so the `format: uri` check rejects all ten. The other nine examples are valid.
VOI_V3_ERRORS = {
    "gbfs3_gbfs_response.json": 10,
    "gbfs3_geofencing_zones_response.json": 0,
    "gbfs3_station_information_response.json": 0,
    "gbfs3_station_status_response.json": 0,
    "gbfs3_system_alerts_response.json": 0,
    "gbfs3_system_information_response.json": 0,
    "gbfs3_system_pricing_plans_response.json": 0,
    "gbfs3_system_regions_response.json": 0,
    "gbfs3_vehicle_status_response.json": 0,
    "gbfs3_vehicle_types_response.json": 0,
}


@pytest.mark.parametrize("name", sorted(VOI_V3_ERRORS))
def test_voi_v3_docs_examples_file_by_file(shared_data, name):
    code, report = run_json(shared_data / "gbfs" / "voi-docs-v3.0" / name)
    (f,) = report["files"]
    assert f["reference"]["ran"] and f["detected"].startswith("GBFS 3.0")
    assert f["errors"] == VOI_V3_ERRORS[name] and code == (1 if VOI_V3_ERRORS[name] else 0)
    if VOI_V3_ERRORS[name]:
        (group,) = findings(report)
        assert (group["rule"], group["field"], group["source"]) == ("schema:format", "url", "reference")
        assert "{zoneID}" in group["examples"][0]["value"] and "is not a 'uri'" in group["examples"][0]["message"]


def test_gbfs_bad_coordinates_and_timestamp_fail_naming_the_row_and_field(shared_data, tmp_path):
    payload = json.loads((shared_data / "gbfs" / "spec-fixtures" / "testFixtures" / "v3.0" / "vehicle_status.json").read_text())
    payload["data"]["vehicles"][2]["lat"] = 95.0
    payload["last_updated"] = "yesterday at noon"  # not RFC 3339: only the schema's `format` catches it
    path = tmp_path / "vehicle_status.json"
    path.write_text(json.dumps(payload))
    result = run(path)
    assert result.exit_code == 1
    assert "data.vehicles[2]" in result.stdout and "field 'lat'" in result.stdout
    _, report = run_json(path)
    got = {(g["source"], g["rule"], g["field"], g["examples"][0]["row"]) for g in findings(report)}
    assert ("contract", "maximum", "lat", 2) in got and ("reference", "schema:maximum", "lat", 2) in got
    assert ("reference", "schema:format", "last_updated", None) in got


def test_gbfs_file_is_recognised_by_its_data_when_its_name_does_not_say(shared_data, tmp_path):
    src = shared_data / "gbfs" / "voi-marseille-v2.3" / "free_bike_status.json"
    shutil.copy(src, tmp_path / "snapshot.json")
    code, report = run_json(tmp_path / "snapshot.json")
    assert code == 0 and report["files"][0]["contract"] == "gbfs_free_bike_status@2.3.0"
    assert "what `data` holds" in report["files"][0]["detected"]


def test_reference_schemas_absent_is_said_plainly_never_a_silent_pass(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILITY_REFERENCE_SCHEMAS", str(tmp_path / "no-schemas-here"))
    path = shared_data / "gbfs" / "voi-marseille-v2.3" / "free_bike_status.json"
    result = run(path)
    assert result.exit_code == 0  # the contract check still ran and passed
    assert "NOT RUN" in result.stdout and "reference check NOT run" in result.stdout
    assert str(tmp_path / "no-schemas-here") in result.stdout
    _, report = run_json(path)
    (f,) = report["files"]
    assert f["reference"]["ran"] is False and f["records"] == 1466
    assert ("free_bike_status.json", "reference:not_run") in rules(report, "warning")


def test_every_format_the_official_schemas_use_is_checked(shared_data):
    """The project installs jsonschema's format checkers one by one (not the "iri" one, which no
    official schema uses): each format a GBFS or MDS schema names must have its checker."""
    import jsonschema
    import yaml

    def formats(node):
        if isinstance(node, dict):
            if isinstance(node.get("format"), str):
                yield node["format"]
            for value in node.values():
                yield from formats(value)
        elif isinstance(node, list):
            for value in node:
                yield from formats(value)

    # GBFS schemas are draft-07, MDS 2.0's OpenAPI 3.1 (draft 2020-12), as reference_schemas reads them
    for folder, patterns, cls in (("gbfs", ("*.json",), jsonschema.Draft7Validator),
                                  ("mds", ("*.json", "*.yaml"), jsonschema.Draft202012Validator)):
        files = [p for pattern in patterns for p in sorted((shared_data / folder / "schemas").rglob(pattern))]
        used = {f for p in files for f in formats(json.loads(p.read_text()) if p.suffix == ".json"
                                                   else yaml.safe_load(p.read_text()))}
        assert files and "uri" in used
        assert used <= set(cls.FORMAT_CHECKER.checkers), (folder, used - set(cls.FORMAT_CHECKER.checkers))
    with pytest.raises(jsonschema.ValidationError):  # a checker that runs, not only one that is named
        jsonschema.validate("not a uri", {"format": "uri"}, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


# ---------------------------------------------------------------- GTFS
@pytest.mark.parametrize("feed", ["gtfs_kit-data/cairns_gtfs.zip", "transitfeed-fixtures/good_feed",
                                  "transitfeed-fixtures/good_feed.zip"])
def test_valid_gtfs_feeds_pass_with_warnings(shared_data, feed):
    code, report = run_json(shared_data / "gtfs" / feed)
    (f,) = report["files"]
    assert code == 0 and f["errors"] == 0 and f["contract"] == "gtfs_schedule@1.0.0"
    assert f["reference"]["ran"] and f["reference"]["name"].startswith("MobilityData canonical GTFS rules")
    assert f["reference"]["warnings"] > 0 and f["warnings"] > 0


def test_cairns_counts_every_record_of_the_feed(shared_data):
    _, report = run_json(shared_data / "gtfs" / "gtfs_kit-data" / "cairns_gtfs.zip")
    assert report["files"][0]["records"] == 1 + 416 + 22 + 1339 + 37790 + 4 + 9


def test_google_sample_feed_is_rejected_for_invalid_row_length(shared_data):
    code, report = run_json(shared_data / "gtfs" / "google-sample-feed" / "sample-feed-1.zip")
    assert code == 1
    assert rules(report) == {("stop_times.txt", "gtfs:invalid_row_length"), ("stop_times.txt", "type:object")}
    counts = {g["rule"]: g["count"] for g in findings(report)}
    assert counts == {"gtfs:invalid_row_length": 13, "type:object": 13}
    example = next(g for g in findings(report) if g["rule"] == "gtfs:invalid_row_length")["examples"][0]
    assert example["row_kind"] == "line" and "headerCount=9" in example["message"] and "rowLength=5" in example["message"]


def test_missing_stops_is_rejected_for_the_missing_file(shared_data):
    code, report = run_json(shared_data / "gtfs" / "transitfeed-fixtures" / "missing_stops")
    assert code == 1
    got = rules(report)
    assert ("stops.txt", "gtfs:missing_required_file") in got
    assert ("stops.txt", "payload") in got  # the contract's own reading: a required file is absent
    fk = [g for g in findings(report) if g["rule"] == "gtfs:foreign_key_violation"]
    assert fk and all(g["field"] == "stop_id" for g in fk)  # every stop reference now dangles


def test_undefined_stop_is_rejected_for_the_foreign_key(shared_data):
    code, report = run_json(shared_data / "gtfs" / "transitfeed-fixtures" / "undefined_stop")
    assert code == 1
    (group,) = findings(report)
    assert (group["file"], group["rule"], group["field"], group["count"]) == (
        "stop_times.txt", "gtfs:foreign_key_violation", "stop_id", 1)
    assert group["examples"][0]["value"] == "'NADAR'"


def test_bad_utf8_is_rejected_for_its_bytes(shared_data):
    code, report = run_json(shared_data / "gtfs" / "transitfeed-fixtures" / "bad_utf8")
    assert code == 1
    got = rules(report)
    assert {rule for _, rule in got} == {"payload", "gtfs:invalid_character"}
    payload = [g for g in findings(report) if g["rule"] == "payload"]
    assert all("not UTF-8" in g["examples"][0]["message"] for g in payload)
    assert {"stops.txt", "stop_times.txt", "trips.txt"} <= {f for f, _ in got}


def test_duplicate_stop_is_rejected_for_short_rows_not_for_the_near_duplicate(shared_data):
    code, report = run_json(shared_data / "gtfs" / "transitfeed-fixtures" / "duplicate_stop")
    assert code == 1
    assert {rule for _, rule in rules(report)} == {"gtfs:invalid_row_length", "type:object"}


# ---------------------------------------------------------------- MDS 2.0 from the simulator
@pytest.fixture()
def mds_client(sim):
    from ingest.connectors.mds import MdsClient, MdsSettings

    with MdsClient(MdsSettings(base_url=f"{sim}/scootco/mds", token="scoot-secret")) as client:
        yield client


def test_simulator_trips_pass_contract_and_official_schema(mds_client, tmp_path):
    path = tmp_path / "trips.json"
    path.write_bytes(mds_client.trips(HOUR).content)
    code, report = run_json(path)
    (f,) = report["files"]
    assert code == 0 and f["contract"] == "mds_trips@2.0.0" and f["records"] > 0
    assert f["reference"]["ran"] and f["reference"]["errors"] == 0
    assert "/trips response" in f["reference"]["name"]


def test_mds_trip_missing_a_field_or_of_a_wrong_type_fails_naming_it(mds_client, tmp_path):
    payload = json.loads(mds_client.trips(HOUR).content)
    del payload["trips"][1]["trip_id"]
    payload["trips"][2]["duration"] = "600"
    path = tmp_path / "trips.json"
    path.write_text(json.dumps(payload))
    code, report = run_json(path)
    assert code == 1
    got = {(g["source"], g["rule"], g["field"], g["examples"][0]["row"]) for g in findings(report)}
    assert got == {
        ("contract", "required", "trip_id", 1), ("reference", "schema:required", "trip_id", 1),
        ("contract", "type:integer", "duration", 2), ("reference", "schema:type", "duration", 2),
    }
    text = run(path).stdout
    assert "trips[1]" in text and "'trip_id' is a required property" in text


def test_simulator_events_and_vehicle_status_pass_the_official_schema(shared_data, mds_client):
    from ingest.reference_schemas import check_mds

    events = json.loads(mds_client.events(HOUR).content)
    assert events["events"]
    result = check_mds(events, records_key="events", root=shared_data)
    assert result.ran and result.issues == []
    for page in mds_client.vehicle_status_pages():
        result = check_mds(json.loads(page.content), records_key="vehicles_status", root=shared_data)
        assert result.ran and result.issues == []


def test_the_official_mds_defects_are_real_and_handled(shared_data, mds_client, monkeypatch):
    """Unrepaired, the official models cannot even be compiled (`contains: [list]`), and with only
    that fixed the per-mode `oneOf` rejects a plain micromobility event; read as meant, it passes."""
    import ingest.reference_schemas as rs

    event = {"version": "2.0.0", "events": json.loads(mds_client.events(HOUR).content)["events"][:1]}
    assert rs.check_mds(event, records_key="events", root=shared_data).issues == []

    def only_contains(node):
        if isinstance(node, list):
            return [only_contains(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: only_contains(v) for k, v in node.items()}
        if isinstance(out.get("contains"), list):
            out["contains"] = {"enum": out["contains"]}
        return out

    for repair, expected in ((lambda node: node, Exception), (only_contains, "schema:oneOf")):
        monkeypatch.setattr(rs, "_repair_mds", repair)
        rs._mds_registry.cache_clear()
        rs._mds_validator.cache_clear()
        if expected is Exception:
            with pytest.raises(Exception):
                rs.check_mds(event, records_key="events", root=shared_data)
        else:
            issues = rs.check_mds(event, records_key="events", root=shared_data).issues
            assert [i.rule for i in issues] == [expected]
    rs._mds_registry.cache_clear()
    rs._mds_validator.cache_clear()


def test_mds_events_are_checked_under_their_contract_or_its_absence_is_a_usage_error(mds_client, tmp_path):
    from ingest.contracts import available

    path = tmp_path / "events.json"
    path.write_bytes(mds_client.events(HOUR).content)
    result = run(path)
    if "mds_events" in available():  # written on another branch; both outcomes are the contract's
        assert result.exit_code == 0 and "mds_events@2.0.0" in result.stdout
    else:
        assert result.exit_code == 2 and "mds_events@2.0.0" in result.stderr


def test_mds_1x_payload_is_a_usage_error(tmp_path):
    path = tmp_path / "trips.json"
    path.write_text(json.dumps({"version": "1.2.0", "data": {"trips": []}}))
    result = run(path)
    assert result.exit_code == 2 and "MDS 2.0" in result.stderr


# ---------------------------------------------------------------- CSV file drops
def test_ridehail_drop_passes_with_the_citys_codes_and_fails_a_planted_fault(sim, city_dir, tmp_path):
    from mobility.simulator.drops import drop_files

    wd = tmp_path / "wd"
    shutil.copytree(city_dir.city, wd / "city")
    day = date(2026, 11, 3)
    # the ride-hail files are the ones carrying fares (bike-share files carry pass types)
    path = next(p for p in drop_files(wd, day, world=sim.sim.world) if "trip_total" in p.read_text().split("\n", 1)[0])
    code, report = run_json(path, "--workdir", wd)
    (f,) = report["files"]
    assert code == 0 and f["contract"] == "ridehail_trips@1.0.0" and f["records"] > 0
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("pickup_community_area")] = "999999"  # no such neighborhood
    bad = tmp_path / path.name
    bad.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    code, report = run_json(bad, "--workdir", wd)
    assert code == 1
    (group,) = findings(report)
    assert (group["field"], group["rule"], group["examples"][0]["row"]) == (
        "pickup_community_area", "codes:neighborhood_id", 0)


# ---------------------------------------------------------------- usage, formats
def test_missing_file_and_unknown_contract_are_usage_errors(shared_data, tmp_path):
    result = run(tmp_path / "nothing.json")
    assert result.exit_code == 2 and "no such file" in result.stderr
    voi = shared_data / "gbfs" / "voi-marseille-v2.3" / "free_bike_status.json"
    result = run(voi, "--contract", "no_such_contract")
    assert result.exit_code == 2 and "unknown contract 'no_such_contract'" in result.stderr
    result = run(voi, "--contract", "gbfs_free_bike_status@9.0.0")
    assert result.exit_code == 2 and "has no version 9.0.0" in result.stderr


def test_unrecognisable_json_is_a_usage_error_but_a_named_contract_judges_it(tmp_path):
    path = tmp_path / "thing.json"
    path.write_text(json.dumps({"hello": "world"}))
    result = run(path)
    assert result.exit_code == 2 and "--contract" in result.stderr
    code, report = run_json(path, "--contract", "mds_trips@2.0.0")
    assert code == 1 and ("thing.json", "payload") in rules(report)
    assert report["files"][0]["reference"]["ran"] is False


def test_named_contract_is_applied_and_said(shared_data):
    code, report = run_json(shared_data / "gtfs" / "gtfs_kit-data" / "cairns_gtfs.zip", "--contract", "gtfs_schedule")
    assert code == 0 and report["files"][0]["contract"] == "gtfs_schedule@1.0.0"


def test_json_and_text_give_the_same_verdicts(shared_data):
    for path in (shared_data / "gtfs" / "google-sample-feed" / "sample-feed-1.zip",
                 shared_data / "gbfs" / "voi-marseille-v2.3" / "free_bike_status.json"):
        text = run(path)
        code, report = run_json(path)
        assert text.exit_code == code
        verdict = "VALID" if report["valid"] else "INVALID"
        assert text.stdout.strip().splitlines()[-1].startswith(
            f"{verdict}: 1 file(s), {report['errors']} errors, {report['warnings']} warnings")
        assert f"contract:  {report['files'][0]['contract']}" in text.stdout


def test_help_states_the_exit_codes():
    result = runner.invoke(app, ["validate", "--help"])
    assert result.exit_code == 0 and "--contract" in result.output and "--format" in result.output
    assert "2: usage error" in result.output


def test_unsafe_gtfs_zip_is_refused_unread_and_not_passed_to_the_validator(tmp_path):
    import zipfile

    path = tmp_path / "feed.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nS1,A,1,2\n")
        archive.writestr("../escape.txt", "x")
    code, report = run_json(path)
    (f,) = report["files"]
    assert code == 1 and ("feed.zip", "payload") in rules(report)
    assert "unsafe path" in findings(report)[0]["examples"][0]["message"]
    assert f["reference"]["ran"] is False and "refused unread" in f["reference"]["note"]


def test_named_contract_covering_no_file_of_a_folder_is_a_usage_error(shared_data):
    folder = shared_data / "gbfs" / "spec-fixtures" / "testFixtures" / "v2.3"
    result = run(folder, "--contract", "gbfs_vehicle_status@3.0.0")
    assert result.exit_code == 2 and "covers none of the files" in result.stderr


def test_code_rules_without_a_city_are_a_warning_not_a_silent_pass(sim, tmp_path):
    from mobility.simulator.drops import drop_files

    path = next(p for p in drop_files(tmp_path / "wd", date(2026, 11, 3), world=sim.sim.world)
                if "trip_total" in p.read_text().split("\n", 1)[0])
    code, report = run_json(path, "--workdir", tmp_path / "no-city")
    assert code == 0 and report["files"][0]["contract"] == "ridehail_trips@1.0.0"
    (group,) = [g for g in findings(report, "warning") if g["rule"] == "contract:codes_not_checked"]
    assert "neighborhood_id" in group["examples"][0]["message"]


def test_a_csv_drop_is_checked_from_disk_as_landing_checks_it_with_the_row_checks_verdicts(tmp_path, monkeypatch):
    """A ride-hail day file with faults and a repeated trip id: `mobility validate` checks it as
    landing does (column-wise, from disk in blocks, no record built: the row check's reader is
    never called) and its report is the one the row-by-row check gives (`parse_records` +
    `Contract.check`, what it ran before: 75 s and 1.8 GB for 1M rows here, against 6 s and 0.5 GB)."""
    import importlib.util

    import ingest.columnar
    import ingest.validate
    from ingest.columnar import PayloadCheck
    from ingest.payloads import parse_records

    spec = importlib.util.spec_from_file_location("bench", Path(__file__).resolve().parents[1] / "benchmarks" / "ingest_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lines = bench.ridehail_csv(3000, 0.02).decode().splitlines(keepends=True)
    lines[2500] = lines[3].split(",", 1)[0] + "," + lines[2500].split(",", 1)[1]  # row 2498 repeats row 2's id
    path = tmp_path / f"rideco-trips-{bench.DAY:%Y-%m-%d}.csv"
    path.write_text("".join(lines))

    def unread(*args, **kwargs):
        raise AssertionError("the file's records were built")

    monkeypatch.setattr(ingest.columnar, "parse_records", unread)
    monkeypatch.setattr(ingest.validate, "parse_records", unread)
    code, columnar = run_json(path, "--workdir", tmp_path / "no-city")
    monkeypatch.undo()

    class RowCheck:  # what `mobility validate` ran before: every record built, checked row by row
        def __init__(self, contract, raw, *, window):
            self.result = PayloadCheck(contract.check(parse_records(contract, raw), window=window), {}, "rows", {})

        def __iter__(self):
            return iter(())

    monkeypatch.setattr(ingest.validate, "CheckStream", RowCheck)
    assert run_json(path, "--workdir", tmp_path / "no-city") == (code, columnar) and code == 1
    (report,) = columnar["files"]
    assert report["records"] == 3000 and report["rows_rejected"] > 0
    assert ("trip_id", "unique") in {(g["field"], g["rule"]) for g in findings(columnar)}
