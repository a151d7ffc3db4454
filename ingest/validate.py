"""`mobility validate`: a partner checks a file before sending it, with the city's own checks.

For each file this runs what landing runs (`parse_records` then `Contract.check`, the same
contract and the same code; for a CSV file drop, landing's column-wise check of the file, read in
blocks, whose verdicts are the same) and then the reference rules of the feed's standard
(`ingest.reference_schemas`): the official GBFS / MDS JSON Schemas, MobilityData's canonical GTFS
rules. A contract violation or a reference ERROR makes the file invalid; warnings do not.

What is checked is recognised from the input unless a contract is named:
- a folder holding GTFS files (stops.txt, trips.txt...) or a ``.zip``: a GTFS schedule;
- a folder of ``.json`` files: the files of a GBFS feed, each checked on its own;
- a JSON file with ``version`` and ``trips`` / ``events`` / ``vehicles_status``...: MDS 2.0;
- a JSON file with ``version``, ``data``, ``ttl`` and ``last_updated``: GBFS, the file known by
  its name (``free_bike_status.json``) or, failing that, by what its ``data`` holds;
- a ``.csv`` file: the file-drop contract whose columns its header carries.

Problems with the request itself (no such file, unknown contract, a file that is no known feed)
raise `UsageError`; everything about the file's content is a finding in the `Report`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ingest.columnar import CheckStream
from ingest.contracts import Contract, ContractNotFound, available, load_contract
from ingest.payloads import PayloadError, ZipLimits, parse_records, read_zip_member
from ingest.reference_schemas import (
    GBFS_VERSIONS, MDS_ENDPOINTS, Issue, ReferenceResult, check_gbfs, check_gtfs, check_mds, gbfs_file_names, not_run,
)
from mobility.settings import reference_schemas_dir

MAX_EXAMPLES = 5
GTFS_FILES = frozenset({
    "agency.txt", "stops.txt", "routes.txt", "trips.txt", "stop_times.txt", "calendar.txt",
    "calendar_dates.txt", "feed_info.txt", "shapes.txt", "frequencies.txt", "transfers.txt",
})
# MDS 2.0 payloads by the key holding their records -> the contract that covers them
MDS_CONTRACTS = {
    "trips": "mds_trips@2.0.0",
    "events": "mds_events@2.0.0",
    "vehicles_status": "mds_vehicle_status@2.0.0",
}
# what a GBFS file's `data` holds, to know the file when its name does not say
GBFS_DATA_KEYS = {
    "bikes": "free_bike_status", "vehicles": "vehicle_status", "vehicle_types": "vehicle_types",
    "versions": "gbfs_versions", "regions": "system_regions", "plans": "system_pricing_plans",
    "alerts": "system_alerts", "geofencing_zones": "geofencing_zones", "rental_hours": "system_hours",
    "calendars": "system_calendar", "datasets": "manifest", "feeds": "gbfs", "system_id": "system_information",
}
GBFS_KNOWN_FILES = frozenset(GBFS_DATA_KEYS.values()) | {"station_status", "station_information"}
_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


class UsageError(ValueError):
    """The request cannot be carried out (exit code 2): the file's content was not judged."""


@dataclass(frozen=True)
class Finding:
    """One problem: where (file, row, field), which rule, an example value, and who said so."""

    file: str
    source: str  # "contract" | "reference" | "payload"
    severity: str  # "error" | "warning" | "info"
    rule: str
    message: str
    field: str | None = None
    row: int | None = None
    row_kind: str | None = None  # "record" (0-based, as landing counts) or "line" (CSV line, 1 = header)
    value: str | None = None


def _row_label(kind: str | None, row: int) -> str:
    """`record 3` (0-based, as landing counts), `line 17` (CSV line, 1 = header) or `data.bikes[3]`."""
    return f"{kind} {row}" if kind in (None, "record", "line") else f"{kind}[{row}]"


@dataclass
class FileReport:
    """The verdict on one file (or one GTFS feed)."""

    file: str
    detected: str
    contract: str | None = None
    tables: list[str] = field(default_factory=list)
    records: int = 0
    rows_rejected: int = 0
    reference: ReferenceResult | None = None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    def groups(self) -> list[dict[str, Any]]:
        """Findings grouped by (file, source, severity, rule, field), with counts and examples."""
        grouped: dict[tuple, dict[str, Any]] = {}
        for f in self.findings:
            key = (f.file, f.source, f.severity, f.rule, f.field)
            g = grouped.setdefault(key, {
                "file": f.file, "source": f.source, "severity": f.severity, "rule": f.rule,
                "field": f.field, "count": 0, "examples": [],
            })
            g["count"] += 1
            if len(g["examples"]) < MAX_EXAMPLES:
                g["examples"].append({"row": f.row, "row_kind": f.row_kind, "value": f.value, "message": f.message})
        order = {"error": 0, "warning": 1, "info": 2}
        return sorted(grouped.values(), key=lambda g: (order.get(g["severity"], 3), g["file"], g["rule"]))

    def to_dict(self) -> dict[str, Any]:
        ref = self.reference
        return {
            "file": self.file,
            "detected": self.detected,
            "contract": self.contract,
            "tables": self.tables,
            "records": self.records,
            "rows_rejected": self.rows_rejected,
            "reference": None if ref is None else {
                "name": ref.name, "ran": ref.ran, "source": ref.source, "note": ref.note,
                "errors": sum(i.severity == "error" for i in ref.issues),
                "warnings": sum(i.severity == "warning" for i in ref.issues),
            },
            "valid": self.errors == 0,
            "errors": self.errors,
            "warnings": self.warnings,
            "findings": self.groups(),
            "notes": self.notes,
        }


@dataclass
class Report:
    path: str
    files: list[FileReport] = field(default_factory=list)
    reference_root: str = ""

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.files)

    @property
    def warnings(self) -> int:
        return sum(f.warnings for f in self.files)

    @property
    def valid(self) -> bool:
        return self.errors == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.valid else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "valid": self.valid,
            "errors": self.errors,
            "warnings": self.warnings,
            "reference_schemas": self.reference_root,
            "files": [f.to_dict() for f in self.files],
        }

    def to_text(self) -> str:
        lines = [f"mobility validate {self.path}"]
        for fr in self.files:
            d = fr.to_dict()
            lines.append("")
            lines.append(f"{fr.file}")
            lines.append(f"  recognised as: {fr.detected}")
            if fr.contract:
                tables = f" (table {', '.join(fr.tables)})" if fr.tables else ""
                lines.append(f"  contract:  {fr.contract}{tables}: {fr.records} records, {fr.rows_rejected} rejected")
            else:
                lines.append("  contract:  none covers this file (reference check only)")
            ref = d["reference"]
            if ref is not None:
                status = (f"ran, {ref['errors']} errors, {ref['warnings']} warnings" if ref["ran"]
                          else "NOT RUN")
                lines.append(f"  reference: {ref['name']}: {status}")
                if ref["note"]:
                    lines.append(f"             {ref['note']}")
            for note in fr.notes:
                lines.append(f"  note: {note}")
            for g in d["findings"]:
                where = g["file"] + (f", field '{g['field']}'" if g["field"] else "")
                lines.append(f"  {g['severity'].upper():7} [{g['source']}] {g['rule']} in {where}: {g['count']}x")
                for ex in g["examples"]:
                    at = f"{_row_label(ex['row_kind'], ex['row'])}: " if ex["row"] is not None else ""
                    value = f" (value: {ex['value']})" if ex["value"] not in (None, "") else ""
                    lines.append(f"      {at}{_clip(ex['message'])}{value}")
            lines.append(f"  verdict: {'VALID' if d['valid'] else 'INVALID'} "
                         f"({d['errors']} errors, {d['warnings']} warnings)")
        lines.append("")
        lines.append(f"{'VALID' if self.valid else 'INVALID'}: {len(self.files)} file(s), "
                     f"{self.errors} errors, {self.warnings} warnings")
        return "\n".join(lines)


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


# ------------------------------------------------------------------------------ entry point

def validate(path: str | Path, contract: str | None = None, *, reference_root: str | Path | None = None,
             city_workdir: Path | None = None) -> Report:
    """Check a file or folder; `contract` is ``name`` or ``name@version`` (detected when None)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file or folder: {path}")
    root = Path(reference_root).expanduser() if reference_root else reference_schemas_dir()
    explicit = _load(contract) if contract else None
    report = Report(path=str(path), reference_root=str(root))
    if _is_gtfs(path, explicit):
        report.files.append(_validate_gtfs(path, explicit, root))
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".json")
        if not files:
            raise UsageError(f"{path} holds neither GTFS files nor GBFS .json files")
        reports = [_validate_json(p, explicit, root, in_folder=True) for p in files]
        if explicit is not None and not any(r.contract for r in reports):
            raise UsageError(f"contract {explicit.ref} covers none of the files in {path}")
        report.files.extend(reports)
    elif path.suffix.lower() == ".csv" or (explicit is not None and explicit.payload_format == "csv"):
        report.files.append(_validate_csv(path, explicit, city_workdir))
    else:
        report.files.append(_validate_json(path, explicit, root, in_folder=False))
    return report


def _load(ref: str) -> Contract:
    try:
        return load_contract(ref)
    except ContractNotFound as exc:
        raise UsageError(str(exc)) from None


def _contract_findings(file: str, table: Contract, result: Any) -> list[Finding]:
    # JSON records are named by where they sit in the payload (data.bikes[3]), as the reference does
    row_kind = table.payload_key if table.payload_format == "json" and table.payload_key else "record"
    out = [
        Finding(file, "contract", "error", v.rule, _explain(table, v.field, v.rule), field=v.field,
                row=v.row, row_kind=row_kind, value=v.value)
        for v in result.violations
    ]
    out += [Finding(file, "contract", "warning", "contract:extra_field", w) for w in result.warnings]
    return out


def _explain(table: Contract, name: str, rule: str) -> str:
    """The contract rule in words, with its bound, so the partner need not open the contract."""
    f = next((f for f in table.fields if f.name == name), None)
    kind, _, arg = rule.partition(":")
    if name == "<record>":
        return "not a record the contract can read"
    if f is None:
        return f"breaks the contract's quality rule '{rule}'"
    if rule == "required":
        return "required by the contract, but missing"
    if rule == "minimum":
        return f"below the contract's minimum {f.minimum}"
    if rule == "maximum":
        return f"above the contract's maximum {f.maximum}"
    if rule == "enum":
        allowed = sorted(map(str, f.enum or ()))
        return f"not one of {allowed[:10]}{' ...' if len(allowed) > 10 else ''}"
    if rule == "unique":
        return "repeats a value that must be unique in the batch"
    if rule == "pattern":
        return f"does not match the pattern {f.pattern.pattern if f.pattern else ''}"
    if kind == "type":
        return f"not of type {arg}"
    if kind == "format":
        return f"not a valid {arg}"
    if kind == "range":
        return f"a {arg} outside 2010-2100: a unit mistake (seconds vs milliseconds?)"
    if kind == "codes":
        return f"not in the reference set '{arg}'"
    return f"breaks contract rule '{rule}'"


def _reference_findings(file: str, ref: ReferenceResult) -> list[Finding]:
    if not ref.ran:
        return [Finding(file, "reference", "warning", "reference:not_run", ref.note or "reference check not run")]
    return [_from_issue(file, i) for i in ref.issues]


def _from_issue(file: str, issue: Issue) -> Finding:
    if issue.path:  # JSON: the first list index is the record; the rest names the field
        path = list(issue.path)
        idx = next((k for k, p in enumerate(path) if isinstance(p, int)), None)
        if idx is None:
            return Finding(file, "reference", issue.severity, issue.rule, issue.message,
                           field=".".join(map(str, path)), value=issue.value)
        field_path = ".".join(map(str, path[idx + 1:])) or "<record>"
        where = ".".join(map(str, path[:idx]))
        return Finding(file, "reference", issue.severity, issue.rule, issue.message, field=field_path,
                       row=path[idx], row_kind=where or "item", value=issue.value)
    return Finding(issue.file or file, "reference", issue.severity, issue.rule, issue.message,
                   field=issue.field, row=issue.row, row_kind="line" if issue.row is not None else None,
                   value=issue.value)


# ------------------------------------------------------------------------------ JSON feeds

@dataclass(frozen=True)
class _Detected:
    kind: str  # "gbfs" | "mds"
    version: str
    name: str  # GBFS file (free_bike_status...) or MDS records key (trips...)
    how: str


def _detect_json(path: Path, payload: Any, root: Path) -> _Detected:
    if not isinstance(payload, dict):
        raise UsageError(f"{path}: a JSON {type(payload).__name__}, not a GBFS or MDS response object")
    version = payload.get("version")
    if {"data", "ttl", "last_updated"} <= payload.keys() and isinstance(version, str):
        if version not in GBFS_VERSIONS:
            raise UsageError(f"{path}: GBFS version {version!r}; contracts and reference schemas cover "
                             f"GBFS {' and '.join(GBFS_VERSIONS)}")
        names = set(gbfs_file_names(root, version)) | GBFS_KNOWN_FILES
        stem = path.stem.lower()
        by_name = max((n for n in names if n in stem), key=len, default=None)
        if by_name:
            return _Detected("gbfs", version, by_name, f"GBFS {version} (its `version`), {by_name}.json (its file name)")
        by_data = _gbfs_kind_from_data(payload.get("data"))
        if by_data:
            return _Detected("gbfs", version, by_data, f"GBFS {version} (its `version`), {by_data}.json (what `data` holds)")
        raise UsageError(f"{path}: a GBFS {version} file, but neither its name nor its `data` says which one; "
                         "name it after the GBFS file (e.g. station_status.json)")
    keys = [k for k in MDS_ENDPOINTS if k in payload]
    if isinstance(version, str) and keys:
        if not version.startswith("2."):
            raise UsageError(f"{path}: MDS version {version!r}; the consortium's contracts cover MDS 2.0")
        return _Detected("mds", version, keys[0], f"MDS {version} (its `version`), Provider {MDS_ENDPOINTS[keys[0]]} "
                                                 f"response (it holds `{keys[0]}`)")
    if isinstance(version, str) and isinstance(payload.get("data"), dict) and (
            {"trips", "status_changes"} & payload["data"].keys()):
        raise UsageError(f"{path}: an MDS {version} (1.x/0.x) payload; the consortium's contracts cover MDS 2.0")
    raise UsageError(f"{path}: not recognisably GBFS (version, data, ttl, last_updated) or MDS 2.0 "
                     f"(version and one of {', '.join(MDS_ENDPOINTS)}); name the contract with --contract")


def _gbfs_kind_from_data(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("stations"), list):
        first = next((s for s in data["stations"] if isinstance(s, dict)), {})
        return "station_status" if "is_renting" in first or "last_reported" in first else "station_information"
    for key, kind in GBFS_DATA_KEYS.items():
        if key in data:
            return kind
    if any(isinstance(v, dict) and "feeds" in v for v in data.values()):  # v2: data.<language>.feeds
        return "gbfs"
    return None


def _gbfs_contract(version: str, kind: str) -> Contract | None:
    """The contract table that lands this GBFS file (its `gbfs_feed`), for this GBFS version."""
    for cid, versions in available().items():
        for v in versions:
            if not v.startswith(version + "."):
                continue
            for table in load_contract(f"{cid}@{v}").tables():
                if table.properties.get("gbfs_feed") == kind:
                    return table
    return None


def _table_for(contract: Contract, detected: _Detected | None) -> Contract | None:
    tables = contract.tables()
    if detected is not None and detected.kind == "gbfs":
        match = [t for t in tables if t.properties.get("gbfs_feed") == detected.name]
        return match[0] if match else None
    return tables[0] if len(tables) == 1 else None


def _validate_json(path: Path, explicit: Contract | None, root: Path, *, in_folder: bool) -> FileReport:
    raw = path.read_bytes()
    name = path.name
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        fr = FileReport(file=str(path), detected="unreadable JSON", contract=explicit.ref if explicit else None)
        fr.findings.append(Finding(name, "payload", "error", "payload:json", f"not valid JSON: {exc}"))
        return fr
    try:
        detected: _Detected | None = _detect_json(path, payload, root)
    except UsageError:
        if explicit is None:
            raise
        detected = None  # the named contract decides; the reference check cannot be chosen
    fr = FileReport(file=str(path), detected=detected.how if detected else f"as contract {explicit.ref} says")

    if explicit is not None:
        table = _table_for(explicit, detected)
        if table is None and not in_folder:
            raise UsageError(f"contract {explicit.ref} has no table for {name} "
                             f"(tables: {', '.join(t.table for t in explicit.tables())})")
    elif detected.kind == "mds":
        ref = MDS_CONTRACTS.get(detected.name)
        if ref is None:
            table = None
            fr.notes.append(f"no contract covers MDS `{detected.name}` payloads: checked against the reference only")
        else:
            try:
                table = load_contract(ref)
            except ContractNotFound as exc:
                raise UsageError(f"{name} is an MDS {detected.name} payload, covered by contract {ref}, "
                                 f"which is not in this project's contracts/ ({exc})") from None
    else:
        table = _gbfs_contract(detected.version, detected.name)

    if table is not None:
        fr.contract, fr.tables = table.ref, [table.table]
        try:
            records = parse_records(table, raw)
        except PayloadError as exc:
            fr.findings.append(Finding(name, "payload", "error", "payload", f"unreadable under {table.ref}: {exc}"))
        else:
            result = table.check(records)
            fr.records, fr.rows_rejected = result.rows_received, result.rows_rejected
            fr.findings += _contract_findings(name, table, result)
            if table.window_field:
                fr.notes.append(f"rule '{table.window_field} inside the requested window' is checked at landing, "
                                "where the window is known")

    if detected is None:
        fr.reference = not_run("reference schema", "the file is not recognisably GBFS or MDS 2.0")
    elif detected.kind == "gbfs":
        fr.reference = check_gbfs(payload, version=detected.version, file_kind=detected.name, root=root)
    else:
        fr.reference = check_mds(payload, records_key=detected.name, root=root)
    fr.findings += _reference_findings(name, fr.reference)
    return fr


# ------------------------------------------------------------------------------ GTFS

def _is_gtfs(path: Path, explicit: Contract | None) -> bool:
    if explicit is not None:
        return explicit.payload_format == "gtfs_zip"
    if path.is_dir():
        return any((path / n).is_file() for n in GTFS_FILES)
    return path.suffix.lower() == ".zip"


def _zip_folder(folder: Path, limits: ZipLimits) -> bytes:
    """A GTFS folder as the zip a partner would send, so it is read exactly as landing reads one."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if len(files) > limits.max_members:
        raise PayloadError(f"{folder} holds {len(files)} files; at most {limits.max_members} are accepted")
    total = sum(p.stat().st_size for p in files)
    if total > limits.max_total_bytes:
        raise PayloadError(f"{folder} holds {total} bytes; the limit is {limits.max_total_bytes}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for p in files:
            archive.write(p, p.name)
    return buf.getvalue()


def _validate_gtfs(path: Path, explicit: Contract | None, root: Path) -> FileReport:
    contract = explicit or _newest_with_format("gtfs_zip")
    how = "a GTFS schedule (" + ("a zip" if path.is_file() else "a folder of GTFS files") + ")"
    fr = FileReport(file=str(path), detected=how, contract=contract.ref)
    tables = contract.tables()
    fr.tables = [t.table for t in tables]
    limits = ZipLimits.of(tables[0])
    vetted = True
    try:
        raw = _zip_folder(path, limits) if path.is_dir() else path.read_bytes()
        read_zip_member(raw, "", limits)  # vets the whole archive (paths, counts, sizes) before anything reads it
    except PayloadError as exc:
        fr.findings.append(Finding(path.name, "payload", "error", "payload", str(exc)))
        vetted = False
    if vetted:
        for table in tables:
            member = table.properties.get("zip_member", table.table)
            try:
                records = parse_records(table, raw)
            except PayloadError as exc:
                fr.findings.append(Finding(member, "payload", "error", "payload", str(exc)))
                continue
            result = table.check(records)
            fr.records += result.rows_received
            fr.rows_rejected += result.rows_rejected
            fr.findings += _contract_findings(member, table, result)
        fr.reference = check_gtfs(path)
    else:
        fr.reference = not_run("MobilityData canonical GTFS rules", "the archive was refused unread (see the error)")
    fr.findings += _reference_findings(path.name, fr.reference)
    infos = [f for f in fr.findings if f.severity == "info"]
    if infos:
        fr.notes.append(f"{len(infos)} INFO notice(s) of the GTFS rules (listed, never a rejection)")
    return fr


def _newest_with_format(fmt: str) -> Contract:
    found = [load_contract(cid) for cid in available()]
    match = [c for c in found if c.payload_format == fmt]
    if not match:
        raise UsageError(f"no contract in contracts/ reads payload_format {fmt!r}")
    return match[0]


# ------------------------------------------------------------------------------ CSV file drops

def _validate_csv(path: Path, explicit: Contract | None, city_workdir: Path | None) -> FileReport:
    contract = explicit or _csv_contract_for(path)
    fr = FileReport(file=str(path), detected=f"a CSV file drop ({'as named' if explicit else 'by its header'})",
                    contract=contract.ref, tables=[contract.table])
    contract = _bind_codes(contract, city_workdir, fr)
    window = None
    day = _DATE_IN_NAME.search(path.name)
    if day:
        start = datetime.fromisoformat(day.group(1)).replace(tzinfo=timezone.utc)
        window = (start, start + timedelta(days=1))  # a dropped file stands for the date in its name
    elif contract.window_field:
        fr.notes.append(f"no YYYY-MM-DD in the file name: the rule that records fall on the file's date "
                        f"('{contract.window_field}') was not checked")
    # landing's own check of a dropped file: read from disk in blocks, column-wise (the row check
    # where that cannot decide), same verdicts; the accepted rows are not kept
    stream = CheckStream(contract, path, window=window)
    try:
        for _ in stream:
            pass
    except PayloadError as exc:
        fr.findings.append(Finding(path.name, "payload", "error", "payload", str(exc)))
        return fr
    result = stream.result.result
    fr.records, fr.rows_rejected = result.rows_received, result.rows_rejected
    fr.findings += _contract_findings(path.name, contract, result)
    fr.notes.append("no reference standard applies to file drops: the contract is the whole check")
    return fr


def _csv_contract_for(path: Path) -> Contract:
    with path.open("rb") as fh:
        head = fh.read(65536)
    try:
        header = {h.strip() for h in next(csv.reader(io.StringIO(head.decode("utf-8-sig", "replace"))))}
    except StopIteration:
        raise UsageError(f"{path}: empty file") from None
    best: tuple[int, Contract] | None = None
    for cid in available():
        c = load_contract(cid)
        if c.payload_format != "csv":
            continue
        names = {f.name for f in c.fields}
        if all(f.name in header for f in c.fields if f.required):
            score = len(names & header)
            if best is None or score > best[0]:
                best = (score, c)
    if best is None:
        raise UsageError(f"{path}: its header matches no file-drop contract's required columns; name one with --contract")
    return best[1]


def _bind_codes(contract: Contract, city_workdir: Path | None, fr: FileReport) -> Contract:
    """Code rules need the city's reference sets (neighborhood ids): bound from the workdir's
    city when there is one; otherwise those rules are left out, and the report says so."""
    codes = sorted({f.codes for f in contract.fields if f.codes})
    if not codes:
        return contract
    from mobility.pipeline import REFERENCE_CODES
    from mobility.settings import Workdir

    wd = Workdir.resolve(city_workdir)
    if wd.neighborhoods.is_file():
        return contract.with_codes({name: REFERENCE_CODES[name](wd) for name in codes})
    # a rule that cannot run is said as a warning, never a silent pass
    fr.findings.append(Finding(Path(fr.file).name, "contract", "warning", "contract:codes_not_checked",
                               f"code rule(s) {codes} NOT checked: no city in {wd.root} (pass --workdir of a loaded city)"))
    fields = tuple(dataclasses.replace(f, codes=None) for f in contract.fields)
    return dataclasses.replace(contract, fields=fields)
