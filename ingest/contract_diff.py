"""Compare two versions of a data contract and say whether partners' data can still pass.

A change is breaking when data valid under the old contract may be refused under the new one:
a removed table or field, a changed type or column, a field becoming required, a required field
added, a narrowed enum or range, a new or changed pattern/format, a new uniqueness or code rule,
a new quality rule or a stricter threshold, a tighter SLA (shorter latency, more frequent
delivery). Adding an optional field or widening is compatible. A breaking change needs a new
major version; any change needs a higher version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from open_data_contract_standard.model import OpenDataContractStandard, SchemaProperty

from ingest.contracts import ContractNotFound, load_contract

_HOURS = {"ms": 1 / 3_600_000, "s": 1 / 3600, "m": 1 / 60, "min": 1 / 60, "h": 1, "d": 24}


class DiffUsageError(ValueError):
    """A contract that cannot be found or read (exit code 2)."""


@dataclass(frozen=True)
class Change:
    where: str  # table or table.field or sla.<property>
    what: str
    breaking: bool


@dataclass
class ContractDiff:
    old: str
    new: str
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # version rules broken

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.breaking]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "ok": self.ok, "breaking": len(self.breaking),
                "changes": [asdict(c) for c in self.changes], "problems": self.problems}

    def to_text(self) -> str:
        lines = [f"contract diff {self.old} -> {self.new}"]
        if not self.changes:
            lines.append("  no changes")
        for c in self.changes:
            lines.append(f"  {'BREAKING  ' if c.breaking else 'compatible'} {c.where}: {c.what}")
        for p in self.problems:
            lines.append(f"  ERROR: {p}")
        lines.append("OK" if self.ok else "NOT OK: " + "; ".join(self.problems))
        return "\n".join(lines)


def load_model(ref_or_path: str) -> tuple[str, OpenDataContractStandard]:
    """A contract by ``name@version`` (or ``name``) from contracts/, or by file path."""
    path = Path(ref_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise DiffUsageError(f"no such contract file: {path}")
        try:
            return str(path), OpenDataContractStandard.from_file(str(path))
        except Exception as exc:  # a file that is not an ODCS contract
            raise DiffUsageError(f"{path}: not a readable ODCS contract: {exc}") from None
    try:
        contract = load_contract(ref_or_path)
    except ContractNotFound as exc:
        raise DiffUsageError(str(exc)) from None
    return contract.ref, OpenDataContractStandard.from_file(str(contract.path))


def _semver(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        raise DiffUsageError(f"version {version!r} is not semantic (MAJOR.MINOR.PATCH)") from None


def diff(old_ref: str, new_ref: str) -> ContractDiff:
    old_name, old = load_model(old_ref)
    new_name, new = load_model(new_ref)
    result = ContractDiff(f"{old.id}@{old.version} ({old_name})" if old_name != f"{old.id}@{old.version}" else old_name,
                          f"{new.id}@{new.version} ({new_name})" if new_name != f"{new.id}@{new.version}" else new_name)
    out = result.changes
    if old.id != new.id:
        out.append(Change("contract", f"id changed {old.id} -> {new.id}", True))

    old_tables = {t.name: t for t in old.schema_ or []}
    new_tables = {t.name: t for t in new.schema_ or []}
    for name in old_tables.keys() - new_tables.keys():
        out.append(Change(name, "table removed", True))
    for name in new_tables.keys() - old_tables.keys():
        out.append(Change(name, "table added", False))
    for name in sorted(old_tables.keys() & new_tables.keys()):
        _diff_table(name, old_tables[name], new_tables[name], out)
    _diff_sla(old, new, out)
    _diff_custom("contract", _custom(old.customProperties), _custom(new.customProperties), out)

    o, n = _semver(old.version), _semver(new.version)
    if result.breaking and n[0] <= o[0]:
        result.problems.append(f"{len(result.breaking)} breaking change(s) without a new major version "
                               f"({old.version} -> {new.version}; needs {o[0] + 1}.0.0 or later)")
    elif out and n <= o:
        result.problems.append(f"the contract changed but its version did not increase ({old.version} -> {new.version})")
    return result


def _custom(props: Any) -> dict[str, Any]:
    return {p.property: p.value for p in props or []}


def _diff_custom(where: str, old: dict, new: dict, out: list[Change]) -> None:
    # payload layout and reference sets decide what parses and passes: any change to them breaks
    for key in ("payload_format", "payload_key", "zip_member", "gbfs_feed", "window_field", "codes"):
        if old.get(key) != new.get(key):
            out.append(Change(where, f"{key} changed {old.get(key)!r} -> {new.get(key)!r}", True))
    if old.get("required_file") is False and new.get("required_file", True) is not False:
        out.append(Change(where, "file became required", True))


def _diff_table(name: str, old: Any, new: Any, out: list[Change]) -> None:
    if (old.physicalName or old.name) != (new.physicalName or new.name):
        out.append(Change(name, f"physicalName changed {old.physicalName} -> {new.physicalName}", True))
    _diff_custom(name, _custom(old.customProperties), _custom(new.customProperties), out)
    old_props = {p.name: p for p in old.properties or []}
    new_props = {p.name: p for p in new.properties or []}
    for fname in sorted(old_props.keys() - new_props.keys()):
        out.append(Change(f"{name}.{fname}", "field removed", True))
    for fname in sorted(new_props.keys() - old_props.keys()):
        required = bool(new_props[fname].required)
        out.append(Change(f"{name}.{fname}", f"{'required' if required else 'optional'} field added", required))
    for fname in sorted(old_props.keys() & new_props.keys()):
        _diff_field(f"{name}.{fname}", old_props[fname], new_props[fname], out)
    old_keys = [p.name for p in old.properties or [] if p.primaryKey]
    new_keys = [p.name for p in new.properties or [] if p.primaryKey]
    if old_keys != new_keys:
        out.append(Change(name, f"primary key changed {old_keys} -> {new_keys}", True))
    _diff_quality(name, old.quality, new.quality, out)


def _diff_field(where: str, old: SchemaProperty, new: SchemaProperty, out: list[Change]) -> None:
    for attr in ("logicalType", "physicalType", "physicalName"):
        a, b = getattr(old, attr), getattr(new, attr)
        if a != b:
            out.append(Change(where, f"{attr} changed {a!r} -> {b!r}", True))
    if bool(old.required) != bool(new.required):
        out.append(Change(where, "optional -> required" if new.required else "required -> optional", bool(new.required)))
    if bool(old.unique) != bool(new.unique):
        out.append(Change(where, "now unique" if new.unique else "no longer unique", bool(new.unique)))

    old_enum = {e.value for e in old.enum} if old.enum else None
    new_enum = {e.value for e in new.enum} if new.enum else None
    if old_enum != new_enum:
        if new_enum is None:
            out.append(Change(where, "enum removed (any value)", False))
        elif old_enum is None:
            out.append(Change(where, f"enum added {sorted(new_enum)}", True))
        else:
            removed, added = sorted(old_enum - new_enum), sorted(new_enum - old_enum)
            if removed:
                out.append(Change(where, f"enum narrowed: {removed} no longer allowed", True))
            if added:
                out.append(Change(where, f"enum widened: {added} allowed", False))

    o, n = old.logicalTypeOptions or {}, new.logicalTypeOptions or {}
    for bound, tighter in (("minimum", lambda a, b: b > a), ("maximum", lambda a, b: b < a)):
        a, b = o.get(bound), n.get(bound)
        if a == b:
            continue
        if b is None:
            out.append(Change(where, f"{bound} {a} removed", False))
        elif a is None:
            out.append(Change(where, f"{bound} {b} added", True))
        else:
            out.append(Change(where, f"{bound} {a} -> {b} ({'narrowed' if tighter(a, b) else 'widened'})", tighter(a, b)))
    for key in ("pattern", "format"):
        a, b = o.get(key), n.get(key)
        if a != b:
            out.append(Change(where, f"{key} {a!r} -> {b!r}", b is not None))
    oc, nc = _custom(old.customProperties), _custom(new.customProperties)
    if oc.get("codes") != nc.get("codes"):
        out.append(Change(where, f"code set {oc.get('codes')!r} -> {nc.get('codes')!r}", nc.get("codes") is not None))
    if oc.get("unit") != nc.get("unit"):
        out.append(Change(where, f"unit {oc.get('unit')!r} -> {nc.get('unit')!r}", True))
    if old.classification != new.classification or oc.get("privacy") != nc.get("privacy"):
        # privacy handling is the city's side: partners send the same data
        out.append(Change(where, f"privacy class {old.classification}/{oc.get('privacy')} -> "
                                 f"{new.classification}/{nc.get('privacy')}", False))


def _diff_quality(where: str, old: Any, new: Any, out: list[Change]) -> None:
    def key(q: Any) -> str:
        return q.name or str(q.implementation)

    old_q = {key(q): q for q in old or []}
    new_q = {key(q): q for q in new or []}
    for name in sorted(old_q.keys() - new_q.keys()):
        out.append(Change(f"{where}.quality.{name}", "quality rule removed", False))
    for name in sorted(new_q.keys() - old_q.keys()):
        out.append(Change(f"{where}.quality.{name}", "quality rule added", True))
    for name in sorted(old_q.keys() & new_q.keys()):
        a, b = old_q[name], new_q[name]
        for attr, tighter in (("mustBeLessThan", lambda x, y: y < x), ("mustBeLessOrEqualTo", lambda x, y: y < x),
                              ("mustBeGreaterThan", lambda x, y: y > x), ("mustBeGreaterOrEqualTo", lambda x, y: y > x)):
            x, y = getattr(a, attr), getattr(b, attr)
            if x != y:
                broke = y is not None and (x is None or tighter(x, y))
                out.append(Change(f"{where}.quality.{name}", f"{attr} {x} -> {y}", broke))
        if (a.implementation, a.query) != (b.implementation, b.query):
            out.append(Change(f"{where}.quality.{name}", "rule implementation changed", True))


def _sla_hours(sla: Any) -> float | None:
    try:
        return float(sla.value) * _HOURS[sla.unit or "h"]
    except (TypeError, ValueError, KeyError):
        return None


def _diff_sla(old: OpenDataContractStandard, new: OpenDataContractStandard, out: list[Change]) -> None:
    old_s = {s.property: s for s in old.slaProperties or []}
    new_s = {s.property: s for s in new.slaProperties or []}
    for prop in sorted(old_s.keys() | new_s.keys()):
        a, b = old_s.get(prop), new_s.get(prop)
        where = f"sla.{prop}"
        if b is None:
            out.append(Change(where, "SLA property removed", False))
            continue
        if a is None:
            out.append(Change(where, f"SLA property added ({b.value} {b.unit or ''})".strip(), True))
            continue
        ha, hb = _sla_hours(a), _sla_hours(b)
        if ha is not None and hb is not None and ha != hb:
            # latency, frequency, retention-like durations: a smaller value asks more of the partner
            out.append(Change(where, f"{a.value} {a.unit} -> {b.value} {b.unit} ({'tightened' if hb < ha else 'loosened'})",
                              hb < ha))
        elif (ha is None or hb is None) and (a.value, a.unit) != (b.value, b.unit):
            out.append(Change(where, f"{a.value} {a.unit} -> {b.value} {b.unit}", True))
