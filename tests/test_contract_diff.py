"""`mobility contracts diff`: contract versions built from the real contracts, changed one way each."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from ingest.contracts import load_contract
from mobility.cli import app

runner = CliRunner()


def diff(old, new, *extra):
    return runner.invoke(app, ["contracts", "diff", str(old), str(new), *extra])


def variant(tmp_path, ref: str, version: str, change=None, name: str = "new"):
    """A copy of a real contract at `version`, changed by `change(doc)`, written as an ODCS file."""
    doc = yaml.safe_load(load_contract(ref).path.read_text())
    doc["version"] = version
    if change:
        change(doc)
    path = tmp_path / f"{name}-{version}.odcs.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def prop(doc, name, table=0):
    return next(p for p in doc["schema"][table]["properties"] if p["name"] == name)


def drop(doc, name, table=0):
    doc["schema"][table]["properties"].remove(prop(doc, name, table))


def sla(doc, name):
    return next(s for s in doc["slaProperties"] if s["property"] == name)


BREAKING = {
    "field removed": ("mds_trips@2.0.0", lambda d: drop(d, "distance"), "trips.distance", "field removed"),
    "type changed": ("mds_trips@2.0.0", lambda d: prop(d, "duration").update(logicalType="number"),
                     "trips.duration", "logicalType changed 'integer' -> 'number'"),
    "optional to required": ("mds_trips@2.0.0", lambda d: prop(d, "vehicle_type").update(required=True),
                             "trips.vehicle_type", "optional -> required"),
    "enum narrowed": ("mds_trips@2.0.0",
                      lambda d: prop(d, "vehicle_type").update(enum=[e for e in prop(d, "vehicle_type")["enum"]
                                                                     if e["value"] != "moped"]),
                      "trips.vehicle_type", "enum narrowed: ['moped'] no longer allowed"),
    "range narrowed": ("mds_trips@2.0.0",
                       lambda d: prop(d, "start_location.lat")["logicalTypeOptions"].update(maximum=60),
                       "trips.start_location.lat", "maximum 90 -> 60 (narrowed)"),
    "minimum raised": ("mds_trips@2.0.0", lambda d: prop(d, "duration")["logicalTypeOptions"].update(minimum=1),
                       "trips.duration", "minimum 0 -> 1 (narrowed)"),
    "table removed": ("gtfs_schedule@1.0.0",
                      lambda d: d.update(schema=[t for t in d["schema"] if t["name"] != "calendar_dates"]),
                      "calendar_dates", "table removed"),
    "sla tightened": ("mds_trips@2.0.0", lambda d: sla(d, "latency").update(value=1),
                      "sla.latency", "2 h -> 1 h (tightened)"),
    "required field added": ("mds_trips@2.0.0", lambda d: d["schema"][0]["properties"].append(
        {"name": "parking_category", "logicalType": "string", "required": True}),
        "trips.parking_category", "required field added"),
    "quality rule added": ("gbfs_vehicle_status@3.0.0", lambda d: d["schema"][0].update(quality=[
        {"name": "end_not_before_start", "type": "custom", "engine": "mobility-commons",
         "implementation": "end_not_before_start"}]),
        "vehicle_status.quality.end_not_before_start", "quality rule added"),
}

COMPATIBLE = {
    "optional field added": ("mds_trips@2.0.0", lambda d: d["schema"][0]["properties"].append(
        {"name": "parking_category", "logicalType": "string"}), "trips.parking_category", "optional field added"),
    "enum widened": ("mds_trips@2.0.0",
                     lambda d: prop(d, "vehicle_type")["enum"].append({"value": "hoverboard"}),
                     "trips.vehicle_type", "enum widened: ['hoverboard'] allowed"),
    "range widened": ("gbfs_vehicle_status@3.0.0",
                      lambda d: prop(d, "current_fuel_percent")["logicalTypeOptions"].update(maximum=100),
                      "vehicle_status.current_fuel_percent", "maximum 1 -> 100 (widened)"),
    "required to optional": ("mds_trips@2.0.0", lambda d: prop(d, "distance").update(required=False),
                             "trips.distance", "required -> optional"),
    "sla loosened": ("mds_trips@2.0.0", lambda d: sla(d, "latency").update(value=3),
                     "sla.latency", "2 h -> 3 h (loosened)"),
    "table added": ("mds_trips@2.0.0", lambda d: d["schema"].append(
        {"name": "notes", "properties": [{"name": "note", "logicalType": "string"}]}), "notes", "table added"),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_breaking_change_needs_a_major_version(tmp_path, case):
    ref, change, where, what = BREAKING[case]
    version = load_contract(ref).version
    major = int(version.split(".")[0])
    minor_bump = variant(tmp_path, ref, f"{major}.9.0", change, name="minor")
    result = diff(ref, minor_bump, "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert {"where": where, "what": what, "breaking": True} in report["changes"], report["changes"]
    assert "without a new major version" in report["problems"][0]

    major_bump = variant(tmp_path, ref, f"{major + 1}.0.0", change, name="major")
    result = diff(ref, major_bump)
    assert result.exit_code == 0, result.output
    assert f"BREAKING   {where}: {what}" in result.stdout


@pytest.mark.parametrize("case", sorted(COMPATIBLE))
def test_compatible_change_needs_only_a_higher_version(tmp_path, case):
    ref, change, where, what = COMPATIBLE[case]
    major = int(load_contract(ref).version.split(".")[0])
    new = variant(tmp_path, ref, f"{major}.1.0", change)
    result = diff(ref, new, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["changes"] == [{"where": where, "what": what, "breaking": False}]
    assert report["breaking"] == 0 and report["ok"]


def test_a_change_without_a_version_increase_is_refused(tmp_path):
    ref, change, _, _ = COMPATIBLE["optional field added"]
    same = variant(tmp_path, ref, load_contract(ref).version, change)
    result = diff(ref, same)
    assert result.exit_code == 1 and "version did not increase" in result.stdout


def test_identical_contracts_by_name_and_by_path(tmp_path):
    ref = "mds_trips@2.0.0"
    result = diff(ref, load_contract(ref).path)
    assert result.exit_code == 0 and "no changes" in result.stdout


def test_real_gbfs_station_status_2_3_to_3_0_is_breaking_with_a_major_bump():
    result = diff("gbfs_station_status@2.3.0", "gbfs_station_status@3.0.0", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    breaking = {(c["where"], c["what"]) for c in report["changes"] if c["breaking"]}
    assert ("station_status.num_bikes_available", "field removed") in breaking
    assert ("station_status.last_reported", "physicalType changed 'int64_epoch_s' -> 'rfc3339'") in breaking


def test_unknown_contract_is_a_usage_error(tmp_path):
    result = diff("mds_trips@2.0.0", "mds_trips@7.0.0")
    assert result.exit_code == 2 and "has no version 7.0.0" in result.stderr
    result = diff("mds_trips@2.0.0", tmp_path / "missing.odcs.yaml")
    assert result.exit_code == 2 and "no such contract file" in result.stderr


def test_help():
    result = runner.invoke(app, ["contracts", "diff", "--help"])
    assert result.exit_code == 0 and "major" in result.output
