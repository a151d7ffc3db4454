"""Landing: raw archive -> contract check -> typed bronze Parquet or quarantine -> manifest.

Order matters for safety. The raw bytes are archived first (content-addressed, never rewritten;
the write runs beside the check and ends before anything else of the batch is written), then
bronze and quarantine files are written atomically, and the manifest is written last: a
batch exists only once its manifest does. Files are keyed by window, so landing a window again
replaces its bronze file instead of adding to it, and a killed run is repaired by re-running it.
A rejected batch never overwrites what an earlier good batch landed for the same window.

Memory: the bytes are parsed and checked column-wise in bounded chunks (`ingest.columnar`; a big
CSV batch in a worker process, `ingest.check_worker`), and each chunk's accepted rows go on to
the landing gate and, pseudonymised, into a staged bronze file before the next chunk is read, so
no batch is ever whole in memory as rows. A dropped file is landed from its path (hashed, copied
to the archive and checked in blocks), so not even its bytes are whole in memory. The batch's
verdict still comes from all its rows: the staged file is published only if the whole batch lands.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.check_worker import WorkerCheckStream, check_stream
from ingest.columnar import CHUNK_ROWS, CheckStream, one_arrow_thread
from ingest.contracts import CheckResult, Contract, Violation
from ingest.payloads import PayloadError, Raw
from mobility.registry import Feed, Partner
from mobility.secrets import pseudonym_key
from mobility.settings import Workdir

log = logging.getLogger(__name__)

MAX_REPORTED_VIOLATIONS = 200


@dataclass(frozen=True)
class Window:
    """A half-open UTC interval [start, end) a batch covers."""

    start: datetime
    end: datetime

    @classmethod
    def hour(cls, start: datetime) -> "Window":
        start = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
        return cls(start, start + timedelta(hours=1))

    @property
    def label(self) -> str:
        if self.end - self.start == timedelta(hours=1):
            return self.start.strftime("%Y-%m-%dT%H")
        if self.end - self.start == timedelta(days=1):
            return self.start.strftime("%Y-%m-%d")
        return f"{self.start:%Y-%m-%dT%H%M}_{self.end:%Y-%m-%dT%H%M}"


COPY_BLOCK_BYTES = 1 << 20  # a dropped file is copied to the raw archive this much at a time


def atomic_write(path: Path, data: Raw, *, cached: bool = True) -> None:
    """`data` (bytes, or a file's content) in `path`, whole or not at all, on disk when this returns.
    `cached=False` also takes the file out of the page cache once on disk: for a file written once
    and seldom read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, Path):
                with data.open("rb") as source:
                    shutil.copyfileobj(source, fh, COPY_BLOCK_BYTES)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            if not cached and hasattr(os, "posix_fadvise"):  # Linux; elsewhere the cache keeps it
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(raw: Raw) -> str:
    if isinstance(raw, Path):
        with raw.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    return hashlib.sha256(raw).hexdigest()


class StagedParquet:
    """A Parquet file written part by part into a temp file beside `path`, which `publish` moves
    into place atomically; left unpublished, it is discarded and `path` is untouched."""

    def __init__(self, path: Path, schema: pa.Schema, *, distinct: tuple[str, ...] = ()):
        # `distinct`: columns of distinct values (keyed hashes of ids), which a dictionary would not
        # shorten: Parquet would build one for each page before giving up on it
        self.path, self.schema = path, schema
        self.use_dictionary = [n for n in schema.names if n not in distinct] if distinct else True
        self.tmp: Path | None = None
        self.writer: pq.ParquetWriter | None = None

    def __enter__(self) -> "StagedParquet":
        self.restart()
        return self

    def restart(self) -> None:
        """Drop what was written so far and start an empty file."""
        self._discard()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        self.tmp = Path(tmp)
        self.writer = pq.ParquetWriter(tmp, self.schema, compression="zstd", use_dictionary=self.use_dictionary)

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)

    def publish(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)
        self.writer = self.tmp = None

    def _discard(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        self.writer = self.tmp = None

    def __exit__(self, *exc: object) -> None:
        self._discard()


def pseudonymise(values: pa.Array, key: bytes, *, distinct: bool = False) -> pa.Array:
    """Keyed hash (HMAC-SHA256, 128 bits kept, as hex): stable joins, no way back without the key.

    `distinct`: the values are (mostly) distinct already, as the contract's unique ids are, so each
    is hashed as it comes; otherwise each distinct value is hashed once (a device makes many trips).
    """
    # HMAC as RFC 2104 defines it, with the two keyed SHA-256 states built once and copied per id:
    # about a third of the CPU time of the same sums in DuckDB (hex text and a concatenation per id)
    # or of hmac.digest per id; the hex text is written for all ids at once (numpy)
    encoded = None if distinct else values.dictionary_encode()
    source = values if encoded is None else encoded.dictionary
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    inner, outer = hashlib.sha256(bytes(b ^ 0x36 for b in block)), hashlib.sha256(bytes(b ^ 0x5C for b in block))
    digests = bytearray()
    for value in source.cast(pa.large_binary()).to_pylist():  # bytes as they are: no str per id
        if value is None:
            digests += _NO_DIGEST
            continue
        i, o = inner.copy(), outer.copy()
        i.update(value)
        o.update(i.digest())
        digests += o.digest()[:16]
    half = np.frombuffer(bytes(digests), np.uint8)
    text = np.empty(len(half) * 2, np.uint8)
    text[0::2], text[1::2] = _HEX_DIGITS[half >> 4], _HEX_DIGITS[half & 15]
    n = len(source)
    validity = source.is_valid().buffers()[1] if source.null_count else None
    hashed = pa.Array.from_buffers(pa.string(), n, [validity, pa.py_buffer(np.arange(0, 32 * n + 1, 32, dtype=np.int32)),
                                                    pa.py_buffer(text)])
    return hashed if encoded is None else hashed.take(encoded.indices)


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
_NO_DIGEST = bytes(16)  # a null id's place in the digests; the validity bitmap keeps it null


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Lake:
    """Paths of one feed's batches in the lake.

    `dataset` names the bronze folder (the contract table's physicalName; the feed by default);
    `part` keeps apart the batches of each table of a multi-table contract (GTFS files).
    """

    def __init__(self, workdir: Workdir, partner_id: str, feed: str, *,
                 dataset: str | None = None, part: str | None = None):
        self.workdir, self.partner_id, self.feed = workdir, partner_id, feed
        self.dataset, self.part = dataset or feed, part

    def _stem(self, window: Window, sha: str) -> str:
        return f"{window.label}__{self.part}__{sha[:12]}" if self.part else f"{window.label}__{sha[:12]}"

    def raw(self, window: Window, sha: str, ext: str) -> Path:
        return self.workdir.raw / self.partner_id / self.feed / window.label / f"{sha}.{ext}"

    def bronze(self, window: Window) -> Path:
        return self.workdir.bronze / self.dataset / f"partner={self.partner_id}" / f"{window.label}.parquet"

    def quarantine(self, window: Window, sha: str) -> Path:
        return self.workdir.quarantine / self.partner_id / self.feed / self._stem(window, sha)

    def manifest(self, window: Window, sha: str) -> Path:
        return self.workdir.manifests / self.feed / self.partner_id / f"{self._stem(window, sha)}.json"

    def manifests(self) -> list[Path]:
        return sorted((self.workdir.manifests / self.feed / self.partner_id).glob("*.json"))


def land_batch(
    workdir: Workdir,
    *,
    partner: Partner,
    feed: Feed,
    contract: Contract,
    window: Window,
    raw: Raw,
    source: str,
    ext: str = "json",
) -> dict:
    """Land one batch of a partner feed (its bytes, or the file holding them) and return its manifest record."""
    # Identity comes from the credentials (the partner we asked), never from the payload.
    identity = bool(partner.mds_provider_id and any(f.name == "provider_id" for f in contract.fields))
    # the check starts first: a big CSV batch's worker parses it while this process archives it
    with check_stream(contract, raw, window=(window.start, window.end),
                      track=("provider_id",) if identity else ()) as stream:
        return _land(workdir, partner, feed, contract, window, raw, source, ext, stream, identity)


def _land(workdir: Workdir, partner: Partner, feed: Feed, contract: Contract, window: Window, raw: Raw,
          source: str, ext: str, stream: CheckStream | WorkerCheckStream, identity: bool) -> dict:
    started = datetime.now(timezone.utc)
    sha = _sha256(raw)
    lake = Lake(workdir, partner.id, feed.feed, dataset=contract.dataset, part=contract.part)
    raw_path = lake.raw(window, sha, ext)
    # written on a thread beside the check (a file write lets go of the GIL), waited for below;
    # out of the page cache once on disk: the archive is seldom read, and on this project's VMs ten
    # 45 MB pages written in a row cost 0.10 CPU s each while the cache kept them, 0.015 s if not
    archived = None if raw_path.exists() else _beside(atomic_write, raw_path, raw, name="raw-archive",
                                                      cached=False)

    manifest: dict[str, Any] = {
        "batch_id": ":".join(filter(None, (partner.id, feed.feed, window.label, contract.part, sha[:12]))),
        "partner_id": partner.id,
        "feed": feed.feed,
        "window_start": _iso(window.start),
        "window_end": _iso(window.end),
        "contract": contract.id,
        "contract_version": contract.version,
        "dataset": contract.dataset,
        "source": source,
        "raw_path": str(raw_path.relative_to(workdir.root)),
        "raw_sha256": sha,
        "rows_received": 0,
        "rows_accepted": 0,
        "rows_rejected": 0,
        "outcome": None,
        "error": None,
        "warnings": [],
        "started_at": _iso(started),
    }

    # checked, gated and written chunk by chunk, so a big batch is never whole in memory; the gate
    # records its verdict and bronze is published only once the whole batch is decided
    from mobility.gates.landing_gate import LandingGate, rejection_error

    quarantine = lake.quarantine(window, sha)
    schema = _bronze_schema(contract)

    # the gate validates on a thread of its own while rows are checked and written, unless the
    # process has one Arrow thread and checks the batch itself: there the two threads only contend
    # (two such processes landed 1M MDS trips 2 to 15% faster with the gate inline, four runs of
    # each in turn). A batch a check worker checks keeps the gate's thread beside the hash and
    # writes: 1M ride-hail rows on one Arrow thread landed about 8% faster so (medians of four runs)
    background = not one_arrow_thread() or isinstance(stream, WorkerCheckStream)

    def new_gate() -> LandingGate:
        return LandingGate(workdir, contract, window=(window.start, window.end), partner_id=partner.id,
                           feed=feed.feed, batch=lake.manifest(window, sha).stem, batch_id=manifest["batch_id"],
                           quarantine_dir=quarantine, background=background)

    distinct = tuple(f.column for f in contract.fields if f.unique and f.pseudonymise)
    with StagedParquet(lake.bronze(window), schema, distinct=distinct) as bronze, ExitStack() as stack:
        gate, key = new_gate(), None
        stack.callback(lambda: gate.close())  # on every way out: a slice may still be in validation

        def stage(table: pa.Table) -> None:
            nonlocal key
            key = key or pseudonym_key()
            for part in _bronze_parts(table, contract, partner, manifest["batch_id"], schema, key):
                bronze.write(part)

        try:
            try:
                # each chunk is staged after the next one went to the gate, and the last one after
                # the gate's last slice: the gate validates on its thread while rows are written
                # (an MDS page is one chunk, so its gate would otherwise run after its write)
                held = None
                for table in stream:
                    if table is None:  # the row check starts over: what was gated and staged is void
                        gate.close()
                        gate, held = new_gate(), None
                        bronze.restart()
                    elif table.num_rows:
                        gate.add(table)
                        if held is not None:
                            stage(held)
                        held = table
                gate.flush()
                if held is not None:
                    stage(held)
            finally:  # the raw bytes are stored before anything else of the batch
                if archived is not None:
                    archived.result()  # a failed archive write fails the batch here
        except PayloadError as exc:
            return _reject_batch(lake, window, sha, manifest, f"{raw_path.name}: unreadable payload: {exc}", "parse")
        checked = stream.result

        if identity:
            claimed = checked.distinct["provider_id"] - {partner.mds_provider_id}
            if claimed:
                manifest["rows_received"] = checked.result.rows_received
                return _reject_batch(
                    lake, window, sha, manifest,
                    f"payload claims provider_id {sorted(map(str, claimed))[:3]} but the credentials are "
                    f"{partner.id}'s ({partner.mds_provider_id}); batch refused",
                    "provider_identity",
                )

        result = checked.result
        manifest.update(
            rows_received=result.rows_received,
            rows_accepted=result.rows_accepted,
            rows_rejected=result.rows_rejected,
            warnings=result.warnings,
        )
        if result.rows_rejected:
            _write_quarantine(lake, window, sha, manifest, result, checked.rejected_records)

        if result.rows_received == 0:
            manifest["outcome"] = "empty"
        elif result.rows_accepted == 0:
            manifest["outcome"] = "rejected"
            manifest["error"] = f"all {result.rows_received} rows broke the contract"
        else:
            manifest["outcome"] = "partial" if result.rows_rejected else "accepted"

        if manifest["outcome"] in ("accepted", "partial"):
            # The landing gate: a batch-level GX decision on the typed rows. A failing batch is
            # quarantined whole and loads nothing, so an earlier good batch for the window stays.
            verdict = gate.finish()
            if not verdict.success:
                manifest.update(outcome="rejected", rows_accepted=0, rows_rejected=result.rows_received,
                                error=rejection_error(verdict, quarantine / "landing_gate.json"))

        if manifest["outcome"] in ("accepted", "partial", "empty"):
            bronze.publish()
    return _finish(lake, window, sha, manifest)


def _beside(fn: Callable[..., Any], *args: Any, name: str, **kwargs: Any) -> Future:
    """`fn(*args, **kwargs)` started on a thread of its own; the future gives its result or raises its error."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    try:
        return pool.submit(fn, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)  # its thread ends with the task; the caller waits on the future


def _bronze_schema(contract: Contract) -> pa.Schema:
    schema = contract.arrow_schema()
    schema = schema.insert(0, pa.field("batch_id", pa.string())).insert(0, pa.field("partner_id", pa.string()))
    return schema.with_metadata({"contract": contract.ref})


def _bronze_parts(accepted: pa.Table, contract: Contract, partner: Partner, batch_id: str, schema: pa.Schema,
                  key: bytes) -> Iterator[pa.Table]:
    """Accepted rows with pseudonymised ids, slice by slice (no second full copy of the rows)."""
    for batch in accepted.to_batches(max_chunksize=CHUNK_ROWS):
        table = pa.Table.from_batches([batch])
        for f in contract.fields:
            if f.pseudonymise:
                idx = table.schema.get_field_index(f.column)
                hashed = pseudonymise(table.column(f.column).combine_chunks(), key, distinct=f.unique)
                table = table.set_column(idx, f.column, hashed)
        n = table.num_rows
        # pa.repeat writes the text n times in C; a list of n references took 0.3 s per 1M rows
        table = table.add_column(0, "batch_id", pa.repeat(pa.scalar(batch_id, pa.string()), n))
        table = table.add_column(0, "partner_id", pa.repeat(pa.scalar(partner.id, pa.string()), n))
        yield table.cast(schema)


def _write_quarantine(
    lake: Lake, window: Window, sha: str, manifest: dict, result: CheckResult, records: Mapping[int, Any]
) -> None:
    folder = lake.quarantine(window, sha)
    by_row: dict[int, list[Violation]] = {}
    for v in result.violations:
        by_row.setdefault(v.row, []).append(v)
    lines = [
        json.dumps({"row": row, "violations": [v.__dict__ for v in vs], "record": records[row]}, default=str)
        for row, vs in sorted(by_row.items())
    ]
    atomic_write(folder / "rejected_rows.jsonl", ("\n".join(lines) + "\n").encode())
    atomic_write(folder / "report.json", json.dumps(_report(manifest, result), indent=2).encode())


def _report(manifest: dict, result: CheckResult) -> dict:
    rules: dict[str, dict] = {}
    for v in result.violations:
        entry = rules.setdefault(f"{v.field}: {v.rule}", {"field": v.field, "rule": v.rule, "rows": 0, "examples": []})
        entry["rows"] += 1
        if len(entry["examples"]) < 5:
            entry["examples"].append({"row": v.row, "value": v.value})
    return {
        "file": manifest["raw_path"],
        "batch_id": manifest["batch_id"],
        "contract": f"{manifest['contract']}@{manifest['contract_version']}",
        "rows_received": result.rows_received,
        "rows_rejected": result.rows_rejected,
        "failed_rules": list(rules.values()),
        "violations": [v.describe() for v in result.violations[:MAX_REPORTED_VIOLATIONS]],
    }


def _reject_batch(lake: Lake, window: Window, sha: str, manifest: dict, error: str, rule: str) -> dict:
    manifest.update(outcome="rejected", error=error, rows_rejected=manifest["rows_received"])
    report = {
        "file": manifest["raw_path"],
        "batch_id": manifest["batch_id"],
        "contract": f"{manifest['contract']}@{manifest['contract_version']}",
        "failed_rules": [{"field": "<batch>", "rule": rule, "rows": manifest["rows_received"], "examples": []}],
        "error": error,
    }
    atomic_write(lake.quarantine(window, sha) / "report.json", json.dumps(report, indent=2).encode())
    log.warning("batch %s rejected: %s", manifest["batch_id"], error)
    return _finish(lake, window, sha, manifest)


def _finish(lake: Lake, window: Window, sha: str, manifest: dict) -> dict:
    manifest["finished_at"] = _iso(datetime.now(timezone.utc))
    atomic_write(lake.manifest(window, sha), json.dumps(manifest, indent=2).encode())
    return manifest


def record_fetch_error(workdir: Workdir, *, partner: Partner, feed: Feed, contract: Contract,
                       window: Window, error: str, outcome: str = "error") -> dict:
    """A fetch that produced no bytes still leaves an outcome record, so failures are queryable."""
    now = _iso(datetime.now(timezone.utc))
    manifest = {
        "batch_id": f"{partner.id}:{feed.feed}:{window.label}:{outcome}",
        "partner_id": partner.id, "feed": feed.feed,
        "window_start": _iso(window.start), "window_end": _iso(window.end),
        "contract": contract.id, "contract_version": contract.version,
        "source": None, "raw_path": None, "raw_sha256": None,
        "rows_received": 0, "rows_accepted": 0, "rows_rejected": 0,
        "outcome": outcome, "error": error, "warnings": [], "started_at": now, "finished_at": now,
    }
    path = Lake(workdir, partner.id, feed.feed).manifest(window, outcome)
    atomic_write(path, json.dumps(manifest, indent=2).encode())
    return manifest
