"""The reference rules a feed is held to besides its contract: the official GBFS and MDS JSON
Schemas, and MobilityData's canonical GTFS rules.

The official schemas cannot ship with the project; they are read from the folder
`mobility.settings.reference_schemas_dir()` (``$MOBILITY_REFERENCE_SCHEMAS``, laid out as
``gbfs/schemas/v2.3``, ``gbfs/schemas/v3.0``, ``mds/schemas/mds-openapi-2.0``). When a schema is
not there the check is reported as not run, never as passed. GTFS is checked by `gtfs-guru`, a
maintained port of MobilityData's canonical validator (same notice codes and severities): an
ERROR notice rejects a feed, a WARNING does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

GBFS_VERSIONS = ("2.3", "3.0")
MDS_FOLDER = Path("mds/schemas/mds-openapi-2.0")
# the 200 response of each MDS 2.0 Provider endpoint, inside reference/provider.yaml
MDS_ENDPOINTS = {
    "trips": "/trips",
    "events": "/events/historical",
    "vehicles_status": "/vehicles/status",
    "vehicles": "/vehicles",
    "telemetry": "/telemetry",
}
MAX_ISSUES = 10_000  # a whole file of bad rows is reported by counts and examples, not exhaustively


@dataclass(frozen=True)
class Issue:
    """One thing a reference rule found. `path` is the JSON path in the payload (JSON feeds);
    GTFS notices give `file`, `row` (the CSV line, 1 = header) and `field` instead."""

    rule: str
    severity: str  # "error" | "warning" | "info"
    message: str
    path: tuple[Any, ...] = ()
    value: str | None = None
    file: str | None = None
    row: int | None = None
    field: str | None = None


@dataclass
class ReferenceResult:
    name: str  # what was applied, e.g. "GBFS 2.3 free_bike_status.json (official JSON Schema)"
    ran: bool
    source: str | None = None  # the schema file (or validator) used
    note: str | None = None  # why it did not run, or what was adapted
    issues: list[Issue] = field(default_factory=list)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def not_run(name: str, why: str) -> ReferenceResult:
    return ReferenceResult(name=name, ran=False, note=f"reference check NOT run: {why}")


# ------------------------------------------------------------------------------ JSON Schema

def _issues(errors: Iterable[ValidationError]) -> list[Issue]:
    out: list[Issue] = []
    for error in errors:
        if len(out) >= MAX_ISSUES:
            break
        out.append(_issue(error))
    return out


def _issue(error: ValidationError) -> Issue:
    if error.validator in ("anyOf", "oneOf") and isinstance(error.validator_value, list):
        # GBFS states the intent of its alternatives in `errorMessage` (an ajv extension): use it
        said = [s.get("errorMessage") for s in error.validator_value if isinstance(s, dict) and s.get("errorMessage")]
        if said:
            return Issue(f"schema:{error.validator}", "error", " or ".join(said), tuple(error.absolute_path),
                         _short(error.instance))
        if error.context:  # say which branch came closest instead of "not valid under any"
            error = best_match(error.context)
    path = tuple(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        return Issue("schema:required", "error", error.message, path + tuple(missing[:1]), "missing")
    return Issue(f"schema:{error.validator}", "error", error.message, path, _short(error.instance))


@lru_cache(maxsize=None)
def _gbfs_validator(path: Path) -> jsonschema.Draft7Validator:
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def gbfs_file_names(root: Path, version: str) -> list[str]:
    """The GBFS files the official schemas of `version` describe (e.g. free_bike_status)."""
    folder = root / "gbfs" / "schemas" / f"v{version}"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def check_gbfs(payload: Any, *, version: str, file_kind: str, root: Path) -> ReferenceResult:
    """A GBFS file against the official draft-07 schema of its version, formats included."""
    name = f"GBFS {version} {file_kind}.json (official JSON Schema, formats checked)"
    path = root / "gbfs" / "schemas" / f"v{version}" / f"{file_kind}.json"
    if not root.is_dir():
        return not_run(name, f"the reference schema folder {root} does not exist (set MOBILITY_REFERENCE_SCHEMAS)")
    if not path.is_file():
        return not_run(name, f"no official schema {path.relative_to(root)} in {root}")
    validator = _gbfs_validator(path)
    return ReferenceResult(name=name, ran=True, source=str(path), issues=_issues(validator.iter_errors(payload)))


def _repair_mds(node: Any) -> Any:
    """Read the official MDS 2.0 models as their authors meant them, without touching the files.

    Two known defects of mds-openapi @ v2.0 would otherwise reach partners as false verdicts:
    - `modes/*/event.yaml` write ``contains: [event types]``, which is not JSON Schema
      (`contains` takes a schema): read as ``contains: {enum: [...]}``, "has one of these";
    - `trip.yaml` and `event.yaml` combine the per-mode definitions with ``oneOf``, but a plain
      micromobility record also satisfies other modes' permissive definitions, so exactly-one
      fails for every such record: read that ``oneOf`` as ``anyOf``.
    """
    if isinstance(node, list):
        return [_repair_mds(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _repair_mds(v) for k, v in node.items()}
    if isinstance(out.get("contains"), list):
        out["contains"] = {"enum": out["contains"]}
    alternatives = out.get("oneOf")
    if isinstance(alternatives, list) and alternatives and all(
        isinstance(a, dict) and "/modes/" in str(a.get("$ref", "")) for a in alternatives
    ):
        out["anyOf"] = out.pop("oneOf")
    return out


@lru_cache(maxsize=None)
def _mds_registry(folder: Path) -> Registry:
    resources = []
    for path in sorted(folder.rglob("*.yaml")):
        contents = _repair_mds(yaml.safe_load(path.read_text()))
        resources.append((path.resolve().as_uri(), Resource.from_contents(contents, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


def _pointer_part(text: str) -> str:
    return text.replace("~", "~0").replace("/", "~1")


def _inline(node: Any, resolver: Any, seen: frozenset[int] = frozenset()) -> Any:
    """The schema with every $ref replaced by its target, resolved once through the registry.

    Validating against the inlined tree gives the same verdicts several times faster: the
    validator no longer resolves (and URL-joins) a dozen references per record. A $ref with
    sibling keywords (2020-12 allows them, e.g. `maximum` beside a `$ref`) keeps both, as allOf.
    """
    if isinstance(node, list):
        return [_inline(n, resolver, seen) for n in node]
    if not isinstance(node, dict):
        return node
    if isinstance(node.get("$ref"), str):
        resolved = resolver.lookup(node["$ref"])
        key = id(resolved.contents)
        if key in seen:  # a recursive schema: keep the reference (MDS trips/events/status have none)
            return node
        target = _inline(resolved.contents, resolved.resolver, seen | {key})
        rest = {k: _inline(v, resolver, seen) for k, v in node.items() if k != "$ref"}
        return {"allOf": [target], **rest} if rest else target
    return {k: _inline(v, resolver, seen) for k, v in node.items()}


@lru_cache(maxsize=None)
def _mds_validator(folder: Path, endpoint: str) -> jsonschema.Draft202012Validator:
    provider = (folder / "reference" / "provider.yaml").resolve().as_uri()
    pointer = "/".join(("paths", _pointer_part(endpoint), "get", "responses", "200", "content",
                        _pointer_part("application/json"), "schema"))
    registry = _mds_registry(folder)
    schema = _inline({"$ref": f"{provider}#/{pointer}"}, registry.resolver())
    cls = jsonschema.Draft202012Validator
    return cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)


def check_mds(payload: Any, *, records_key: str, root: Path) -> ReferenceResult:
    """An MDS 2.0 Provider response against the official OpenAPI 3.1 models (defects read as meant)."""
    endpoint = MDS_ENDPOINTS.get(records_key)
    name = f"MDS 2.0 Provider {endpoint or records_key} response (official mds-openapi 2.0 models, formats checked)"
    folder = root / MDS_FOLDER
    if not root.is_dir():
        return not_run(name, f"the reference schema folder {root} does not exist (set MOBILITY_REFERENCE_SCHEMAS)")
    if not (folder / "reference" / "provider.yaml").is_file():
        return not_run(name, f"no {MDS_FOLDER}/reference/provider.yaml in {root}")
    if endpoint is None:
        return not_run(name, f"no MDS 2.0 Provider endpoint returns '{records_key}'")
    validator = _mds_validator(folder, endpoint)
    result = ReferenceResult(name=name, ran=True, source=str(folder / "reference" / "provider.yaml"),
                             issues=_issues(validator.iter_errors(payload)))
    result.note = ("known defects of the official models read as meant: `contains: [list]` as an enum, "
                   "the per-mode `oneOf` as `anyOf`")
    return result


# ------------------------------------------------------------------------------ GTFS

_SEVERITY = {"ERROR": "error", "WARNING": "warning", "INFO": "info"}


def check_gtfs(path: Path) -> ReferenceResult:
    """A GTFS zip or folder against MobilityData's canonical rules (gtfs-guru, offline)."""
    import gtfs_guru

    name = f"MobilityData canonical GTFS rules (gtfs-guru {gtfs_guru.version()})"
    try:
        report = gtfs_guru.validate(str(path))
    except ValueError as exc:  # the validator could not load the feed at all: that is a rejection
        return ReferenceResult(name=name, ran=True, source="gtfs-guru", issues=[
            Issue("gtfs:unreadable_feed", "error", str(exc), file=path.name)])
    issues = []
    for notice in report.notices:
        ctx = notice.context()
        value = ctx.get("fieldValue")
        detail = ", ".join(f"{k}={v}" for k, v in sorted(ctx.items())
                           if k not in ("filename", "csvRowNumber", "fieldName", "fieldValue"))
        issues.append(Issue(
            rule=f"gtfs:{notice.code}",
            severity=_SEVERITY.get(notice.severity, "info"),
            message=notice.message + (f" ({detail})" if detail else ""),
            value=None if value is None else _short(value),
            file=ctx.get("filename") or ctx.get("childFilename") or notice.file,
            row=ctx.get("csvRowNumber") or notice.row,
            field=ctx.get("fieldName") or ctx.get("childFieldName") or notice.field,
        ))
    return ReferenceResult(name=name, ran=True, source="gtfs-guru", issues=issues)
