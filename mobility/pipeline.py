"""The steps a consortium run is made of. The CLI, the demo and the Airflow tasks call these,
so a step behaves the same whether a person or the scheduler runs it."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

from ingest.connectors.base import ClientCredentials, FeedError, NoData, NotReady, Transient
from ingest.connectors.file_drop import PROCESSING, DropFolder, DropRefused, DropSettings
from ingest.connectors.gbfs import GbfsClient, GbfsSettings
from ingest.connectors.gtfs import GtfsClient, GtfsSettings
from ingest.connectors.mds import MdsClient, MdsSettings
from ingest.contracts import Contract, load_contract
from ingest.landing import Window, atomic_write, land_batch, record_fetch_error
from mobility.registry import Feed, Partner, Registry, load_registry
from mobility.secrets import get_secret
from mobility.settings import Workdir, task_arrow_threads

log = logging.getLogger(__name__)


def hours(start: datetime, end: datetime) -> list[datetime]:
    """Every UTC hour start in [start, end)."""
    start = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out = []
    while start < end:
        out.append(start)
        start += timedelta(hours=1)
    return out


def mds_settings(feed: Feed) -> MdsSettings:
    """Connector settings for an MDS feed: its endpoint, and its secret read from the environment."""
    oauth = None
    if feed.auth.type == "oauth2_client_credentials":
        oauth = ClientCredentials(feed.auth.token_endpoint(), feed.auth.client_id, feed.auth.scope)
    return MdsSettings(base_url=feed.endpoint_url(), token=get_secret(feed.credential), oauth=oauth)


def ingest_mds_hour(
    workdir: Workdir,
    partner_id: str,
    feed_kind: str,
    hour: datetime,
    *,
    registry: Registry | None = None,
    not_ready_waits: tuple[float, ...] = (),
) -> dict:
    """Pull one UTC hour of an MDS feed from one partner and land it; returns the manifest.

    A 202 (still processing) is retried after each wait in `not_ready_waits`, then raised as
    `NotReady` so the scheduler retries later. Faults that outlive the client's retries are
    recorded as an `error` outcome and raised.
    """
    registry = registry or load_registry()
    partner = registry.partner(partner_id)
    feed = partner.feed(feed_kind)
    contract = load_contract(feed.contract)
    window = Window.hour(hour)
    settings = mds_settings(feed)
    fetch = {"mds_trips": MdsClient.trips, "mds_events": MdsClient.events}[feed_kind]
    with MdsClient(settings) as client:
        for wait in (*not_ready_waits, None):
            try:
                fetched = fetch(client, window.start)
                break
            except NotReady:
                if wait is None:
                    raise
                time.sleep(wait)
            except NoData as exc:
                return record_fetch_error(
                    workdir, partner=partner, feed=feed, contract=contract, window=window,
                    error=str(exc), outcome="no_data",
                )
            except (Transient, FeedError) as exc:
                record_fetch_error(workdir, partner=partner, feed=feed, contract=contract, window=window, error=str(exc))
                raise
    manifest = land_batch(
        workdir, partner=partner, feed=feed, contract=contract, window=window,
        raw=fetched.content, source=fetched.url,
    )
    if feed_kind == "mds_events" and manifest["outcome"] in ("accepted", "partial"):
        manifest = _flag_transitions(workdir, partner, feed, contract, window, manifest, fetched.content)
    return manifest


def _flag_transitions(workdir: Workdir, partner: Partner, feed: Feed, contract: Contract, window: Window,
                      manifest: dict, raw: bytes) -> dict:
    """Out-of-order state transitions are flagged in the manifest, never rejected (MDS events
    may arrive late); the manifest is rewritten atomically with the count and examples."""
    from ingest.landing import Lake
    from ingest.payloads import parse_records
    from ingest.transitions import out_of_order_transitions

    flagged = out_of_order_transitions(r for r in parse_records(contract, raw) if isinstance(r, dict))
    manifest["out_of_order_transitions"] = len(flagged)
    if flagged:
        manifest["warnings"] = [*manifest["warnings"],
                                f"{len(flagged)} event(s) do not follow the device's last known state "
                                f"(flagged, not rejected); e.g. {'; '.join(flagged[:3])}"]
        log.warning("%s: %s", manifest["batch_id"], manifest["warnings"][-1])
    path = Lake(workdir, partner.id, feed.feed, dataset=contract.dataset, part=contract.part).manifest(
        window, manifest["raw_sha256"])
    atomic_write(path, json.dumps(manifest, indent=2).encode())
    return manifest


WINDOW_OF_SCHEDULE = {"every_5_minutes": timedelta(minutes=5), "hourly": timedelta(hours=1), "daily": timedelta(days=1)}
# A snapshot is of the moment it is taken: it may land in the window just ended (the scheduler runs
# a window after it closes, retries add minutes), never in an older one.
SNAPSHOT_GRACE = timedelta(minutes=15)
FAILED_OUTCOMES = ("rejected", "error")
_OUTCOME_RANK = {"empty": 0, "accepted": 1, "partial": 2, "no_data": 3, "rejected": 4, "error": 5}


def window_for(schedule: str, start: datetime) -> Window:
    """The window of the registry schedule that contains `start` (UTC, aligned to its length)."""
    length = WINDOW_OF_SCHEDULE[schedule]
    start = start.astimezone(timezone.utc)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    aligned = epoch + (start - epoch) // length * length
    return Window(aligned, aligned + length)


def windows(start: datetime, end: datetime, schedule: str) -> list[Window]:
    """Every window of `schedule` that starts in [start, end)."""
    out, window = [], window_for(schedule, start)
    while window.start < end:
        out.append(window)
        window = Window(window.end, window.end + (window.end - window.start))
    return out


def _feed_of(registry: Registry | None, partner_id: str, feed_kind: str) -> tuple[Partner, Feed, Contract]:
    partner = (registry or load_registry()).partner(partner_id)
    feed = partner.feed(feed_kind)
    return partner, feed, load_contract(feed.contract)


def _fetch_failed(workdir: Workdir, partner: Partner, feed: Feed, contract: Contract, window: Window,
                  exc: FeedError) -> dict:
    """No data for the window is an outcome; any other fetch failure is recorded, then raised."""
    if isinstance(exc, NoData):
        return record_fetch_error(workdir, partner=partner, feed=feed, contract=contract, window=window,
                                  error=str(exc), outcome="no_data")
    record_fetch_error(workdir, partner=partner, feed=feed, contract=contract, window=window, error=str(exc))
    raise exc


def _summary(manifests: list[dict]) -> dict:
    """One result for the batches of a multi-table contract: the worst outcome, summed counts."""
    if len(manifests) == 1:
        return manifests[0]
    worst = max(manifests, key=lambda m: _OUTCOME_RANK.get(m["outcome"], 5))
    return {
        **{k: manifests[0][k] for k in ("partner_id", "feed", "window_start", "window_end", "contract",
                                        "contract_version", "raw_sha256")},
        "batch_id": ", ".join(m["batch_id"] for m in manifests),
        "outcome": worst["outcome"],
        "error": "; ".join(f"{m['dataset']}: {m['error']}" for m in manifests if m["error"]) or None,
        "tables": {m["dataset"]: m["outcome"] for m in manifests},
        **{k: sum(m[k] for m in manifests) for k in ("rows_received", "rows_accepted", "rows_rejected")},
    }


def _token(feed: Feed) -> str | None:
    return get_secret(feed.credential) if feed.credential else None


def _snapshot_too_late(workdir: Workdir, partner: Partner, feed: Feed, contract: Contract, window: Window,
                       now: datetime | None) -> dict | None:
    """A snapshot is taken now: the window must be the current one (or the one just ended).

    `now` is the partner's present; only a replay against the simulator's frozen clock (the demo)
    passes it, so that a past window is filled with the snapshot the partner served at that time.
    """
    now = now or datetime.now(timezone.utc)
    if window.start <= now <= window.end + max(window.end - window.start, SNAPSHOT_GRACE):
        return None
    return record_fetch_error(
        workdir, partner=partner, feed=feed, contract=contract, window=window, outcome="no_data",
        error=f"a {feed.protocol.upper()} snapshot shows the present; window {window.label} cannot be filled "
              f"at {now:%Y-%m-%dT%H:%M}Z",
    )


def ingest_gbfs_snapshot(workdir: Workdir, partner_id: str, feed_kind: str, window_start: datetime, *,
                         registry: Registry | None = None, now: datetime | None = None) -> dict:
    """Snapshot a partner's GBFS feed into the run's window: each table of its contract is the
    GBFS file of the same name (`gbfs_feed`), found through gbfs.json and landed as a batch."""
    partner, feed, contract = _feed_of(registry, partner_id, feed_kind)
    window = window_for(feed.schedule, window_start)
    late = _snapshot_too_late(workdir, partner, feed, contract, window, now)
    if late:
        return late
    settings = GbfsSettings(discovery_url=feed.endpoint_url(), version=feed.version or "3.0", token=_token(feed))
    manifests = []
    with GbfsClient(settings) as client:
        for table in contract.tables():
            try:
                fetched = client.file(table.properties["gbfs_feed"])
            except FeedError as exc:
                return _fetch_failed(workdir, partner, feed, contract, window, exc)
            manifests.append(land_batch(workdir, partner=partner, feed=feed, contract=table, window=window,
                                        raw=fetched.content, source=fetched.url))
    return _summary(manifests)


def ingest_mds_vehicle_status(workdir: Workdir, partner_id: str, feed_kind: str, window_start: datetime, *,
                              registry: Registry | None = None, now: datetime | None = None) -> dict:
    """Snapshot a partner's MDS /vehicles/status into the run's window, following every JSON:API
    page. The pages are one snapshot, so they land as one batch: a document holding every record
    under `vehicles_status` and, under `pages`, each page's URL and the SHA-256 of its exact bytes."""
    partner, feed, contract = _feed_of(registry, partner_id, feed_kind)
    window = window_for(feed.schedule, window_start)
    late = _snapshot_too_late(workdir, partner, feed, contract, window, now)
    if late:
        return late
    settings = mds_settings(feed)
    with MdsClient(settings) as client:
        try:
            pages = client.vehicle_status_pages()
        except FeedError as exc:
            return _fetch_failed(workdir, partner, feed, contract, window, exc)
    records, provenance, head = [], [], {}
    for page in pages:
        try:
            body = json.loads(page.content)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get(contract.payload_key), list):
            # land the page as sent: the contract check refuses it and the partner gets the report
            return land_batch(workdir, partner=partner, feed=feed, contract=contract, window=window,
                              raw=page.content, source=page.url)
        head = head or {k: body.get(k) for k in ("version", "last_updated", "ttl")}
        records += body[contract.payload_key]
        provenance.append({"url": page.url, "sha256": hashlib.sha256(page.content).hexdigest(),
                           "records": len(body[contract.payload_key])})
    document = {**head, "pages": provenance, contract.payload_key: records}
    return land_batch(workdir, partner=partner, feed=feed, contract=contract, window=window,
                      raw=json.dumps(document, separators=(",", ":")).encode(), source=pages[0].url)


def _state_path(workdir: Workdir, partner_id: str, feed_kind: str):
    return workdir.lake / "state" / partner_id / f"{feed_kind}.json"


def ingest_gtfs_day(workdir: Workdir, partner_id: str, feed_kind: str, window_start: datetime, *,
                    registry: Registry | None = None) -> dict:
    """Download the agency's GTFS zip if it changed (ETag, then checksum) and land each of its
    files as a table of the contract; an unchanged feed lands nothing and records `unchanged`."""
    partner, feed, contract = _feed_of(registry, partner_id, feed_kind)
    window = window_for(feed.schedule, window_start)
    state_path = _state_path(workdir, partner.id, feed.feed)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    with GtfsClient(GtfsSettings(url=feed.endpoint_url(), token=_token(feed))) as client:
        try:
            download = client.feed(etag=state.get("etag"), last_modified=state.get("last_modified"))
        except FeedError as exc:
            return _fetch_failed(workdir, partner, feed, contract, window, exc)
    sha = hashlib.sha256(download.content).hexdigest() if download else state.get("sha256")
    if download is None or sha == state.get("sha256"):
        return record_fetch_error(
            workdir, partner=partner, feed=feed, contract=contract, window=window, outcome="unchanged",
            error=f"feed unchanged since window {state.get('window')} (ETag {state.get('etag')}, sha256 {sha})",
        )
    manifests = []
    for table in contract.tables():
        manifest = land_batch(workdir, partner=partner, feed=feed, contract=table, window=window,
                              raw=download.content, source=download.url, ext="zip")
        manifests.append(manifest)
        if manifest["outcome"] == "rejected" and not manifest["rows_received"]:
            break  # the archive itself was refused: every other table would say the same
    summary = _summary(manifests)
    if summary["outcome"] not in FAILED_OUTCOMES:  # a refused feed is fetched and checked again next run
        atomic_write(state_path, json.dumps({"etag": download.etag, "last_modified": download.last_modified,
                                             "sha256": sha, "window": window.label}).encode())
    return summary


def _neighborhood_ids(workdir: Workdir) -> list[int]:
    import pyarrow.parquet as pq

    if not workdir.neighborhoods.exists():
        raise FileNotFoundError(f"checking neighborhood codes needs the city: {workdir.neighborhoods} is missing")
    return pq.read_table(workdir.neighborhoods, columns=["neighborhood_id"]).column(0).to_pylist()


# Reference sets a contract's `codes` fields may name, and where the city keeps them.
REFERENCE_CODES = {"neighborhood_id": _neighborhood_ids}


def drop_file_arrived(partner_id: str, feed_kind: str, window_start: datetime,
                      workdir: Workdir | None = None) -> bool:
    """Whether the partner's file for the window's date is in its drop folder (the sensor's poke)."""
    wd = workdir or Workdir.resolve()
    partner, feed, _ = _feed_of(None, partner_id, feed_kind)
    drop = DropFolder(DropSettings(folder=wd.drops / (feed.drop_folder or partner.id),
                                   filename_pattern=feed.filename_pattern or ""))
    name = drop.filename(window_for("daily", window_start).start.date())
    return any((folder / name).is_file() for folder in (drop.folder, drop.folder / PROCESSING))


def ingest_file_drop_day(workdir: Workdir, partner_id: str, feed_kind: str, window_start: datetime, *,
                         registry: Registry | None = None) -> dict:
    """Pick up the partner's file for the window's date from its drop folder and land it.

    The partner is the folder's owner (the registry's `drop_folder`), never the file's content.
    Files whose names break the registry's `filename_pattern` are moved to `rejected/`, and an
    outcome naming them is recorded; the step's result is then that rejection unless the day's
    own file was found.
    """
    partner, feed, contract = _feed_of(registry, partner_id, feed_kind)
    window = window_for("daily", window_start)  # a file stands for its date, whatever the schedule
    drop = DropFolder(DropSettings(folder=workdir.drops / (feed.drop_folder or partner.id),
                                   filename_pattern=feed.filename_pattern or ""))
    misnamed = drop.reject_misnamed()
    rejection = None
    if misnamed:
        rejection = record_fetch_error(workdir, partner=partner, feed=feed, contract=contract, window=window,
                                       error="; ".join(misnamed), outcome="rejected")
    codes = {f.codes for f in contract.fields if f.codes}
    contract = contract.with_codes({name: REFERENCE_CODES[name](workdir) for name in codes})
    try:
        dropped = drop.pick_up(window.start.date())
    except DropRefused as exc:
        return record_fetch_error(workdir, partner=partner, feed=feed, contract=contract, window=window,
                                  error=str(exc), outcome="rejected")
    if dropped is None:
        return rejection or record_fetch_error(
            workdir, partner=partner, feed=feed, contract=contract, window=window, outcome="no_data",
            error=f"no file {drop.filename(window.start.date())} in drop folder '{drop.folder.name}' yet",
        )
    try:
        manifest = land_batch(workdir, partner=partner, feed=feed, contract=contract, window=window,
                              raw=dropped.content, source=str(dropped.path.relative_to(workdir.root)),
                              ext=dropped.path.suffix.lstrip(".") or "bin")
    except BaseException:
        drop.release(dropped.path)  # not the file's fault: leave it for the retry
        raise
    drop.finish(dropped.path, ok=manifest["outcome"] not in FAILED_OUTCOMES)
    return manifest


# Ingest steps by feed kind; the Airflow DAGs and `mobility ingest` find them here.
INGEST_STEPS = {
    "mds_trips": ingest_mds_hour,
    "mds_events": ingest_mds_hour,
    "mds_vehicle_status": ingest_mds_vehicle_status,
    "gbfs": ingest_gbfs_snapshot,
    "gtfs_schedule": ingest_gtfs_day,
    "ridehail_trips": ingest_file_drop_day,
    "bikeshare_trips": ingest_file_drop_day,
}


class BatchRejected(RuntimeError):
    """A batch broke its contract; it is quarantined and a report is waiting for the partner."""


def ingest_window_or_fail(partner_id: str, feed_kind: str, window_start: datetime, workdir: Workdir | None = None) -> dict:
    """The Airflow task body: land one window, fail loudly if the batch was rejected."""
    pa.set_cpu_count(task_arrow_threads())  # this process lands beside other tasks' processes
    wd = workdir or Workdir.resolve()
    manifest = INGEST_STEPS[feed_kind](wd, partner_id, feed_kind, window_start)
    if manifest["outcome"] in FAILED_OUTCOMES:
        report = wd.quarantine / partner_id / feed_kind
        raise BatchRejected(f"{manifest['batch_id']}: {manifest['error']} (report under {report})")
    return {k: manifest[k] for k in ("batch_id", "outcome", "rows_received", "rows_accepted", "rows_rejected")}


def ingest_range(
    workdir: Workdir,
    start: datetime,
    end: datetime,
    *,
    partners: list[str] | None = None,
    feed: str = "mds_trips",
    workers: int = 4,
    progress: bool = True,
) -> dict:
    """Land every window in [start, end) of `feed` from each partner (hours for an hourly feed,
    days for a daily one), in parallel, with progress."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from rich.progress import Progress

    registry = load_registry()
    pairs = [(p.id, f) for p, f in registry.feeds(feed) if not partners or p.id in partners]
    if not pairs:
        raise ValueError(f"no partner in the registry has feed '{feed}'" + (f" among {partners}" if partners else ""))
    if feed not in INGEST_STEPS:
        raise ValueError(f"no ingest step for feed '{feed}' yet; steps exist for {sorted(INGEST_STEPS)}")
    step = INGEST_STEPS[feed]
    # the MDS step waits out "still processing" answers itself; the others have nothing to wait for
    extra = {"not_ready_waits": (1, 2, 4)} if step is ingest_mds_hour else {}
    jobs = [(pid, f.feed, w.start) for pid, f in pairs for w in windows(start, end, f.schedule)]
    manifests: list[dict] = []
    failures: list[str] = []
    with Progress(disable=not progress, transient=True) as bar, ThreadPoolExecutor(workers) as pool:
        task_id = bar.add_task(f"ingest {feed}", total=len(jobs))
        futures = {
            pool.submit(step, workdir, pid, kind, h, registry=registry, **extra): (pid, h)
            for pid, kind, h in jobs
        }
        for fut in as_completed(futures):
            pid, h = futures[fut]
            try:
                manifests.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - every failure is reported, none is swallowed
                failures.append(f"{pid} {h:%Y-%m-%dT%H}: {exc}")
            bar.advance(task_id)
    failed = [m for m in manifests if m["outcome"] in FAILED_OUTCOMES]
    failures += [f"{m['batch_id']}: {m['error']}" for m in failed]
    return {
        "feed": feed,
        "partners": sorted({p for p, _ in pairs}),
        "batches": len(manifests),
        "outcomes": {o: sum(m["outcome"] == o for m in manifests) for o in sorted({m["outcome"] for m in manifests})},
        "rows_received": sum(m["rows_received"] for m in manifests),
        "rows_accepted": sum(m["rows_accepted"] for m in manifests),
        "rows_rejected": sum(m["rows_rejected"] for m in manifests),
        "failed": failures,
    }


def build_warehouse(workdir: Workdir | None = None) -> dict:
    """dbt build (models and their tests) into the warehouse; the single writer."""
    from mobility.warehouse.build import consortium_vars, run_dbt

    wd = workdir or Workdir.resolve()
    # local days and hours follow the city's own time zone (city.json), whatever city is loaded
    timezone_name = json.loads(wd.city_meta.read_text())["timezone"]
    build_vars = {"city_timezone": timezone_name, **consortium_vars()}
    # The trip marts rebuild only the days of the latest load's batches. A build that stopped
    # after loading batches but before those marts (a failed node, a killed process) would leave
    # their days behind once a later build loads more, so after one every day is rebuilt.
    finished = last_build_marker(wd)
    if wd.warehouse.exists() and not finished.exists():
        build_vars["trip_marts_rebuild_all"] = True
    finished.unlink(missing_ok=True)
    summary = run_dbt(wd, args=("build",), vars=build_vars).summary()
    finished.parent.mkdir(parents=True, exist_ok=True)
    finished.touch()  # run_dbt raised if the build failed
    return summary


def last_build_marker(wd: Workdir) -> Path:
    """The file saying the warehouse's last dbt build finished (DIR/dbt/last-build-finished)."""
    return wd.root / "dbt" / "last-build-finished"


def gate_marts(workdir: Workdir | None = None, *, enforce: bool = True) -> dict:
    """The Great Expectations publish gate on the marts; raises GateFailed when enforcing."""
    from mobility.gates.publish_gate import run_publish_gate

    wd = workdir or Workdir.resolve()
    result = run_publish_gate(wd, k=load_registry().consortium.k_anonymity, enforce=enforce)
    return result.summary()


def publish_marts(workdir: Workdir | None = None) -> dict:
    """Atomically replace the analyst warehouse with the gated marts (k-suppressed)."""
    from mobility.warehouse.publish import publish

    wd = workdir or Workdir.resolve()
    return publish(wd, k=load_registry().consortium.k_anonymity).summary()


def gate_and_publish(workdir: Workdir) -> dict:
    """Publish only if the publish gate passes; otherwise the last good publication stays."""
    from mobility.gates.publish_gate import GateFailed

    try:
        gate = gate_marts(workdir, enforce=True)
    except GateFailed as exc:
        return {"ok": False, "gate": {"success": False, "message": str(exc)}, "publication": None}
    return {"ok": True, "gate": gate, "publication": publish_marts(workdir)}


def build_and_publish(workdir: Workdir, *, publish: bool = True) -> dict:
    """Build, gate, publish; the gate's failure keeps the last good publication in place."""
    result: dict = {"ok": True, "build": build_warehouse(workdir), "gate": None, "publication": None}
    if publish:
        result.update(gate_and_publish(workdir))
    return result
