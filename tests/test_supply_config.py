"""Compliance rules in the registry, and how they reach dbt."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml

from mobility.registry import RegistryError, load_registry
from mobility.settings import REGISTRY_PATH


def _registry_with(tmp_path, **compliance):
    raw = yaml.safe_load(REGISTRY_PATH.read_text())
    raw["consortium"]["compliance"] = compliance
    path = tmp_path / "partners.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_registry_compliance_rules_are_read_and_checked(tmp_path):
    rules = load_registry().consortium.compliance
    assert rules.equity_zone_required_share == 0.5 and rules.local_hours == [7, 12, 17]
    assert set(rules.fleet_caps) <= {p.id for p in load_registry().partners}

    with pytest.raises(RegistryError, match="check hours are whole local hours 'HH:00'; got \\['7:30'\\]"):
        load_registry(_registry_with(tmp_path, check_hours=["7:30"]))
    with pytest.raises(RegistryError, match="fleet_caps name unknown partner\\(s\\): nobody"):
        load_registry(_registry_with(tmp_path, fleet_caps={"nobody": 10}))
    with pytest.raises(RegistryError, match="equity_zone_required_share"):
        load_registry(_registry_with(tmp_path, equity_zone_required_share=1.5))
    assert load_registry(_registry_with(tmp_path, check_hours=["08:00"])).consortium.compliance.local_hours == [8]


def test_dbt_vars_come_from_the_registry_and_the_contracts():
    from ingest.contracts import load_contract
    from mobility.warehouse.build import consortium_vars

    v = consortium_vars()
    assert v["partner_modes"] == {"scootco": "scooter", "zoomride": "scooter", "citybikes": "bikeshare"}
    assert v["compliance_local_hours"] == [7, 12, 17] and v["equity_zone_required_share"] == 0.5
    assert v["fleet_caps"] == load_registry().consortium.compliance.fleet_caps
    assert v["contract_latency_hours"]["mds_trips"] == load_contract("mds_trips").sla_latency_hours() == 2
    assert v["contract_latency_hours"]["mds_vehicle_status"] == pytest.approx(10 / 60)


def test_demo_samples_status_feeds_every_few_hours_and_at_each_check_hour():
    from mobility.demo import snapshot_times

    tz = ZoneInfo("America/Chicago")
    start, end = datetime(2026, 11, 2, 6, tzinfo=timezone.utc), datetime(2026, 11, 3, 6, tzinfo=timezone.utc)
    local = [t.astimezone(tz) for t in snapshot_times(start, end, tz, [7, 12, 17])]
    assert [t.hour for t in local] == [0, 3, 6, 7, 9, 12, 15, 17, 18, 21]
    assert all(t.minute == 1 for t in local)  # inside the five-minute window of the hour
