"""Landing under contract: typed bronze, quarantine with reasons, idempotence, identity."""

import hmac
import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.contracts import ContractNotFound, load_contract
from ingest.landing import Lake, land_batch, pseudonymise
from mobility.registry import load_registry
from mobility.settings import Workdir
from mds_records import HOUR, T0, payload, trip



@pytest.fixture()
def wd(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    return Workdir.resolve(tmp_path)


@pytest.fixture()
def scootco():
    p = load_registry().partner("scootco")
    return p, p.feed("mds_trips"), load_contract("mds_trips@2.0.0")


def land(wd, scootco, records, raw=None):
    partner, feed, contract = scootco
    return land_batch(wd, partner=partner, feed=feed, contract=contract, window=HOUR,
                      raw=raw if raw is not None else payload(records), source="test")


def test_good_batch_lands_typed_and_pseudonymised(wd, scootco):
    pid = scootco[0].mds_provider_id
    m = land(wd, scootco, [trip(pid, i) for i in range(5)])
    assert m["outcome"] == "accepted" and m["rows_accepted"] == 5
    table = pq.read_table(Lake(wd, "scootco", "mds_trips").bronze(HOUR))
    assert table.num_rows == 5
    assert str(table.schema.field("start_time").type) == "timestamp[ms, tz=UTC]"
    raw_ids = {str(uuid.UUID(int=i + 1)) for i in range(5)}
    assert not raw_ids & set(table.column("trip_id").to_pylist())  # pseudonymised
    assert all(len(t) == 32 for t in table.column("trip_id").to_pylist())
    assert (wd.root / m["raw_path"]).read_bytes() == payload([trip(pid, i) for i in range(5)])


@pytest.mark.parametrize("key", [b"k", b"test-key", b"k" * 64, b"k" * 65, "cl\u00e9".encode()])
def test_pseudonyms_are_hmac_sha256_of_the_id(key):
    """The vectorised keyed hash gives exactly HMAC-SHA256 (hex, 128 bits), so pseudonyms of ids
    already landed stay the same."""
    ids = ["a-trip", "", "\u00e9\u2603\U0001f600", "x" * 200, None, "a-trip", *(str(uuid.UUID(int=i)) for i in range(300))]
    expected = [None if v is None else hmac.digest(key, v.encode(), "sha256").hex()[:32] for v in ids]
    assert pseudonymise(pa.array(ids), key).to_pylist() == expected


def test_bad_rows_are_quarantined_with_row_field_and_rule(wd, scootco):
    pid = scootco[0].mds_provider_id
    missing = trip(pid, 1)
    del missing["end_location"]
    records = [trip(pid, 0), missing, trip(pid, 2, duration="ten"), trip(pid, 0, device_id=str(uuid.UUID(int=7))),
               trip(pid, 4, end_time=T0 + 3_700_000)]
    m = land(wd, scootco, records)
    assert m["outcome"] == "partial"
    assert (m["rows_accepted"], m["rows_rejected"]) == (1, 4)
    folder = Lake(wd, "scootco", "mds_trips").quarantine(HOUR, m["raw_sha256"])
    report = json.loads((folder / "report.json").read_text())
    rules = {(r["field"], r["rule"]) for r in report["failed_rules"]}
    assert ("end_location.lat", "required") in rules
    assert ("duration", "type:integer") in rules
    assert ("trip_id", "unique") in rules
    assert ("end_time", "in_request_window") in rules
    assert "row 2: field 'duration' breaks rule 'type:integer'" in " ".join(report["violations"])
    assert report["file"] == m["raw_path"]


def test_landing_twice_is_idempotent_and_resubmission_replaces(wd, scootco):
    pid = scootco[0].mds_provider_id
    lake = Lake(wd, "scootco", "mds_trips")
    first = [trip(pid, i) for i in range(3)]
    land(wd, scootco, first)
    land(wd, scootco, first)
    assert pq.read_table(lake.bronze(HOUR)).num_rows == 3
    assert len(lake.manifests()) == 1
    corrected = [trip(pid, i) for i in range(4)]
    m = land(wd, scootco, corrected)
    assert pq.read_table(lake.bronze(HOUR)).column("batch_id").to_pylist() == [m["batch_id"]] * 4
    assert len(list((wd.bronze / "mds_trips").rglob("*.parquet"))) == 1


def test_rejected_resubmission_keeps_the_good_batch(wd, scootco):
    pid = scootco[0].mds_provider_id
    lake = Lake(wd, "scootco", "mds_trips")
    good = land(wd, scootco, [trip(pid, i) for i in range(3)])
    bad = land(wd, scootco, None, raw=b'{"version": "2.0.0", "trips": [{"trip_id": ')
    assert bad["outcome"] == "rejected" and "unreadable payload" in bad["error"]
    assert pq.read_table(lake.bronze(HOUR)).column("batch_id").to_pylist() == [good["batch_id"]] * 3


def test_payload_claiming_another_provider_is_refused(wd, scootco):
    other = load_registry().partner("zoomride").mds_provider_id
    m = land(wd, scootco, [trip(scootco[0].mds_provider_id, 0), trip(other, 1)])
    assert m["outcome"] == "rejected"
    assert "provider_id" in m["error"] and "scootco" in m["error"]
    assert not Lake(wd, "scootco", "mds_trips").bronze(HOUR).exists()


def test_extra_field_is_a_warning_not_a_rejection(wd, scootco):
    m = land(wd, scootco, [trip(scootco[0].mds_provider_id, 0, surprise=1)])
    assert m["outcome"] == "accepted"
    assert any("surprise" in w for w in m["warnings"])


def test_empty_hour(wd, scootco):
    m = land(wd, scootco, [])
    assert m["outcome"] == "empty"
    assert pq.read_table(Lake(wd, "scootco", "mds_trips").bronze(HOUR)).num_rows == 0


def test_unknown_contract():
    with pytest.raises(ContractNotFound, match="unknown contract"):
        load_contract("nope@1.0.0")
    with pytest.raises(ContractNotFound, match="no version 9.9.9"):
        load_contract("mds_trips@9.9.9")


def test_contracts_conform_to_the_odcs_schema():
    import jsonschema
    import yaml
    from open_data_contract_standard.model import OpenDataContractStandard

    from mobility.settings import CONTRACTS_DIR

    schema = json.loads(OpenDataContractStandard.json_schema())
    files = sorted(CONTRACTS_DIR.rglob("*.odcs.yaml"))
    assert files
    for path in files:
        errors = list(jsonschema.Draft201909Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path}: {[e.message for e in errors[:3]]}"
