"""Data contracts (ODCS v3) and the record check derived from them.

The contract file is the single source of truth: the city's landing check and the partner's own
`mobility validate` both call `Contract.check`, so both sides run exactly the same rules.
Contracts are read with the `open-data-contract-standard` models, never as loose dicts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
from open_data_contract_standard.model import OpenDataContractStandard, SchemaProperty

from mobility.settings import CONTRACTS_DIR

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Epoch-ms timestamps outside 2010..2100 are unit mistakes (seconds sent as ms, or µs), not data.
_MS_MIN, _MS_MAX = 1_262_304_000_000, 4_102_444_800_000
_S_MIN, _S_MAX = _MS_MIN // 1000, _MS_MAX // 1000
# The ODCS date/timestamp `format` patterns (JDK style) we read, as strptime formats.
_DATE_FORMATS = {
    "yyyy-MM-dd HH:mm:ss": "%Y-%m-%d %H:%M:%S",
    "yyyy-MM-dd'T'HH:mm:ss": "%Y-%m-%dT%H:%M:%S",
    "yyyy-MM-dd": "%Y-%m-%d",
    "yyyyMMdd": "%Y%m%d",
}
_TRUE, _FALSE = frozenset({"true", "t", "1"}), frozenset({"false", "f", "0"})


class ContractNotFound(LookupError):
    pass


def _custom(props: Sequence[Any] | None) -> dict[str, Any]:
    return {p.property: p.value for p in (props or [])}


@dataclass(frozen=True)
class Field:
    """One contract property, flattened: `name` is the dotted path in the payload."""

    name: str
    column: str
    logical_type: str
    physical_type: str | None
    required: bool
    unique: bool
    enum: frozenset | None
    minimum: float | None
    maximum: float | None
    fmt: str | None
    pseudonymise: bool
    classification: str | None
    description: str | None
    pattern: re.Pattern | None = None
    codes: str | None = None  # name of a reference set the value must belong to (bound at check time)

    @classmethod
    def from_property(cls, prop: SchemaProperty) -> "Field":
        opts = prop.logicalTypeOptions or {}
        custom = _custom(prop.customProperties)
        if prop.logicalType in ("date", "timestamp") and opts.get("format") and opts["format"] not in _DATE_FORMATS:
            raise ValueError(f"property '{prop.name}': date format {opts['format']!r} is not supported")
        return cls(
            name=prop.name,
            column=prop.physicalName or prop.name.replace(".", "_"),
            logical_type=prop.logicalType or "string",
            physical_type=prop.physicalType,
            required=bool(prop.required),
            unique=bool(prop.unique),
            enum=frozenset(e.value for e in prop.enum) if prop.enum else None,
            minimum=opts.get("minimum"),
            maximum=opts.get("maximum"),
            fmt=opts.get("format"),
            pseudonymise=custom.get("privacy") == "pseudonymise",
            classification=prop.classification,
            description=prop.description,
            pattern=re.compile(opts["pattern"]) if opts.get("pattern") else None,
            codes=custom.get("codes"),
        )

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split("."))

    @property
    def strptime_format(self) -> str | None:
        return _DATE_FORMATS.get(self.fmt or "")

    @property
    def arrow_type(self) -> pa.DataType:
        if self.logical_type == "timestamp":
            # ms throughout, as Parquet stores them; local wall-clock times stay naive: the
            # city's zone (and its DST folds) is for the warehouse to apply, not landing
            if self.physical_type not in ("int64_epoch_ms", "int64_epoch_s", "rfc3339", "local_datetime"):
                raise ValueError(f"field '{self.name}': timestamp physicalType {self.physical_type!r} is not supported")
            return pa.timestamp("ms") if self.physical_type == "local_datetime" else pa.timestamp("ms", tz="UTC")
        return {
            "string": pa.string(),
            "integer": pa.int64(),
            "number": pa.float64(),
            "boolean": pa.bool_(),
            "array": pa.list_(pa.string()),
            "date": pa.date32(),
        }[self.logical_type]

    def violation(self, value: Any) -> str | None:
        """The rule a present (non-null) value breaks, or None."""
        lt = self.logical_type
        if lt == "timestamp" and self.physical_type == "int64_epoch_ms":
            if not _is_int(value):
                return "type:integer_ms"
            if not _MS_MIN <= value < _MS_MAX:
                return "range:timestamp_ms"
            return None
        if lt == "timestamp" and self.physical_type == "int64_epoch_s":
            if not _is_int(value):
                return "type:integer_s"
            if not _S_MIN <= value < _S_MAX:
                return "range:timestamp_s"
            return None
        if lt in ("timestamp", "date"):
            if not isinstance(value, str) or self.parse_time(value) is None:
                return f"format:{self.physical_type if lt == 'timestamp' else 'date'}"
            return None
        if lt == "string":
            if not isinstance(value, str):
                return "type:string"
            if self.fmt == "uuid" and not _UUID.match(value):
                return "format:uuid"
            if self.pattern is not None and not self.pattern.fullmatch(value):
                return "pattern"
        elif lt == "integer":
            if not _is_int(value):
                return "type:integer"
        elif lt == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return "type:number"
        elif lt == "boolean":
            if not isinstance(value, bool):
                return "type:boolean"
        elif lt == "array":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return "type:array"
        if self.enum is not None and value not in self.enum:
            return "enum"
        if self.minimum is not None and value < self.minimum:
            return "minimum"
        if self.maximum is not None and value > self.maximum:
            return "maximum"
        return None

    def parse_time(self, text: str) -> datetime | date | None:
        """A date or timestamp string as the contract reads it, or None if it does not parse."""
        try:
            if self.physical_type == "rfc3339":
                parsed = datetime.fromisoformat(text)
                return parsed if parsed.tzinfo is not None and "T" in text.upper() else None
            parsed = datetime.strptime(text, self.strptime_format or "%Y-%m-%d")
        except ValueError:
            return None
        return parsed.date() if self.logical_type == "date" else parsed

    def from_text(self, text: str | None) -> Any:
        """A CSV cell typed as the contract says; text that does not convert is kept, so the
        check names the value and the rule it breaks instead of the parser failing the batch."""
        if text is None or text == "":
            return None
        lt, raw = self.logical_type, text.strip()
        try:
            if lt == "integer" or (lt == "timestamp" and (self.physical_type or "").startswith("int64")):
                number = float(raw) if not raw.lstrip("+-").isdigit() else int(raw)
                return int(number) if isinstance(number, int) or number.is_integer() else text
            if lt == "number":
                return float(raw)
        except ValueError:
            return text
        if lt == "boolean":
            low = raw.lower()
            return True if low in _TRUE else False if low in _FALSE else text
        return text


def _to_arrow(f: Field, values: list[Any]) -> pa.Array:
    if f.logical_type == "date" or f.physical_type in ("rfc3339", "local_datetime"):
        parsed = [None if v is None else f.parse_time(v) for v in values]
        if f.physical_type == "rfc3339":
            parsed = [None if v is None else v.astimezone(timezone.utc) for v in parsed]
        return pa.array(parsed, type=f.arrow_type)
    if pa.types.is_timestamp(f.arrow_type):
        ints = pa.array([None if v is None else int(v) for v in values], pa.int64())
        unit = "s" if f.physical_type == "int64_epoch_s" else "ms"
        return ints.cast(pa.timestamp(unit, tz="UTC")).cast(f.arrow_type)
    if pa.types.is_integer(f.arrow_type):
        values = [None if v is None else int(v) for v in values]
    return pa.array(values, type=f.arrow_type)


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


@dataclass(frozen=True)
class Violation:
    """A rule one row broke; `row` counts from 0 in the order the partner sent the records."""

    row: int
    field: str
    rule: str
    value: str

    def describe(self) -> str:
        return f"row {self.row}: field '{self.field}' breaks rule '{self.rule}' (value: {self.value})"


@dataclass
class CheckResult:
    contract: str
    version: str
    rows_received: int
    accepted: pa.Table
    rejected_rows: list[int]
    violations: list[Violation]
    warnings: list[str] = field(default_factory=list)
    # set when the accepted rows were handed out chunk by chunk (`ingest.columnar.CheckStream`):
    # `accepted` is then empty
    streamed_rows: int | None = None

    @property
    def rows_accepted(self) -> int:
        return self.accepted.num_rows if self.streamed_rows is None else self.streamed_rows

    @property
    def rows_rejected(self) -> int:
        return len(self.rejected_rows)


def _get(record: dict, path: tuple[str, ...]) -> Any:
    node: Any = record
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Contract:
    """A loaded contract: its fields, rules and SLA, ready to check records.

    A contract may describe several tables (ODCS schema objects, e.g. the files of a GTFS zip);
    a `Contract` is the view of one of them (`table`), and `tables()` gives every view.
    `properties` are the contract's custom properties, overridden by the table's own.
    """

    id: str
    version: str
    path: Path
    model: OpenDataContractStandard
    fields: tuple[Field, ...]
    rules: tuple[str, ...]
    properties: dict[str, Any]
    table: str = ""
    dataset: str = ""  # the bronze folder of this table (its physicalName)
    codes: Mapping[str, frozenset] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def multi_table(self) -> bool:
        return len(self.model.schema_ or []) > 1

    @property
    def part(self) -> str | None:
        """The table name where the contract has several (batches of each are kept apart)."""
        return self.table if self.multi_table else None

    def tables(self) -> tuple["Contract", ...]:
        """One view per schema object, in contract order."""
        return tuple(
            dataclasses.replace(_view(self.model, self.path, obj), codes=self.codes) for obj in self.model.schema_ or []
        )

    def with_codes(self, codes: Mapping[str, Iterable[Any]]) -> "Contract":
        """This contract with the reference sets its `codes` fields are checked against."""
        return dataclasses.replace(self, codes={**self.codes, **{k: frozenset(v) for k, v in codes.items()}})

    @property
    def payload_format(self) -> str:
        return self.properties.get("payload_format", "json")

    @property
    def payload_key(self) -> str | None:
        return self.properties.get("payload_key")

    @property
    def window_field(self) -> str | None:
        return self.properties.get("window_field")

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def sla_latency_hours(self) -> float | None:
        for sla in self.model.slaProperties or []:
            if sla.property == "latency":
                return float(sla.value) * {"h": 1, "d": 24, "m": 1 / 60}.get(sla.unit or "h", 1)
        return None

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(f.column, f.arrow_type) for f in self.fields])

    def check(
        self,
        records: Iterable[dict],
        *,
        window: tuple[datetime, datetime] | None = None,
    ) -> CheckResult:
        """Check every record against the contract; good rows come back typed, bad ones named."""
        records = list(records)
        self.require_codes()
        top_level = self.top_level
        violations: list[Violation] = []
        bad: set[int] = set()
        columns: dict[str, list[Any]] = {f.column: [] for f in self.fields}
        extra: set[str] = set()
        seen: dict[str, set[Any]] = {f.name: set() for f in self.fields if f.unique}
        win_ms = window_ms(window)

        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                violations.append(Violation(i, "<record>", "type:object", _short(rec)))
                bad.add(i)
                for f in self.fields:
                    columns[f.column].append(None)
                continue
            extra.update(k for k in rec if k not in top_level)
            found, values = self.row_field_violations(i, rec)
            broken = {k for k, _ in found}
            for k, f in enumerate(self.fields):
                if f.unique and values[k] is not None and k not in broken:
                    if values[k] in seen[f.name]:
                        found.append((k, Violation(i, f.name, "unique", _short(values[k]))))
                    else:
                        seen[f.name].add(values[k])
                columns[f.column].append(values[k])
            if found:
                violations.extend(v for _, v in sorted(found, key=lambda kv: kv[0]))
                bad.add(i)
            else:
                ruled = self.row_rule_violations(i, rec, win_ms)
                if ruled:
                    violations.extend(ruled)
                    bad.add(i)

        keep = [i for i in range(len(records)) if i not in bad]
        table = pa.Table.from_arrays(
            [_to_arrow(f, [columns[f.column][i] for i in keep]) for f in self.fields],
            schema=self.arrow_schema(),
        )
        warnings = self.extra_warnings(extra)
        return CheckResult(self.id, self.version, len(records), table, sorted(bad), violations, warnings)

    # The pieces of the row check, shared with the columnar check (ingest.columnar) so both give
    # the same verdicts and the same messages.

    @property
    def top_level(self) -> set[str]:
        return {f.name.split(".")[0] for f in self.fields}

    def require_codes(self) -> None:
        unbound = sorted({f.codes for f in self.fields if f.codes and f.codes not in self.codes})
        if unbound:  # fail closed: a code rule that cannot run is not a pass
            raise ValueError(f"contract {self.ref} checks codes {unbound}: bind them with with_codes()")

    def row_field_violations(self, i: int, rec: dict) -> tuple[list[tuple[int, Violation]], list[Any]]:
        """The field rules one record breaks (all but uniqueness), by field position, and its values."""
        found: list[tuple[int, Violation]] = []
        values: list[Any] = []
        for k, f in enumerate(self.fields):
            value = _get(rec, f.path)
            values.append(value)
            if value is None:
                if f.required:
                    found.append((k, Violation(i, f.name, "required", "missing")))
                continue
            rule = f.violation(value)
            if not rule and f.codes and value not in self.codes[f.codes]:
                rule = f"codes:{f.codes}"
            if rule:
                found.append((k, Violation(i, f.name, rule, _short(value))))
        return found, values

    def row_rule_violations(self, i: int, rec: dict, win_ms: tuple[int, int] | None) -> list[Violation]:
        """The contract's semantic rules one record breaks (run only on rows whose fields are good)."""
        out = []
        for rule in self.rules:
            broken = _RULES[rule](rec, win_ms, self)
            if broken:
                out.append(Violation(i, broken[0], rule, broken[1]))
        return out

    def extra_warnings(self, extra: Iterable[str]) -> list[str]:
        return [f"field '{k}' is not in contract {self.ref} (kept out of the warehouse)" for k in sorted(extra)]


def window_ms(window: tuple[datetime, datetime] | None) -> tuple[int, int] | None:
    return (int(window[0].timestamp() * 1000), int(window[1].timestamp() * 1000)) if window else None


def _rule_end_not_before_start(rec: dict, _win: Any, c: Contract) -> tuple[str, str] | None:
    start, end = c.properties.get("start_field", "start_time"), c.properties.get("end_field", "end_time")
    if rec.get(start) is None or rec.get(end) is None:
        return None  # an optional time that is absent has nothing to compare
    if rec.get(end) < rec.get(start):  # epoch numbers, or fixed-format local times (sort as text)
        return end, f"{rec.get(end)} < {start} {rec.get(start)}"
    return None


def _rule_in_request_window(rec: dict, win_ms: tuple[int, int] | None, c: Contract) -> tuple[str, str] | None:
    if win_ms is None or not c.window_field:
        return None
    value = _get(rec, tuple(c.window_field.split(".")))
    if not win_ms[0] <= value < win_ms[1]:
        return c.window_field, f"{value} outside [{win_ms[0]}, {win_ms[1]})"
    return None


def _rule_on_window_date(rec: dict, win_ms: tuple[int, int] | None, c: Contract) -> tuple[str, str] | None:
    """A daily file's records start on the file's date (local wall-clock text `YYYY-MM-DD ...`)."""
    if win_ms is None or not c.window_field:
        return None
    day = datetime.fromtimestamp(win_ms[0] / 1000, timezone.utc).date().isoformat()
    value = str(rec.get(c.window_field))
    if not value.startswith(day):
        return c.window_field, f"{value} is not on the file's date {day}"
    return None


def _rule_trip_total_is_sum(rec: dict, _win: Any, _c: Contract) -> tuple[str, str] | None:
    """Chicago TNP: trip_total = fare + tip + additional_charges (to the cent)."""
    parts = [rec.get(k) or 0 for k in ("fare", "tip", "additional_charges")]
    total = rec.get("trip_total")
    if total is not None and abs(sum(parts) - total) > 0.011:
        return "trip_total", f"{total} != fare + tip + additional_charges ({sum(parts):.2f})"
    return None


_RULES = {
    "end_not_before_start": _rule_end_not_before_start,
    "in_request_window": _rule_in_request_window,
    "on_window_date": _rule_on_window_date,
    "trip_total_is_sum": _rule_trip_total_is_sum,
}


@lru_cache(maxsize=None)
def _index() -> dict[str, dict[str, Path]]:
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(CONTRACTS_DIR.rglob("*.odcs.yaml")):
        model = OpenDataContractStandard.from_file(str(path))
        found.setdefault(model.id, {})[model.version] = path
    return found


def _semver_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def available() -> dict[str, list[str]]:
    return {cid: sorted(v, key=_semver_key) for cid, v in _index().items()}


@lru_cache(maxsize=None)
def load_contract(ref: str) -> Contract:
    """Load ``name@version`` (or ``name`` for its newest version) from ``contracts/``."""
    name, _, version = ref.partition("@")
    versions = _index().get(name)
    if not versions:
        raise ContractNotFound(f"unknown contract '{name}'; known: {', '.join(sorted(_index())) or 'none'}")
    if not version:
        version = max(versions, key=_semver_key)
    if version not in versions:
        raise ContractNotFound(f"contract '{name}' has no version {version}; known: {', '.join(sorted(versions))}")
    path = versions[version]
    model = OpenDataContractStandard.from_file(str(path))
    return _view(model, path, model.schema_[0])


def _view(model: OpenDataContractStandard, path: Path, obj: Any) -> Contract:
    """The contract as seen by one of its schema objects (tables)."""
    rules = tuple(
        q.implementation
        for q in (obj.quality or [])
        if q.type == "custom" and q.engine == "mobility-commons" and q.implementation in _RULES
    )
    unknown = [
        q.implementation for q in (obj.quality or []) if q.type == "custom" and q.implementation not in _RULES
    ]
    if unknown:
        raise ValueError(f"{path}: quality rule(s) {unknown} have no implementation")
    return Contract(
        id=model.id,
        version=model.version,
        path=path,
        model=model,
        fields=tuple(Field.from_property(p) for p in obj.properties or []),
        rules=rules,
        properties={**_custom(model.customProperties), **_custom(obj.customProperties)},
        table=obj.name,
        dataset=obj.physicalName or obj.name,
    )
