"""The partner registry: the committed one is valid, and malformed ones are named precisely."""

from pathlib import Path

import pytest
import yaml

from mobility.registry import RegistryError, expand_env, load_registry
from mobility.settings import REGISTRY_PATH


def test_committed_registry_lists_the_demo_consortium():
    reg = load_registry()
    kinds = {p.kind for p in reg.partners}
    assert kinds == {"scooter_operator", "bikeshare_operator", "transit_agency", "ridehail"}
    assert [p.id for p, _ in reg.feeds("mds_trips")] == ["scootco", "zoomride"]
    assert {f.version for _, f in reg.feeds("gbfs")} == {"2.3", "3.0"}
    assert len(reg.feeds("ridehail_trips")) == 2


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "partners.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _raw() -> dict:
    return yaml.safe_load(REGISTRY_PATH.read_text())


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["partners"][1]["feeds"][0].update(schedule="weekly"),
         "partner 'zoomride', feed 'mds_trips', field 'schedule'"),
        (lambda r: r["partners"][0]["feeds"][0].pop("credential"),
         "partner 'scootco', feed 'mds_trips'"),
        (lambda r: r["partners"][2].update(id="City Bikes"), "partner 'City Bikes', field 'id'"),
        (lambda r: r["partners"][1]["feeds"][0]["auth"].pop("token_url"),
         "partner 'zoomride', feed 'mds_trips', field 'auth'"),
        (lambda r: r["partners"][3]["feeds"][0].update(contract="gtfs"), "partner 'metro', feed 'gtfs_schedule', field 'contract'"),
        (lambda r: r["partners"][4]["feeds"][0].update(protocol="mds"), "partner 'rideco', feed 'ridehail_trips'"),
        (lambda r: r["partners"].append(dict(r["partners"][0])), "partner ids must be unique"),
    ],
)
def test_malformed_registry_names_file_partner_and_field(tmp_path, mutate, expected):
    raw = _raw()
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(RegistryError) as err:
        load_registry(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_unreadable_registry(tmp_path):
    path = tmp_path / "partners.yaml"
    path.write_text("partners: [\n")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(path)
    with pytest.raises(RegistryError, match="not found"):
        load_registry(tmp_path / "missing.yaml")


def test_endpoint_expansion(monkeypatch):
    monkeypatch.delenv("MOBILITY_PARTNER_BASE_URL", raising=False)
    assert expand_env("${MOBILITY_PARTNER_BASE_URL:-http://x:1}/a") == "http://x:1/a"
    monkeypatch.setenv("MOBILITY_PARTNER_BASE_URL", "http://127.0.0.1:9")
    assert load_registry().partner("scootco").feed("mds_trips").endpoint_url() == "http://127.0.0.1:9/scootco/mds"
