"""Raw partner bytes -> records, as the contract says where the records are.

The contract's custom properties drive the parsing (a table's own override the contract's):

- ``payload_format: json`` (default) with ``payload_key``, a dotted path to the list of records
  (MDS ``trips``, GBFS ``data.vehicles`` / ``data.stations``);
- ``payload_format: csv``: a header row, then one record per row (daily file drops);
- ``payload_format: gtfs_zip`` with the table's ``zip_member`` (``stops.txt``...): that CSV member
  of the zip, read under `ZipLimits` (path checks, member count and size caps against zip bombs).
  A member with ``required_file: false`` may be absent (the table is then empty).

CSV cells are typed here by the contract field of their column (`Field.from_text`); a cell that
does not convert stays text, so the contract check names the row, the field and the rule.

These records are the reference reading. Landing reads big batches column-wise instead
(`ingest.columnar`), and falls back to this reading whenever that path cannot match it exactly.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ingest.contracts import Contract

_CHUNK = 1 << 20


Raw = bytes | Path
"""A batch's bytes, or the file holding them (a dropped file): the columnar CSV check reads a file
in blocks, so a big daily file is never whole in memory; the readers here take it whole."""


def raw_bytes(raw: Raw) -> bytes:
    return raw.read_bytes() if isinstance(raw, Path) else raw


class PayloadError(ValueError):
    """Bytes that cannot be read as the contract says; the whole batch is refused."""


@dataclass(frozen=True)
class ZipLimits:
    """What an archive may hold before it is refused unread (a zip bomb or a wrong file)."""

    max_members: int = 64
    max_member_bytes: int = 512 << 20
    max_total_bytes: int = 1 << 30

    @classmethod
    def of(cls, contract: Contract) -> "ZipLimits":
        p, d = contract.properties, cls()
        return cls(
            max_members=int(p.get("max_zip_members", d.max_members)),
            max_member_bytes=int(p.get("max_member_bytes", d.max_member_bytes)),
            max_total_bytes=int(p.get("max_uncompressed_bytes", d.max_total_bytes)),
        )


def parse_records(contract: Contract, raw: Raw) -> list[Any]:
    """The records of one table of `contract` in `raw`; raises `PayloadError` if unreadable."""
    fmt, raw = contract.payload_format, raw_bytes(raw)
    try:
        if fmt == "json":
            return _json_records(contract, raw)
        if fmt == "csv":
            return _csv_records(contract, raw)
        if fmt == "gtfs_zip":
            member = contract.properties["zip_member"]
            data = read_zip_member(raw, member, ZipLimits.of(contract))
            if data is None:
                if contract.properties.get("required_file", True):
                    raise PayloadError(f"the zip has no {member} at its root (a required file)")
                return []
            return _csv_records(contract, data, source=member)
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not UTF-8 text: {exc}") from None
    raise PayloadError(f"contract {contract.ref} names an unknown payload_format {fmt!r}")


def _json_records(contract: Contract, raw: bytes) -> list[Any]:
    try:
        node: Any = json.loads(raw)
    except ValueError as exc:
        raise PayloadError(str(exc)) from None
    key = contract.payload_key
    for part in key.split(".") if key else ():
        if not isinstance(node, dict) or part not in node:
            raise PayloadError(f"payload has no '{key}' list")
        node = node[part]
    if not isinstance(node, list):
        raise PayloadError(f"payload{f' {key!r}' if key else ''} is not a list of records")
    return node


def _csv_records(contract: Contract, raw: bytes, *, source: str = "file") -> list[Any]:
    """Rows as records typed by the contract; extra columns are kept (as text) to be reported."""
    text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline="")  # GTFS files may carry a BOM
    reader = csv.reader(text)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise PayloadError(f"{source} is empty (no header row)") from None
    except csv.Error as exc:
        raise PayloadError(f"{source}: {exc}") from None
    fields = {f.name: f for f in contract.fields}
    missing = sorted(f.name for f in contract.fields if f.required and f.name not in header)
    if missing:
        raise PayloadError(f"{source} lacks required column(s) {missing}; header is {header}")
    records: list[Any] = []
    try:
        for cells in reader:
            if not cells:
                continue  # a blank line is not a record
            if len(cells) != len(header):
                # not a record at all: the check reports it as such, with the row's number
                records.append(f"row has {len(cells)} values but the header has {len(header)}")
                continue
            records.append({
                name: fields[name].from_text(cell) if name in fields else cell for name, cell in zip(header, cells)
            })
    except csv.Error as exc:
        raise PayloadError(f"{source}, line {reader.line_num}: {exc}") from None
    return records


def _unsafe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        not name or "\\" in name or "\x00" in name or path.is_absolute()
        or ".." in path.parts or (len(name) > 1 and name[1] == ":")
    )


def read_zip_member(raw: bytes, member: str, limits: ZipLimits) -> bytes | None:
    """One member of a zip, after vetting the whole archive; None if the member is absent.

    Nothing is extracted to disk, but an archive with an unsafe member name is still refused
    whole: it is not a feed we should trust. Declared sizes are checked first and actual bytes
    are counted while reading, because a zip bomb can lie in its headers.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile as exc:
        raise PayloadError(f"not a zip archive: {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise PayloadError(f"zip has {len(infos)} members; at most {limits.max_members} are accepted")
        total = 0
        for info in infos:
            if _unsafe_name(info.filename):
                raise PayloadError(f"zip member {info.filename!r} has an unsafe path (absolute or '..'); refused")
            if info.flag_bits & 0x1:
                raise PayloadError(f"zip member {info.filename!r} is encrypted; refused")
            if info.file_size > limits.max_member_bytes:
                raise PayloadError(
                    f"zip member {info.filename!r} is {info.file_size} bytes uncompressed; "
                    f"the limit is {limits.max_member_bytes}"
                )
            total += info.file_size
        if total > limits.max_total_bytes:
            raise PayloadError(f"zip holds {total} bytes uncompressed; the limit is {limits.max_total_bytes}")
        info = next((i for i in infos if i.filename == member), None)
        if info is None:
            return None
        out = bytearray()
        try:
            with archive.open(info) as fh:
                while chunk := fh.read(_CHUNK):
                    out += chunk
                    if len(out) > limits.max_member_bytes:
                        raise PayloadError(
                            f"zip member {member!r} inflates past {limits.max_member_bytes} bytes "
                            "(its header understates its size); refused"
                        )
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # bad CRC, truncated data
            raise PayloadError(f"zip member {member!r} is corrupt: {exc}") from None
        return bytes(out)
